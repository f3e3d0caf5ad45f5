"""Keep an owned object as rendered: create it when missing, correct it when it drifted, and leave
it alone (no write) when every field we render already has our value.

Fields we do not render (server defaults such as a Service's clusterIP, other managers' labels)
are not drift: comparing only what we render is what lets "unchanged" mean "no write".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from etcdop.kube.client import KubeClient, Resource
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
