"""The Node objects this agent plays: registration, capacity, Ready, and the Lease heartbeat.

The heartbeat fault (``faults.stop_node_heartbeat``) works across processes: a flag file that
this agent reads before each renewal, so a test can silence one Node while the agent runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kr8s

from e2e.localcluster import config
from e2e.localcluster.binaries import K8S_VERSION
from e2e.localcluster.node.kubeapi import Kube, status_code
from e2e.localcluster.node.pods import now_iso

log = logging.getLogger("etcdop.localnode.nodes")

LEASE_SECONDS = 40
# The local control plane marks a Node NotReady after 20 s without a heartbeat (controlplane.py:
# --node-monitor-grace-period=20s, not the default 50 s), so renew more often than a kubelet's 10 s.
RENEW_EVERY = 5.0
STATUS_EVERY = 60.0


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_names(count: int, prefix: str = "local") -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


# -- the heartbeat fault ---------------------------------------------------------------------
# The switch is the sandbox's flag (faults.stop_node_heartbeat / resume_node_heartbeat), so it
# works from any process on the machine; the agent reads it before every renewal.


def heartbeat_stopped(node: str) -> bool:
    """The heartbeat fault, or the whole Node stopped (faults.stop_node)."""
    from e2e.localcluster.node import faults

    return faults.heartbeat_stopped(node) or faults.node_stopped(node)


# -- objects ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capacity:
    cpu: str
    memory: str
    pods: str = "110"
    ephemeral_storage: str = "100Gi"

    @classmethod
    def of_host(cls) -> Capacity:
        """What the host has (at least 4 cpus, so small test clusters schedule)."""
        mem_kib = 8 * 2**20
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    mem_kib = int(line.split()[1])
        except OSError:
            pass
        return cls(cpu=str(max(4, os.cpu_count() or 1)), memory=f"{mem_kib}Ki")

    def as_dict(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": self.pods,
            "ephemeral-storage": self.ephemeral_storage,
        }


def node_manifest(name: str) -> dict[str, Any]:
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch,
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": arch,
                "node.etcdop.io/local": "true",
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
    }


def node_status(name: str, capacity: Capacity, previous: dict[str, Any] | None) -> dict[str, Any]:
    """A healthy status; transition times are kept from PREVIOUS when nothing changed."""
    now = now_iso()
    prev = {c["type"]: c for c in (previous or {}).get("conditions", []) or []}
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())

    def cond(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
        p = prev.get(type_)
        since = p["lastTransitionTime"] if p and p.get("status") == status else now
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since,
        }

    return {
        "capacity": capacity.as_dict(),
        "allocatable": capacity.as_dict(),
        "conditions": [
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond(
                "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
            ),
            cond(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            cond(
                "Ready", "True", "KubeletReady", "etcdop local node agent is posting ready status"
            ),
        ],
        "addresses": [
            {"type": "InternalIP", "address": config.BRIDGE_IP},
            {"type": "Hostname", "address": name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": name,
            "systemUUID": name,
            "bootID": name,
            "kernelVersion": platform.release(),
            "osImage": "etcdop local node",
            "containerRuntimeVersion": "etcdop-local://0.1",
            "kubeletVersion": K8S_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": arch,
        },
    }


class NodeAgent:
    """Registers one Node and keeps it alive until cancelled (or until the heartbeat fault)."""

    def __init__(self, kube: Kube, name: str, capacity: Capacity) -> None:
        self.kube = kube
        self.name = name
        self.capacity = capacity
        self.registered = asyncio.Event()

    async def register(self) -> None:
        path = f"/api/v1/nodes/{self.name}"
        node = await self.kube.get(path)
        if node is None:
            try:
                node = await self.kube.create("/api/v1/nodes", node_manifest(self.name))
            except kr8s.ServerError as e:
                if status_code(e) != 409:
                    raise
                node = await self.kube.get(path)
        await self.post_status(node.get("status") if node else None)
        await self.renew_lease()
        self.registered.set()
        log.info("node %s registered", self.name)

    async def post_status(self, previous: dict[str, Any] | None = None) -> None:
        path = f"/api/v1/nodes/{self.name}"
        if previous is None:
            node = await self.kube.get(path)
            previous = node.get("status") if node else None
        await self.kube.merge_patch(
            f"{path}/status", {"status": node_status(self.name, self.capacity, previous)}
        )

    async def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        lease = await self.kube.get(path)
        spec = {
            "holderIdentity": self.name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": micro_now(),
        }
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                "spec": spec,
            }
            try:
                await self.kube.create(
                    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", body
                )
                return
            except kr8s.ServerError as e:
                if status_code(e) != 409:
                    raise
        await self.kube.merge_patch(path, {"spec": spec})

    async def run(self) -> None:
        while True:
            if heartbeat_stopped(self.name):  # a stopped Node does not come up with the agent
                await asyncio.sleep(1)
                continue
            break
        while True:
            try:
                await self.register()
                break
            except (kr8s.ServerError, OSError, TimeoutError) as e:
                log.warning("node %s: registration failed, retrying: %s", self.name, e)
                await asyncio.sleep(2)
        since_status = 0.0
        was_stopped = False
        while True:
            await asyncio.sleep(RENEW_EVERY)
            if heartbeat_stopped(self.name):
                if not was_stopped:
                    log.warning("node %s: heartbeat stopped (fault)", self.name)
                was_stopped = True
                continue
            try:
                await self.renew_lease()
                since_status += RENEW_EVERY
                if was_stopped or since_status >= STATUS_EVERY:
                    await self.post_status()
                    since_status = 0.0
                was_stopped = False
            except (kr8s.ServerError, OSError, TimeoutError) as e:
                log.warning("node %s: heartbeat failed: %s", self.name, e)
