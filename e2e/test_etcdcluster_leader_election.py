"""Two operator replicas: only the holder of the Lease reconciles; when it is SIGKILLed the other
takes the Lease (once it expires) and carries out a later spec change.

This module starts its own two replicas and never the shared `operator` fixture, so no third
operator runs beside them.
"""

from __future__ import annotations

import pytest

from e2e.localcluster.kubeapi import KubeClient
from e2e.operator import (
    OperatorProcess,
    Operators,
    create_cluster,
    etcd_cluster,
    leases,
    metric_value,
    patch_spec,
    wait_cluster_ready,
    wait_lease_holder,
    wait_membership_matches,
)
from tests.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.node]

NAME = "ha"
READY_WITHIN = 240.0
LEASE_TAKEOVER_WITHIN = 60.0  # lease duration (15 s) plus retries, on a busy machine


def reconciles_of(op: OperatorProcess, key: str) -> list[dict[str, object]]:
    return [r for r in op.records() if r.get("msg") == "reconcile" and r.get("cluster") == key]


def said(op: OperatorProcess, words: str) -> bool:
    return any(words in str(r.get("msg", "")) for r in op.records())


async def test_only_the_lease_holder_reconciles_and_a_kill_hands_over(
    etcdcluster_crd: KubeClient,
    local_node: object,
    operators: Operators,
    lease_namespace: str,
    namespace: str,
) -> None:
    kube = etcdcluster_crd
    key = f"{namespace}/{NAME}"
    a = operators.start("op-a", lease_namespace=lease_namespace)
    await a.wait_serving()
    await wait_lease_holder(kube, lease_namespace, "op-a")
    b = operators.start("op-b", lease_namespace=lease_namespace)
    await b.wait_serving()

    async def b_waits() -> bool:
        assert said(b, "waiting for the leader lease"), f"op-b log:\n{b.tail(10)}"
        return True

    await eventually(b_waits, 30, "op-b to say it waits for the lease")

    await create_cluster(kube, etcd_cluster(NAME, namespace, 1))
    await wait_cluster_ready(kube, NAME, namespace, 1, READY_WITHIN)

    assert reconciles_of(a, key), f"op-a never reconciled {key}:\n{a.tail(20)}"
    assert not reconciles_of(b, key), f"op-b reconciled while op-a led:\n{b.tail(20)}"
    assert not said(b, "became leader"), b.tail(20)
    b_metrics = await b.metrics()
    assert metric_value(b_metrics, "etcdop_leader") == 0
    assert metric_value(b_metrics, "etcdop_reconcile_total") == 0
    assert metric_value(await a.metrics(), "etcdop_leader") == 1
    assert metric_value(await a.metrics(), "etcdop_reconcile_total") > 0
    found = await leases(kube, lease_namespace)
    assert [x["spec"].get("holderIdentity") for x in found] == ["op-a"], found

    a.kill()
    lease = await wait_lease_holder(kube, lease_namespace, "op-b", LEASE_TAKEOVER_WITHIN)
    assert int(lease["spec"].get("leaseTransitions") or 0) >= 1, lease["spec"]
    assert said(b, "became leader"), b.tail(20)

    await patch_spec(kube, NAME, namespace, {"size": 3})
    await wait_cluster_ready(kube, NAME, namespace, 3, READY_WITHIN)
    await wait_membership_matches(kube, NAME, namespace, 3, 120)
    assert reconciles_of(b, key), f"op-b never reconciled {key}:\n{b.tail(20)}"
    assert metric_value(await b.metrics(), "etcdop_leader") == 1
    assert not a.alive
