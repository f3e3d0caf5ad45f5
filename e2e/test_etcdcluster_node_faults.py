"""Whole nodes fail: every node restarts at once (a power cut), and one node dies with its pods
left Terminating. The cluster keeps every acknowledged key and heals on the nodes it has left.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from e2e.localcluster.kubeapi import KubeClient
from e2e.localcluster.kubelet.fixtures import LocalNode
from e2e.operator import (
    OperatorProcess,
    condition,
    create_cluster,
    etcd_cluster,
    etcd_leader,
    get_cluster,
    member_ids,
    member_pods,
    wait_cluster_ready,
)
from e2e.workload import unreadable, write_keys
from tests.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.node]

READY_WITHIN = 300.0
KEYS = 100


async def test_a_whole_cluster_restart_keeps_every_key(
    operator: OperatorProcess,
    etcdcluster_crd: KubeClient,
    local_node: LocalNode,
    namespace: str,
) -> None:
    """Was: after `make cluster-down && make cluster-up` the cluster came back Available with 0
    of 100 keys (the seed founded a new cluster on an empty data dir, the operator believed it
    and deleted the two members that held the data)."""
    kube = etcdcluster_crd
    await create_cluster(kube, etcd_cluster("power", namespace, 3))
    await wait_cluster_ready(kube, "power", namespace, 3, READY_WITHIN)
    keys = await write_keys(kube, "power", namespace, "power", KEYS)
    ids = await member_ids(kube, "power", namespace)
    uids = {p["metadata"]["uid"] for p in await member_pods(kube, "power", namespace)}

    await asyncio.to_thread(local_node.restart_all_nodes)

    async def back() -> bool:
        ec = await get_cluster(kube, "power", namespace)
        available = condition(ec, "Available") or {}
        assert available.get("reason") != "ClusterLost", available
        return await member_ids(kube, "power", namespace) == ids

    await eventually(back, READY_WITHIN, "the same three members to answer again")
    await wait_cluster_ready(kube, "power", namespace, 3, READY_WITHIN)
    assert await member_ids(kube, "power", namespace) == ids, "a member was replaced"
    after = {p["metadata"]["uid"] for p in await member_pods(kube, "power", namespace)}
    assert after == uids, "member pods were deleted and re-created"
    lost = await unreadable(kube, "power", namespace, keys)
    assert not lost, f"{len(lost)} of {len(keys)} acknowledged keys lost, e.g. {lost[:5]}"


def node_of(pod: dict[str, Any]) -> str:
    return str(pod["spec"].get("nodeName") or "")


async def test_a_member_stuck_terminating_on_a_dead_node_is_replaced(
    operator: OperatorProcess,
    etcdcluster_crd: KubeClient,
    local_node: LocalNode,
    namespace: str,
) -> None:
    """Was: one Terminating pod made the planner wait, and a pod on a dead node stays
    Terminating until someone deletes the Node: nothing healed, scaled or upgraded."""
    kube = etcdcluster_crd
    await create_cluster(kube, etcd_cluster("lost", namespace, 3))
    await wait_cluster_ready(kube, "lost", namespace, 3, READY_WITHIN)
    keys = await write_keys(kube, "lost", namespace, "lost", KEYS)
    ids = await member_ids(kube, "lost", namespace)
    leader = await etcd_leader(kube, "lost", namespace)
    victim = next(
        p for p in await member_pods(kube, "lost", namespace)
        if p["metadata"]["name"] != leader.name
    )
    name, node = victim["metadata"]["name"], node_of(victim)
    victim_id = next(i for i, n in ids.items() if n == name)
    assert node, victim["spec"]

    await asyncio.to_thread(local_node.stop_node, node)
    try:
        await kube.delete(f"/api/v1/namespaces/{namespace}/pods/{name}")  # as an eviction would

        async def replaced() -> bool:
            return victim_id not in await member_ids(kube, "lost", namespace)

        await eventually(replaced, READY_WITHIN, f"member {name} on dead node {node} removed")
        await wait_cluster_ready(kube, "lost", namespace, 3, READY_WITHIN)
        pods = await member_pods(kube, "lost", namespace)
        assert name not in {p["metadata"]["name"] for p in pods}, "the stuck pod is still there"
        assert all(node_of(p) != node for p in pods), "a member runs on the dead node"
        lost = await unreadable(kube, "lost", namespace, keys)
        assert not lost, f"{len(lost)} of {len(keys)} keys lost"
    finally:
        await asyncio.to_thread(local_node.start_node, node)
