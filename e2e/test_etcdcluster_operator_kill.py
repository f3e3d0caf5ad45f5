"""The operator is SIGKILLed twice during a scale-up 1 -> 5, each time while a membership change
is in flight (a learner, or a member added whose pod has not started, as etcd's member list shows
just before and just after the kill), and restarted after each kill. The cluster must still end
at the right size with no orphan member or pod, and no member may have been added twice: every
member name maps to one member ID ever, and exactly the four members the scale-up needs were
added (etcd's member list is read ten times a second throughout).

A change can be over in 300 ms (a learner of an empty cluster catches up at once), so the kills
watch the member list every 20 ms, and four adds leave room for a kill that comes too late (the
member list just before it shows the change done): it then waits for the next change.
A seeded RNG chooses how long after a change is first seen the kill comes.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from e2e.localcluster.kubeapi import KubeClient
from e2e.operator import (
    OperatorProcess,
    create_cluster,
    etcd_cluster,
    patch_spec,
    wait_cluster_ready,
    wait_lease_holder,
    wait_membership_matches,
)
from e2e.workload import MemberWatch, in_flight, running
from tests.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.node]

NAME = "crash"
START_SIZE, SIZE = 1, 5
READY_WITHIN = 240.0
KILLS = 2
MAX_DELAY = 0.1  # seconds after a change is first seen: inside a window of 300 ms or more
CHANGE_WITHIN = 120.0


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
async def test_kill_operator_during_membership_changes(
    etcdcluster_crd: KubeClient,
    local_node: object,
    operator: OperatorProcess,
    lease_namespace: str,
    namespace: str,
    seed: int,
) -> None:
    kube = etcdcluster_crd
    key = f"{namespace}/{NAME}"
    rng = random.Random(seed)
    await create_cluster(kube, etcd_cluster(NAME, namespace, START_SIZE))
    await wait_cluster_ready(kube, NAME, namespace, START_SIZE, READY_WITHIN)

    watch = MemberWatch(kube, NAME, namespace)
    kills: list[str] = []
    hit: set[int] = set()  # IDs of the members whose change a kill interrupted
    async with running(watch):
        async with asyncio.timeout(60):
            await watch.ready.wait()
        await patch_spec(kube, NAME, namespace, {"size": SIZE})
        try:
            while len(kills) < KILLS:

                async def change_seen() -> bool:
                    now = await watch.read_members()  # a fresh read: the history is 10 Hz
                    return now is not None and any(
                        m.id not in hit for m in now.members if m.is_learner or not m.name
                    )

                await eventually(change_seen, CHANGE_WITHIN, "a new membership change in flight",
                                 every=0.02)
                await asyncio.sleep(rng.uniform(0.0, MAX_DELAY))  # WHEN to kill, not a sync
                before = await watch.read_members()
                if before is None or not in_flight(before.members):
                    continue  # the change finished meanwhile: wait for the next one
                run = operator.starts
                operator.kill()
                after = await watch.read_members()
                assert after is not None, "no member list right after the kill"
                assert in_flight(after.members), (
                    f"kill {len(kills) + 1} came between {in_flight(before.members)} and a "
                    f"settled membership"
                )
                hit.update(m.id for m in after.members if m.is_learner or not m.name)
                kills.append(
                    f"during {in_flight(after.members)} (operator's last step: "
                    f"{last_step(operator, run, key)})"
                )
                operator.start()  # same identity: it may take its own lease back at once
                await operator.wait_serving()
        finally:
            if not operator.alive:
                operator.start()
        await wait_lease_holder(kube, lease_namespace, operator.identity, 60)
        await wait_cluster_ready(kube, NAME, namespace, SIZE, READY_WITHIN)
        await wait_membership_matches(kube, NAME, namespace, SIZE, 120)
        final = await watch.read_members()

    assert final is not None
    ids_by_name = watch.ids_by_name()
    added_twice = {n: sorted(f"{i:x}" for i in ids) for n, ids in ids_by_name.items()
                   if len(ids) > 1}
    every_id = {i for ids in ids_by_name.values() for i in ids}
    details = (
        f"seed {seed}: kills {kills}; member IDs ever by name "
        f"{ {n: sorted(f'{i:x}' for i in ids) for n, ids in ids_by_name.items()} } "
        f"from {len(watch.history)} member lists"
    )
    print(details)  # the kills and the member IDs in it are asserted below
    assert len(kills) == KILLS, details
    assert not added_twice, f"members added twice: {added_twice}; {details}"
    assert len(every_id) == SIZE, (
        f"{len(every_id)} members ever for a scale-up {START_SIZE} -> {SIZE}: {details}"
    )
    assert {m.id for m in final.members} == every_id, f"final {final.members}; {details}"
    assert len(watch.history) > 10 * KILLS, details
