"""pytest fixture ``local_node``: three real nodes (kubelet, containerd, runc) on top of the
``control_plane`` fixture, started under the machine lock and stopped at the session's end;
with ETCDOP_REUSE_CLUSTER=1 the nodes `python -m e2e.localcluster up` started."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.localcluster import lock
from e2e.localcluster.binaries import bin_path
from e2e.localcluster.controlplane import ControlPlane
from e2e.localcluster.fixtures import reuse_requested
from e2e.localcluster.kubelet.images import Image
from e2e.localcluster.kubelet.nodes import RealNodes


@dataclass
class LocalNode:
    """The tests' handle on the nodes: node faults and what a person would do with kubectl."""

    real: RealNodes

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.real.nodes]

    @property
    def cluster_state_dir(self) -> Path:
        return self.real.cluster_state

    def add_image(self, image: Image) -> None:
        """Import IMAGE into every node's containerd (for pods created after this)."""
        self.real.add_image(image)

    def pod_logs(self, ns: str, name: str, container: str, previous: bool = False) -> str:
        argv = [str(bin_path("kubectl")), f"--kubeconfig={self.real.kubeconfig}", "logs",
                "-n", ns, name, "-c", container]
        if previous:
            argv.append("--previous")
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout

    def nodes_log(self, lines: int = 60) -> str:
        return "\n".join(
            f"--- {n.kubelet_proc}\n{self.real.procs.tail(n.kubelet_proc, lines)}"
            for n in self.real.nodes
        )

    def stop_node(self, node: str) -> None:
        """NODE's machine dies (RealNodes.stop_runtime); blocking: use asyncio.to_thread."""
        self.real.stop_runtime(self.real.node(node))

    def start_node(self, node: str) -> None:
        self.real.start_runtime(self.real.node(node))

    def restart_all_nodes(
        self, within: float = 120.0, while_down: Callable[[], None] | None = None
    ) -> None:
        """Every node off at once, WHILE_DOWN, then on; blocking: use asyncio.to_thread."""
        self.real.restart_all(within, while_down)


@pytest.fixture(scope="session")
async def local_node(control_plane: ControlPlane) -> AsyncIterator[LocalNode]:
    """Start 3 real nodes under the machine lock (waiting for another session's nodes), stop
    them at the end; with ETCDOP_REUSE_CLUSTER=1 use those `up` started."""
    real = RealNodes(control_plane.state_dir, control_plane.kubeconfig, control_plane.pki_dir, 3)
    handle = LocalNode(real)
    if reuse_requested():
        if not real.running():
            raise RuntimeError(
                "ETCDOP_REUSE_CLUSTER is set but no kubelets run for "
                f"{control_plane.state_dir}: run `python -m e2e.localcluster up`"
            )
        await asyncio.to_thread(real.wait_ready, 60)
        await asyncio.to_thread(real.refresh_product_image)  # `make image` since `up`
        yield handle
        return
    lock_fd = await lock.take_async(3600)
    try:
        try:
            await asyncio.to_thread(real.start)
        except BaseException as e:
            tail = handle.nodes_log(40)
            await asyncio.to_thread(real.stop)
            raise RuntimeError(f"real nodes did not come up: {e}\n{tail}") from e
        try:
            yield handle
        finally:
            await asyncio.to_thread(real.stop)
    finally:
        os.close(lock_fd)
