"""Keep an owned object as rendered: create it when missing, correct it when it drifted, and leave
it alone (no write) when every field we render already has our value.

Fields we do not render (server defaults such as a Service's clusterIP, other managers' labels)
are not drift: comparing only what we render is what lets "unchanged" mean "no write".

A ``Component`` is one owned object of a controller in that shape: where it is cached and how
it is rendered from its owner. Writes go through the client's one field manager.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from etcdop.kube.client import KubeClient, Obj, Resource
from etcdop.kube.store import Store


def covers(live: Any, desired: Any) -> bool:
    """Whether LIVE already holds every value of DESIRED (dicts by key, lists item by item)."""
    if isinstance(desired, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and covers(live[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list | tuple):
        return (
            isinstance(live, list | tuple)
            and len(live) == len(desired)
            and all(covers(a, b) for a, b in zip(live, desired, strict=True))
        )
    return bool(live == desired)


async def sync(client: KubeClient, res: Resource, store: Store, desired: Mapping[str, Any]) -> bool:
    """Server-side apply DESIRED unless the cached object already covers it; True if written."""
    meta = desired["metadata"]
    live = store.get_by(meta.get("namespace"), meta["name"])
    if live is not None and covers(
        {"metadata": live.get("metadata"), "spec": live.get("spec")},
        {"metadata": meta, "spec": desired.get("spec")},
    ):
        return False
    await client.apply(res, dict(desired))
    return True


Owner = TypeVar("Owner")


@dataclass(frozen=True)
class Component(Generic[Owner]):
    """One owned object of an OWNER: RENDER gives the desired object, CACHE is the informer
    store it is read from (so that an unchanged object costs no request)."""

    res: Resource
    cache: Store
    render: Callable[[Owner], Obj]

    async def sync(self, client: KubeClient, desired: Mapping[str, Any]) -> bool:
        """Keep DESIRED (this component rendered for its owner); True if it was written
        (created or corrected). The API server's refusal is raised (KubeError)."""
        return await sync(client, self.res, self.cache, desired)
