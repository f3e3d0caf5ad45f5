"""The operator is SIGKILLed at two random moments of a scale-up 1 -> 3 and restarted after
each kill: the cluster still ends at the right size, with no orphan member (a member without a
pod, or a learner left behind) and no orphan pod (a pod that is not a member).

A seeded RNG chooses when to kill: the delay picks a moment, it waits for nothing.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from e2e.operator import (
    KubeClient,
    OperatorProcess,
    create_cluster,
    etcd_cluster,
    patch_spec,
    wait_cluster_ready,
    wait_lease_holder,
    wait_membership_matches,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node]

NAME = "crash"
READY_WITHIN = 240.0
KILLS = 2
MAX_DELAY = 8.0  # a scale-up 1 -> 3 takes 10-20 s here: two kills land inside it


def last_step(op: OperatorProcess, run: int, key: str) -> str:
    """The last step the operator logged for KEY before it died (which moments were hit)."""
    steps = [
        r for r in op.records(run) if r.get("msg") == "reconcile" and r.get("cluster") == key
    ]
    if not steps:
        return "no reconcile logged"
    r = steps[-1]
    return f"{r.get('action')}({r.get('reason')})"


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_kill_operator_during_scale_up(
    etcdcluster_crd: KubeClient,
    local_node: object,
    operator: OperatorProcess,
    lease_namespace: str,
    namespace: str,
    seed: int,
) -> None:
    kube = etcdcluster_crd
    rng = random.Random(seed)
    await create_cluster(kube, etcd_cluster(NAME, namespace, 1))
    await wait_cluster_ready(kube, NAME, namespace, 1, READY_WITHIN)

    await patch_spec(kube, NAME, namespace, {"size": 3})
    hits = []
    try:
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.0, MAX_DELAY))  # WHEN to kill, not a sync
            run = operator.starts
            operator.kill()
            hits.append(last_step(operator, run, f"{namespace}/{NAME}"))
            operator.start()  # same identity: it may take its own lease back at once
            await operator.wait_serving()
    finally:
        if not operator.alive:
            operator.start()
    print(f"seed {seed}: killed after {hits}")
    await wait_lease_holder(kube, lease_namespace, operator.identity, 60)

    await wait_cluster_ready(kube, NAME, namespace, 3, READY_WITHIN)
    await wait_membership_matches(kube, NAME, namespace, 3, 120)
