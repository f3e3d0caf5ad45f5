"""Version upgrades on real etcd 3.5 -> 3.6: Surge under a writer (quorum sampled 20 times a
second, every acknowledged write read back, the leader replaced last), InPlace on claims
(member IDs and data kept), the operator SIGKILLed mid-upgrade, a new member that cannot start
(UpgradeStalled, the cluster whole on the old version, cleared by rolling back), a rollback
mid-upgrade, and `paused` holding an upgrade between two steps."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from e2e.localcluster.binaries import bin_path
from e2e.localcluster.kubeapi import KubeClient
from e2e.localcluster.kubelet.fixtures import LocalNode
from e2e.localcluster.kubelet.images import Image
from e2e.operator import (
    OperatorProcess,
    condition,
    create_cluster,
    etcd_cluster,
    etcd_leader,
    get_cluster,
    member_ids,
    patch_spec,
    wait_cluster_ready,
    wait_membership_matches,
)
from e2e.workload import (
    MemberWatch,
    QuorumMonitor,
    Writer,
    assert_quorum_kept,
    in_flight,
    member_name,
    running,
    unreadable,
    write_keys,
)
from tests.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.node]

OLD, NEW = "3.5.35", "3.6.16"
BROKEN = "3.6.15"
"""A version whose image the test maps to a program that exits at once."""
READY_WITHIN = 240.0
UPGRADE_WITHIN = 300.0
CLAIMS = {"persistentVolumeClaim": {"size": "1Gi", "whenDeleted": "Delete"}}


async def wait_all_at(kube: KubeClient, name: str, ns: str, version: str, within: float) -> Any:
    """Until the status shows every member at VERSION, ready, and the rollout finished."""
    await wait_cluster_ready(kube, name, ns, 3, within)

    async def at() -> bool:
        ec = await get_cluster(kube, name, ns)
        versions = {m["name"]: m.get("version") for m in ec["status"]["members"]}
        assert set(versions.values()) == {version}, versions
        assert ec["status"].get("targetVersion") == version
        assert ec["status"].get("phase") == "Running"
        return True

    await eventually(at, within, f"every member of {ns}/{name} at {version}")
    return await get_cluster(kube, name, ns)


async def upgrade_under_writer(
    kube: KubeClient, name: str, ns: str, **spec: Any
) -> tuple[QuorumMonitor, Writer, MemberWatch, str, str]:
    """Create NAME at OLD, then upgrade it to NEW under a writer; the monitor, writer, the
    member watch, the leader before, and a summary."""
    await create_cluster(kube, etcd_cluster(name, ns, 3, version=OLD, **spec))
    await wait_all_at(kube, name, ns, OLD, READY_WITHIN)
    leader = await etcd_leader(kube, name, ns)
    monitor = QuorumMonitor(kube, name, ns)
    writer = Writer(monitor)
    async with running(monitor, writer):
        async with asyncio.timeout(60):
            await monitor.watch.ready.wait()
        monitor.mark("upgrade")
        await patch_spec(kube, name, ns, {"version": NEW})
        await wait_all_at(kube, name, ns, NEW, UPGRADE_WITHIN)
        monitor.mark("end")
        acked = len(writer.acked)

        async def more() -> bool:
            return len(writer.acked) > acked + 10

        await eventually(more, 30, "the writer to go on after the upgrade")
    summary = f"monitor: {monitor.report()}; writer: {writer.report()}"
    return monitor, writer, monitor.watch, leader.name, summary


async def test_surge_upgrade_keeps_quorum_and_every_write_and_replaces_the_leader_last(
    etcdcluster_crd: KubeClient, local_node: object, operator: OperatorProcess, namespace: str
) -> None:
    kube = etcdcluster_crd
    monitor, writer, watch, leader, summary = await upgrade_under_writer(kube, "surge", namespace)
    # Asserted below: sampling gaps and rate, windows without quorum, failed and lost writes
    # (and member order or IDs); latencies are printed as context for a failure only.
    print(summary)
    details = f"{summary} ({monitor.diagnostics()}; {writer.diagnostics()})"
    assert_quorum_kept(monitor, details)
    failed = [f"{op.key}: {op.error}" for op in writer.failures()]
    assert not failed, f"{len(failed)} writes failed: {failed[:5]}; {details}"
    lost = await unreadable(kube, "surge", namespace, writer.acked)
    assert not lost, f"{len(lost)} of {len(writer.acked)} acknowledged writes lost: {lost[:10]}"
    # The original members leave one by one; the one that led at the start leaves last.
    originals = {member_name(m) for m in watch.history[0].members}
    gone_at = {
        n: next(i for i, h in enumerate(watch.history) if n not in map(member_name, h.members))
        for n in originals
    }
    order = sorted(gone_at, key=lambda n: gone_at[n])
    assert len(order) == 3 and order[-1] == leader, f"removal order {order}, leader {leader}"

    async def speaks_new() -> bool:
        # etcd raises the cluster version a few seconds after the last member runs 3.6, and
        # the operator records it on its next look (the resync of a settled cluster).
        ec = await get_cluster(kube, "surge", namespace)
        assert ec["status"].get("clusterVersion", "").startswith("3.6"), ec["status"]
        return True

    await eventually(speaks_new, 60, "status.clusterVersion 3.6")


async def test_in_place_upgrade_on_claims_keeps_member_ids_and_data(
    etcdcluster_crd: KubeClient, local_node: object, operator: OperatorProcess, namespace: str
) -> None:
    kube = etcdcluster_crd
    name = "inplace"
    spec = {"storage": CLAIMS, "upgrade": {"strategy": "InPlace"}}
    await create_cluster(kube, etcd_cluster(name, namespace, 3, version=OLD, **spec))
    await wait_all_at(kube, name, namespace, OLD, READY_WITHIN)
    before = await member_ids(kube, name, namespace)
    monitor = QuorumMonitor(kube, name, namespace)
    writer = Writer(monitor)
    async with running(monitor, writer):
        async with asyncio.timeout(60):
            await monitor.watch.ready.wait()
        await patch_spec(kube, name, namespace, {"version": NEW})
        await wait_all_at(kube, name, namespace, NEW, UPGRADE_WITHIN)
    after = await member_ids(kube, name, namespace)
    summary = f"ids before {before}, after {after}; {monitor.report()}; {writer.report()}"
    # Asserted below: sampling gaps and rate, windows without quorum, failed and lost writes
    # (and member order or IDs); latencies are printed as context for a failure only.
    print(summary)
    assert after == before, summary
    assert len(monitor.watch.ids_by_name()) == 3, f"a member was added: {summary}"
    assert_quorum_kept(monitor, summary)
    lost = await unreadable(kube, name, namespace, writer.acked)
    assert writer.acked and not lost, f"{len(lost)} acknowledged writes lost: {lost[:10]}"


@pytest.mark.parametrize("seed", [1, 2])
async def test_operator_killed_mid_upgrade_resumes_without_adding_a_member_twice(
    etcdcluster_crd: KubeClient,
    local_node: object,
    operator: OperatorProcess,
    namespace: str,
    seed: int,
) -> None:
    kube = etcdcluster_crd
    name = f"kill{seed}"
    rng = random.Random(seed)
    await create_cluster(kube, etcd_cluster(name, namespace, 3, version=OLD))
    await wait_all_at(kube, name, namespace, OLD, READY_WITHIN)
    watch = MemberWatch(kube, name, namespace)
    kills: list[str] = []
    async with running(watch):
        async with asyncio.timeout(60):
            await watch.ready.wait()
        await patch_spec(kube, name, namespace, {"version": NEW})
        hit: set[int] = set()  # members whose change a kill interrupted
        try:
            while len(kills) < 2:

                async def change_seen() -> bool:
                    latest = watch.latest
                    assert latest is not None
                    return any(
                        m.id not in hit for m in latest.members if m.is_learner or not m.name
                    )

                await eventually(change_seen, 180, "a new membership change in flight", every=0.02)
                await asyncio.sleep(rng.uniform(0.0, 0.5))  # WHEN to kill, not a sync
                before = await watch.read_members()
                if before is None or not in_flight(before.members):
                    continue  # it settled meanwhile: wait for the next one
                operator.kill()
                after = await watch.read_members()
                assert after is not None and in_flight(after.members), (
                    f"kill {len(kills) + 1} came after {in_flight(before.members)} settled"
                )
                hit.update(m.id for m in after.members if m.is_learner or not m.name)
                kills.append(str(in_flight(after.members)))
                operator.start()
                await operator.wait_serving()
        finally:
            if not operator.alive:
                operator.start()
        await wait_all_at(kube, name, namespace, NEW, UPGRADE_WITHIN)
        await wait_membership_matches(kube, name, namespace, 3, 120)
    ids = watch.ids_by_name()
    twice = {n: i for n, i in ids.items() if len(i) > 1}
    details = f"seed {seed}: kills during {kills}; ids by name {ids}"
    print(details)  # the kills and the member IDs in it are asserted below
    assert len(kills) == 2 and not twice, details
    assert len(ids) == 6, f"want 3 old + 3 new members ever: {details}"


@pytest.fixture
def broken_image(local_node: LocalNode) -> str:
    """Image etcd:v3.6.15 whose etcd cannot start: etcdutl stands in for it (an image has no
    shell to run a script), refuses etcd's flags and exits 1."""
    ref = f"gcr.io/etcd-development/etcd:v{BROKEN}"
    local_node.add_image(Image(ref, files={"/usr/local/bin/etcd": bin_path("etcdutl", f"v{OLD}")}))
    return ref


async def test_a_new_member_that_cannot_start_stalls_and_a_rollback_clears_it(
    etcdcluster_crd: KubeClient,
    local_node: object,
    operator: OperatorProcess,
    namespace: str,
    broken_image: str,
) -> None:
    kube = etcdcluster_crd
    name = "stall"
    spec = {"upgrade": {"memberReadyTimeout": "20s"}}
    await create_cluster(kube, etcd_cluster(name, namespace, 3, version=OLD, **spec))
    await wait_all_at(kube, name, namespace, OLD, READY_WITHIN)
    before = await member_ids(kube, name, namespace)
    await patch_spec(kube, name, namespace, {"version": BROKEN})
    seen: list[dict[str, Any]] = []

    async def stalled() -> bool:
        ec = await get_cluster(kube, name, namespace)
        degraded = condition(ec, "Degraded") or {}
        seen[:] = [degraded]
        assert degraded.get("reason") == "UpgradeStalled", degraded
        return True

    await eventually(stalled, 180, "Degraded/UpgradeStalled")
    message = seen[0]["message"]
    assert "was not healthy and caught up within 20s" in message, message
    assert "exit code 1" in message and "spec.version back" in message, message

    async def whole_on_old() -> bool:
        assert await member_ids(kube, name, namespace) == before
        return True

    await eventually(whole_on_old, 60, "the stalled member removed again")
    ec = await get_cluster(kube, name, namespace)
    assert {m["version"] for m in ec["status"]["members"]} == {OLD}, ec["status"]["members"]
    assert ec["status"]["readyMembers"] == 3 and ec["status"]["stalled"]["member"] not in {
        n for n in before.values()
    }
    await patch_spec(kube, name, namespace, {"version": OLD})
    ec = await wait_all_at(kube, name, namespace, OLD, READY_WITHIN)
    degraded = condition(ec, "Degraded") or {}
    assert degraded.get("reason") != "UpgradeStalled" and "stalled" not in ec["status"], degraded


async def test_rollback_mid_upgrade_brings_every_member_back_and_paused_holds(
    etcdcluster_crd: KubeClient, local_node: object, operator: OperatorProcess, namespace: str
) -> None:
    kube = etcdcluster_crd
    name = "rollback"
    await create_cluster(kube, etcd_cluster(name, namespace, 3, version=OLD))
    await wait_all_at(kube, name, namespace, OLD, READY_WITHIN)
    await patch_spec(kube, name, namespace, {"version": NEW})

    async def one_new_voter() -> bool:
        ec = await get_cluster(kube, name, namespace)
        new = [
            m for m in ec["status"]["members"] if m.get("version") == NEW and not m.get("isLearner")
        ]
        assert new, ec["status"]["members"]
        return True

    await eventually(one_new_voter, 180, "a member at the new version")
    await patch_spec(kube, name, namespace, {"paused": True})

    async def paused() -> bool:
        ec = await get_cluster(kube, name, namespace)
        assert ec["status"]["phase"] == "Paused", ec["status"]["phase"]
        return True

    # A step in flight when the spec changed still completes: the hold starts at the look that
    # writes phase Paused.
    await eventually(paused, 30, "phase Paused")
    held = await member_ids(kube, name, namespace)
    samples = []
    for _ in range(5):  # the membership must not move while paused (sampled over ~10 s)
        samples.append(await member_ids(kube, name, namespace))
        await asyncio.sleep(2)
    assert all(s == held for s in samples), f"membership moved while paused: {samples}"
    await patch_spec(kube, name, namespace, {"paused": False, "version": OLD})
    ec = await wait_all_at(kube, name, namespace, OLD, UPGRADE_WITHIN)
    assert ec["status"]["clusterVersion"].startswith("3.5"), ec["status"]


async def upgraded(kube: KubeClient, name: str, namespace: str, **spec: Any) -> None:
    """A 3-member cluster created at OLD, upgraded to NEW, speaking NEW's minor."""
    await create_cluster(kube, etcd_cluster(name, namespace, 3, version=OLD, **spec))
    await wait_all_at(kube, name, namespace, OLD, READY_WITHIN)
    await patch_spec(kube, name, namespace, {"version": NEW})
    await wait_all_at(kube, name, namespace, NEW, UPGRADE_WITHIN)

    async def speaks_new() -> bool:
        ec = await get_cluster(kube, name, namespace)
        assert ec["status"].get("clusterVersion", "").startswith("3.6"), ec["status"]
        return True

    await eventually(speaks_new, 60, "status.clusterVersion 3.6")


async def test_going_back_a_minor_in_place_uses_etcds_downgrade(
    etcdcluster_crd: KubeClient, local_node: object, operator: OperatorProcess, namespace: str
) -> None:
    kube = etcdcluster_crd
    name = "downgrade"
    spec = {"storage": CLAIMS, "upgrade": {"strategy": "InPlace"}}
    await upgraded(kube, name, namespace, **spec)
    before = await member_ids(kube, name, namespace)
    keys = await write_keys(kube, name, namespace, "before-downgrade", 50)
    await patch_spec(kube, name, namespace, {"version": OLD})
    ec = await wait_all_at(kube, name, namespace, OLD, UPGRADE_WITHIN)
    assert ec["status"]["clusterVersion"].startswith("3.5"), ec["status"]
    assert await member_ids(kube, name, namespace) == before, "a member was replaced"
    lost = await unreadable(kube, name, namespace, keys)
    assert not lost, f"{len(lost)} of {len(keys)} keys lost in the downgrade: {lost[:10]}"
    events = await kube.items(f"/api/v1/namespaces/{namespace}/events")
    assert any(e.get("reason") == "DowngradeEnabled" for e in events), [
        e.get("reason") for e in events
    ]


async def test_going_back_a_minor_by_surge_is_refused_and_nothing_changes(
    etcdcluster_crd: KubeClient, local_node: object, operator: OperatorProcess, namespace: str
) -> None:
    """etcd 3.5 does not join a downgrading 3.6 cluster as a new member: Surge cannot go back."""
    kube = etcdcluster_crd
    name = "nodowngrade"
    await upgraded(kube, name, namespace)
    before = await member_ids(kube, name, namespace)
    await patch_spec(kube, name, namespace, {"version": OLD})
    seen: list[dict[str, Any]] = []

    async def refused() -> bool:
        ec = await get_cluster(kube, name, namespace)
        degraded = condition(ec, "Degraded") or {}
        seen[:] = [degraded]
        assert degraded.get("reason") == "VersionRefused", degraded
        return True

    await eventually(refused, 60, "Degraded/VersionRefused")
    assert "strategy InPlace" in seen[0]["message"], seen[0]
    ec = await get_cluster(kube, name, namespace)
    assert ec["status"]["clusterVersion"].startswith("3.6"), ec["status"]
    assert {m["version"] for m in ec["status"]["members"]} == {NEW}, ec["status"]["members"]
    assert await member_ids(kube, name, namespace) == before
    events = await kube.items(f"/api/v1/namespaces/{namespace}/events")
    assert not any(e.get("reason") == "DowngradeEnabled" for e in events)
    await patch_spec(kube, name, namespace, {"version": NEW})
    ec = await wait_all_at(kube, name, namespace, NEW, READY_WITHIN)
    assert (condition(ec, "Degraded") or {}).get("reason") != "VersionRefused"
