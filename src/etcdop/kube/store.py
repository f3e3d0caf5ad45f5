"""The informer's cache as pure logic: objects keyed by namespace/name, and the changes that
each watch event or relist makes to it (so the relist diff is testable without a server)."""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from etcdop.kube.client import Obj, key_of

ChangeType = Literal["added", "updated", "deleted"]


@dataclass(frozen=True)
class Change:
    """What a handler is told: OBJ is the new state, or the last known one for a delete."""

    type: ChangeType
    obj: Obj
    old: Obj | None = None

    @property
    def key(self) -> str:
        return key_of(self.obj)


def _uid(obj: Mapping[str, Any]) -> str | None:
    uid = (obj.get("metadata") or {}).get("uid")
    return str(uid) if uid is not None else None


def _rv(obj: Mapping[str, Any]) -> str | None:
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    return str(rv) if rv is not None else None


def labels_match(obj: Mapping[str, Any], selector: Mapping[str, str]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def relist_diff(known: Mapping[str, Obj], fresh: Mapping[str, Obj]) -> list[Change]:
    """The changes that turn KNOWN into FRESH: deletes for what vanished while we were not
    watching, a delete then an add where a name was reused by a new object (another uid), and
    updates only where the resourceVersion moved."""
    changes: list[Change] = [
        Change("deleted", obj) for key, obj in known.items() if key not in fresh
    ]
    for key, obj in fresh.items():
        old = known.get(key)
        if old is None:
            changes.append(Change("added", obj))
        elif _uid(old) != _uid(obj):
            changes.append(Change("deleted", old))
            changes.append(Change("added", obj))
        elif _rv(old) != _rv(obj):
            changes.append(Change("updated", obj, old))
    return changes


class Store:
    """Plain dicts (not kr8s objects: those cost ~6x the memory). Treat what it returns as
    read-only: the informer replaces objects, it never copies them."""

    def __init__(self) -> None:
        self._objects: dict[str, Obj] = {}

    def get(self, key: str) -> Obj | None:
        return self._objects.get(key)

    def get_by(self, namespace: str | None, name: str) -> Obj | None:
        return self._objects.get(f"{namespace}/{name}" if namespace else name)

    def list(
        self, namespace: str | None = None, labels: Mapping[str, str] | None = None
    ) -> builtins.list[Obj]:
        """Objects in NAMESPACE (all when None) whose labels include LABELS."""
        out = []
        for obj in self._objects.values():
            if namespace is not None and (obj.get("metadata") or {}).get("namespace") != namespace:
                continue
            if labels and not labels_match(obj, labels):
                continue
            out.append(obj)
        return out

    def keys(self) -> builtins.list[str]:
        return list(self._objects)

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def __iter__(self) -> Iterator[Obj]:
        return iter(list(self._objects.values()))

    def replace(self, items: Iterable[Obj]) -> builtins.list[Change]:
        """Take a fresh LIST as the truth; return what changed since the last known state."""
        fresh = {key_of(o): o for o in items}
        changes = relist_diff(self._objects, fresh)
        self._objects = fresh
        return changes

    def apply(self, event_type: str, obj: Obj) -> builtins.list[Change]:
        """Fold one watch event (ADDED, MODIFIED or DELETED) in; return what changed."""
        key = key_of(obj)
        old = self._objects.get(key)
        if event_type == "DELETED":
            if old is None:
                return []
            del self._objects[key]
            return [Change("deleted", obj)]
        if event_type not in ("ADDED", "MODIFIED"):
            raise ValueError(
                f"watch event type {event_type!r} for {key}: expected ADDED, MODIFIED or DELETED"
            )
        self._objects[key] = obj
        if old is None:
            return [Change("added", obj)]
        if _uid(old) != _uid(obj):
            return [Change("deleted", old), Change("added", obj)]
        return [Change("updated", obj, old)]
