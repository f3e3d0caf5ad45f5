"""Installing a test CRD and waiting until the API server serves it."""

from __future__ import annotations

import contextlib
from typing import Any

from etcdop.kube.client import CRDS, ConflictError, KubeClient
from tests.waiting import eventually


async def install_crd(kube: KubeClient, crd: dict[str, Any]) -> None:
    """Create CRD (or keep the one there) and wait for it to be Established."""
    with contextlib.suppress(ConflictError):
        await kube.create(CRDS, crd)
    name = crd["metadata"]["name"]

    async def established() -> bool:
        got = await kube.get(CRDS, name)
        conds = (got or {}).get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

    await eventually(established, 60, f"CRD {name} to be established")
