"""Resize 3 -> 5 -> 1 -> 3 under load: a writer never loses an acknowledged write, and at every
sample a quorum of the voting members is healthy."""

from __future__ import annotations

import pytest

from e2e.operator import (
    KubeClient,
    OperatorProcess,
    create_cluster,
    etcd_cluster,
    patch_spec,
    wait_cluster_ready,
    wait_membership_matches,
)
from e2e.workload import QuorumMonitor, Writer, running, unreadable

pytestmark = [pytest.mark.cluster, pytest.mark.node]

NAME = "scale"
STEPS = (5, 1, 3)
READY_WITHIN = 240.0


async def test_scale_3_5_1_3_keeps_quorum_and_every_acknowledged_write(
    etcdcluster_crd: KubeClient, local_node: object, operator: OperatorProcess, namespace: str
) -> None:
    kube = etcdcluster_crd
    await create_cluster(kube, etcd_cluster(NAME, namespace, 3))
    await wait_cluster_ready(kube, NAME, namespace, 3, READY_WITHIN)

    writer = Writer(kube, NAME, namespace)
    monitor = QuorumMonitor(kube, NAME, namespace)
    progress: list[str] = []
    async with running(writer, monitor):
        for size in STEPS:
            acked_before = len(writer.acked)
            samples_before = monitor.samples
            await patch_spec(kube, NAME, namespace, {"size": size})
            await wait_cluster_ready(kube, NAME, namespace, size, READY_WITHIN)
            await wait_membership_matches(kube, NAME, namespace, size, 120)
            progress.append(
                f"size {size}: +{len(writer.acked) - acked_before} writes, "
                f"{monitor.samples - samples_before} samples"
            )
            assert len(writer.acked) > acked_before, f"writer made no progress: {progress}"
            assert monitor.samples > samples_before, f"monitor took no sample: {progress}"

    print("scale steps:", "; ".join(progress))
    print(f"writer: {len(writer.acked)} acknowledged, {len(writer.errors)} failed attempts"
          f" (first: {writer.errors[:3]})")
    print(f"monitor: {monitor.samples} samples, min margin above quorum "
          f"{monitor.min_healthy_margin}, {len(monitor.unconfirmed)} unconfirmed dips "
          f"{monitor.unconfirmed[:3]}")
    assert not monitor.violations, (
        f"{len(monitor.violations)} samples without a healthy quorum: {monitor.violations[:5]}"
    )
    lost = await unreadable(kube, NAME, namespace, writer.acked)
    assert not lost, f"{len(lost)} of {len(writer.acked)} acknowledged writes lost: {lost[:10]}"
