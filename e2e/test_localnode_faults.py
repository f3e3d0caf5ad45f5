"""Node-level faults seen through Kubernetes: a killed container is restarted by the kubelet with
its restart counted; a Node whose heartbeat stops becomes NotReady, and Ready again after.
(The cut-off etcd member is in test_localnode_etcd.py.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import kr8s.asyncio
import pytest

from e2e.localcluster.node import faults
from e2e.localcluster.node.fixtures import LocalNode
from e2e.localcluster.node.kubeapi import Kube
from e2e.localcluster.node.testing import (
    condition,
    container_status,
    create,
    delete_namespace,
    eventually,
    http_get,
    new_namespace,
    pod,
    wait_pod,
    wait_ready,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.imitation]


@pytest.fixture
async def kube(kube_api: kr8s.asyncio.Api) -> Kube:
    return Kube(kube_api)


@pytest.fixture
async def ns(kube: Kube, local_node: LocalNode) -> AsyncIterator[str]:
    name = await new_namespace(kube, "fault")
    yield name
    await delete_namespace(kube, name)


async def test_killed_container_is_restarted(kube: Kube, ns: str, web_image: str,
                                             local_node: LocalNode) -> None:
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "victim", "namespace": ns},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "web", "image": web_image,
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1},
        }]},
    })
    p = await wait_ready(kube, ns, "victim", 60)
    ip = p["status"]["podIP"]
    first_pid = int((await http_get(f"http://{ip}:8080/")).json()["pid"])

    assert faults.kill_container(p["metadata"]["uid"], "web") == first_pid

    def restarted(p: dict[str, Any]) -> bool:
        cs = container_status(p, "web")
        return cs["restartCount"] >= 1 and cs["ready"] is True

    p = await wait_pod(kube, ns, "victim", restarted, 60, "restarted and Ready")
    last = container_status(p, "web")["lastState"]["terminated"]
    assert last["exitCode"] == 137  # 128 + SIGKILL
    second_pid = int((await http_get(f"http://{ip}:8080/")).json()["pid"])
    assert second_pid != first_pid
    assert "listening on 8080" in local_node.pod_logs(ns, "victim", "web", previous=True)


async def test_node_that_stops_heartbeating_becomes_not_ready(
        kube: Kube, local_node: LocalNode) -> None:
    node = local_node.node_names[-1]

    async def ready_status() -> str | None:
        n = await kube.get(f"/api/v1/nodes/{node}")
        return condition(n, "Ready") if n else None

    assert await ready_status() == "True"
    local_node.stop_heartbeat(node)
    try:
        async def not_ready() -> bool:
            return await ready_status() in ("False", "Unknown")

        # the local control plane's node-monitor-grace-period is 20 s (50 s by default)
        await eventually(not_ready, 60, f"node {node} NotReady", every=1)
    finally:
        local_node.resume_heartbeat(node)

    async def ready_again() -> bool:
        n = await kube.get(f"/api/v1/nodes/{node}")
        taints = {t["key"] for t in (n or {}).get("spec", {}).get("taints", []) or []}
        return n is not None and condition(n, "Ready") == "True" and not {
            "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"} & taints

    await eventually(ready_again, 60, f"node {node} Ready and untainted again", every=1)


async def test_pods_marked_unready_by_a_silent_node_are_ready_again_after(
        kube: Kube, ns: str, web_image: str, local_node: LocalNode) -> None:
    """The kubelet owns pod readiness: it restores what the controller changed meanwhile."""
    node = local_node.node_names[0]
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pinned", "namespace": ns},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "web", "image": web_image}]},
    })
    await wait_ready(kube, ns, "pinned", 60)
    # What the node-lifecycle controller does to the pods of an unreachable node:
    await kube.merge_patch(f"/api/v1/namespaces/{ns}/pods/pinned/status", {"status": {
        "conditions": [{"type": "Ready", "status": "False", "reason": "NodeNotReady"}]}})
    await wait_ready(kube, ns, "pinned", 30)
    p = await pod(kube, ns, "pinned")
    assert p is not None and condition(p, "Ready") == "True"
