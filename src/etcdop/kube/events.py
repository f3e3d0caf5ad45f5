"""Kubernetes Events (events.k8s.io/v1) that tell a person what the operator did and why.

A repeat of the same event about the same object within a window bumps ``series.count`` on the
first one instead of writing another object. Recording is best effort: a failed write is logged,
never raised, so that an Event can never fail a reconcile.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from etcdop.kube.client import EVENTS, KubeClient, KubeError, NotFoundError, Obj, micro_time

log = logging.getLogger("etcdop.kube.events")

EventType = Literal["Normal", "Warning"]

NOTE_LIMIT = 1024  # bytes; the API server rejects longer notes
_SECRETISH = re.compile(
    r"(?i)\b(password|passwd|token|secret|authorization|bearer|api[-_]?key|access[-_]?key)"
    r"(\s*[=:]\s*|\s+)((?:bearer\s+|basic\s+)?\S+)"
)


def redact(message: str) -> str:
    """Blank out values that follow words like password= or token: (a second line of defence:
    callers must not put secrets in messages in the first place)."""
    return _SECRETISH.sub(lambda m: f"{m.group(1)}{m.group(2)}<redacted>", message)


def truncate(message: str, limit: int = NOTE_LIMIT) -> str:
    raw = message.encode()
    if len(raw) <= limit:
        return message
    return raw[: limit - 3].decode(errors="ignore") + "..."


def object_reference(obj: Mapping[str, Any]) -> Obj:
    """The ObjectReference of OBJ, which must carry apiVersion and kind."""
    meta = obj.get("metadata") or {}
    if not obj.get("apiVersion") or not obj.get("kind"):
        raise ValueError(
            f"object {meta.get('namespace')}/{meta.get('name')} has no apiVersion or kind: "
            "events need both (objects from KubeClient.list and informers carry them)"
        )
    ref: Obj = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"]}
    for field in ("namespace", "uid", "resourceVersion"):
        if meta.get(field):
            ref[field] = meta[field]
    return ref


@dataclass
class _Seen:
    name: str
    namespace: str
    count: int
    first: float


class EventRecorder:
    """Writes Events as CONTROLLER (e.g. "etcdop.io/operator") from INSTANCE (the pod name).

    Identical events (same object, type, reason and message) within DEDUPE_WINDOW seconds are
    folded into one, whose series.count says how often it happened."""

    def __init__(
        self,
        client: KubeClient,
        controller: str,
        instance: str,
        *,
        dedupe_window: float = 600.0,
        max_remembered: int = 4096,
        timeout: float = 5.0,
    ) -> None:
        self.client = client
        self.controller = controller
        self.instance = instance
        self.dedupe_window = dedupe_window
        self.max_remembered = max_remembered
        self.timeout = timeout
        self._seen: OrderedDict[tuple[str, str, str, str], _Seen] = OrderedDict()

    async def normal(
        self, obj: Mapping[str, Any], reason: str, message: str, action: str | None = None
    ) -> None:
        await self.record(obj, "Normal", reason, message, action)

    async def warning(
        self, obj: Mapping[str, Any], reason: str, message: str, action: str | None = None
    ) -> None:
        await self.record(obj, "Warning", reason, message, action)

    async def record(
        self,
        obj: Mapping[str, Any],
        type: EventType,
        reason: str,
        message: str,
        action: str | None = None,
    ) -> None:
        """Record that REASON (CamelCase, e.g. "MemberAdded") happened to OBJ, explained by
        MESSAGE; ACTION (what we did, e.g. "AddMember") defaults to REASON."""
        try:
            regarding = object_reference(obj)
        except (ValueError, KeyError) as e:
            log.warning("event %s not recorded: %s", reason, e)
            return
        note = truncate(redact(message))
        key = (regarding.get("uid") or str(regarding), type, reason, note)
        try:
            async with asyncio.timeout(self.timeout):
                await self._write(key, regarding, type, reason, note, action or reason)
        except (KubeError, TimeoutError) as e:
            log.warning(
                "event %s about %s %s/%s not recorded: %s",
                reason,
                regarding["kind"],
                regarding.get("namespace", ""),
                regarding["name"],
                e,
            )

    async def _write(
        self,
        key: tuple[str, str, str, str],
        regarding: Obj,
        type: EventType,
        reason: str,
        note: str,
        action: str,
    ) -> None:
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is not None and now - seen.first < self.dedupe_window:
            patch = {"series": {"count": seen.count + 1, "lastObservedTime": micro_time()}}
            try:
                await self.client.patch(EVENTS, seen.name, patch, seen.namespace)
            except NotFoundError:
                pass  # the event expired (the server keeps them an hour): write a new one
            else:
                seen.count += 1
                self._seen.move_to_end(key)
                return
        namespace = regarding.get("namespace") or "default"
        body: Obj = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {
                "name": f"{regarding['name']}.{time.time_ns():x}",
                "namespace": namespace,
            },
            "eventTime": micro_time(),
            "reportingController": self.controller,
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "note": note,
            "type": type,
            "regarding": regarding,
        }
        created = await self.client.create(EVENTS, body, namespace)
        self._seen[key] = _Seen(created["metadata"]["name"], namespace, 1, now)
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_remembered:
            self._seen.popitem(last=False)
