"""Resize 3 -> 5 -> 1 -> 3 under load, then move the leader twice: every voter is probed 20
times a second and the writer keeps every operation, so "never lost quorum" and "no write
failed" are checked at every sample time, not claimed from a few samples."""

from __future__ import annotations

import asyncio

import pytest

from e2e.localcluster.kubeapi import KubeClient
from e2e.operator import (
    OperatorProcess,
    create_cluster,
    etcd_cluster,
    etcd_leader,
    move_leader,
    patch_spec,
    wait_cluster_ready,
    wait_membership_matches,
)
from e2e.workload import (
    QuorumMonitor,
    Writer,
    assert_quorum_kept,
    running,
    unreadable,
)
from tests.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.node]

NAME = "scale"
STEPS = (5, 1, 3)
LEADER_MOVES = 2
READY_WITHIN = 240.0


async def test_scale_3_5_1_3_and_leader_moves_keep_quorum_and_every_write(
    etcdcluster_crd: KubeClient, local_node: object, operator: OperatorProcess, namespace: str
) -> None:
    kube = etcdcluster_crd
    await create_cluster(kube, etcd_cluster(NAME, namespace, 3))
    await wait_cluster_ready(kube, NAME, namespace, 3, READY_WITHIN)

    monitor = QuorumMonitor(kube, NAME, namespace)
    writer = Writer(monitor)
    progress: list[str] = []
    moves: list[str] = []
    async with running(monitor, writer):
        async with asyncio.timeout(60):
            await monitor.watch.ready.wait()
        for size in STEPS:
            monitor.mark(f"size {size}")
            acked_before = len(writer.acked)
            await patch_spec(kube, NAME, namespace, {"size": size})
            await wait_cluster_ready(kube, NAME, namespace, size, READY_WITHIN)
            await wait_membership_matches(kube, NAME, namespace, size, 120)
            progress.append(f"size {size}: +{len(writer.acked) - acked_before} writes")
            assert len(writer.acked) > acked_before, f"writer made no progress: {progress}"
        changes_before = len(monitor.watch.leader_changes())
        for n in range(LEADER_MOVES):
            monitor.mark(f"leader move {n + 1}")
            acked_before = len(writer.acked)
            before = await etcd_leader(kube, NAME, namespace)
            after = await move_leader(kube, NAME, namespace)
            assert after.id != before.id, f"leader still {before.name}"
            moves.append(f"{before.name} -> {after.name}")
            await writer_progress(writer, acked_before)
        monitor.mark("end")
        await writer_progress(writer, len(writer.acked))  # samples after the last move

    summary = (
        f"steps: {'; '.join(progress)}; leader moves: {moves}\n"
        f"monitor: {monitor.report()}\nwriter: {writer.report()}"
    )
    # Asserted below: sampling gaps and rate, windows without quorum, leader changes, failed and
    # lost writes; write counts per step and latencies are context for a failure only.
    print(summary)
    details = f"{summary}\n({monitor.diagnostics()}; writer: {writer.diagnostics()})"

    assert_quorum_kept(monitor, details)
    failed = [
        f"[{monitor.label_at(op.start)}] {op.key} after {op.end - op.start:.3f}s: {op.error}"
        for op in writer.failures()
    ]
    assert not failed, f"{len(failed)} writes failed, first: {failed[:5]}; {details}"
    changes = monitor.watch.leader_changes()
    assert len(changes) - changes_before == LEADER_MOVES and changes_before == 0, (
        f"leader changes seen by the monitor: {len(changes)} "
        f"({changes_before} before the moves), want exactly the {LEADER_MOVES} moves: {details}"
    )
    assert monitor.watch.member_list_failures == 0, details
    lost = await unreadable(kube, NAME, namespace, writer.acked)
    assert not lost, f"{len(lost)} of {len(writer.acked)} acknowledged writes lost: {lost[:10]}"


async def writer_progress(writer: Writer, acked_before: int, within: float = 30) -> None:
    """Until the writer has acknowledged 10 more writes than ACKED_BEFORE."""

    async def more() -> bool:
        return len(writer.acked) > acked_before + 10

    await eventually(more, within, f"the writer to pass {acked_before + 10} acknowledged writes")
