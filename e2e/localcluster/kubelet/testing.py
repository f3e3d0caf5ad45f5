"""Helpers for the local-node e2e tests: create objects, wait on conditions, reach pods."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from e2e.localcluster.kubeapi import Kube, Obj

T = TypeVar("T")

_PATHS = {
    ("v1", "Namespace"): "/api/v1/namespaces",
    ("v1", "Pod"): "/api/v1/namespaces/{ns}/pods",
    ("v1", "Service"): "/api/v1/namespaces/{ns}/services",
    ("v1", "PersistentVolumeClaim"): "/api/v1/namespaces/{ns}/persistentvolumeclaims",
    ("v1", "ConfigMap"): "/api/v1/namespaces/{ns}/configmaps",
    ("v1", "Secret"): "/api/v1/namespaces/{ns}/secrets",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{ns}/deployments",
}


def collection(obj: Obj) -> str:
    key = (obj["apiVersion"], obj["kind"])
    return _PATHS[key].format(ns=obj["metadata"].get("namespace", ""))


async def create(kube: Kube, obj: Obj) -> Obj:
    return await kube.create(collection(obj), obj)


async def eventually(
    fn: Callable[[], Awaitable[T | None]], within: float, what: str, every: float = 0.5
) -> T:
    """Poll FN until it returns something truthy; fail naming WHAT (and the last error)."""
    deadline = time.monotonic() + within
    last: object = None
    while True:
        try:
            value = await fn()
            if value:
                return value
            last = value
        except (AssertionError, KeyError, httpx.HTTPError, OSError) as e:
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(every)


async def new_namespace(kube: Kube, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await create(kube, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    # pods need the namespace's default ServiceAccount (created by the controller manager)
    await eventually(
        lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        30,
        f"serviceaccount {name}/default",
    )
    return name


async def delete_namespace(kube: Kube, name: str) -> None:
    await kube.delete(f"/api/v1/namespaces/{name}")


async def pod(kube: Kube, ns: str, name: str) -> Obj | None:
    return await kube.get(f"/api/v1/namespaces/{ns}/pods/{name}")


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
    kube: Kube, ns: str, name: str, check: Callable[[Obj], bool], within: float, what: str
) -> Obj:
    async def probe() -> Obj | None:
        p = await pod(kube, ns, name)
        return p if p is not None and check(p) else None

    return await eventually(probe, within, f"pod {ns}/{name}: {what}")


async def wait_ready(kube: Kube, ns: str, name: str, within: float = 60) -> Obj:
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
