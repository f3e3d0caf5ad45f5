"""Helpers of the real node's own tests (test_kubelet_node.py): pods by manifest, their
conditions and container statuses, waits on them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from e2e.localcluster.kubeapi import KubeClient, Obj
from tests.waiting import eventually

_PATHS = {
    ("v1", "Pod"): "/api/v1/namespaces/{ns}/pods",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
}


async def create(kube: KubeClient, obj: Obj) -> Obj:
    """Create OBJ (a Pod or a Service) in its namespace."""
    path = _PATHS[(obj["apiVersion"], obj["kind"])].format(ns=obj["metadata"]["namespace"])
    return await kube.create(path, obj)


def condition(obj: Obj, type_: str) -> str | None:
    for c in obj.get("status", {}).get("conditions", []) or []:
        if c.get("type") == type_:
            return str(c.get("status"))
    return None


def container_status(p: Obj, name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    for c in p.get("status", {}).get(key, []) or []:
        if c["name"] == name:
            return dict(c)
    raise KeyError(f"pod {p['metadata']['name']} has no status for container {name!r}")


async def wait_pod(
    kube: KubeClient, ns: str, name: str, check: Callable[[Obj], bool], within: float, what: str
) -> Obj:
    """The pod NS/NAME once CHECK holds for it."""
    seen: list[Obj] = []

    async def holds() -> bool:
        p = await kube.get(f"/api/v1/namespaces/{ns}/pods/{name}")
        try:
            if p is None or not check(p):
                return False
        except KeyError:  # a container with no status yet
            return False
        seen.append(p)
        return True

    await eventually(holds, within, f"pod {ns}/{name}: {what}")
    return seen[-1]


async def wait_ready(kube: KubeClient, ns: str, name: str, within: float = 60) -> Obj:
    return await wait_pod(
        kube, ns, name, lambda p: condition(p, "Ready") == "True", within, "Ready"
    )


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")
