"""The ``local_node`` fixture on real nodes (the default): the same LocalNode handle,
its helpers done through the kubelet, containerd and crictl instead of the imitation agent."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.localcluster.binaries import bin_path
from e2e.localcluster.controlplane import ControlPlane
from e2e.localcluster.fixtures import reuse_requested
from e2e.localcluster.kubelet import faults as real_faults
from e2e.localcluster.kubelet.images import Image
from e2e.localcluster.kubelet.nodes import RealNodes
from e2e.localcluster.node.fixtures import LocalNode, machine_lock


@dataclass
class KubeletNode(LocalNode):
    """LocalNode on real kubelets; `real` does the work."""

    real: RealNodes | None = None

    @property
    def nodes(self) -> RealNodes:
        assert self.real is not None
        return self.real

    def add_image(self, ref: str, directory: Path, entrypoint: list[str] | None = None,
                  cmd: list[str] | None = None) -> None:
        raise NotImplementedError(
            "real nodes run OCI images: build one with e2e.localcluster.kubelet.images and "
            "import it (a directory of host executables is the imitation's image)"
        )

    def add_oci_image(self, image: Image) -> None:
        self.nodes.add_image(image)

    def pod_logs(self, ns: str, name: str, container: str, previous: bool = False) -> str:
        argv = [str(bin_path("kubectl")), f"--kubeconfig={self.nodes.kubeconfig}", "logs",
                "-n", ns, name, "-c", container]
        if previous:
            argv.append("--previous")
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout

    def pod_info(self, ns: str, name: str) -> dict[str, Any]:
        """`crictl inspectp` of the pod's sandbox (ip, netns path), found by the pod's uid."""
        uid = subprocess.run(
            [str(bin_path("kubectl")), f"--kubeconfig={self.nodes.kubeconfig}", "get", "pod",
             "-n", ns, name, "-o", "jsonpath={.metadata.uid}"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
        return real_faults.pod_sandbox(uid)

    def stop_heartbeat(self, node: str) -> None:
        self.nodes.pause_kubelet(node, True)

    def resume_heartbeat(self, node: str) -> None:
        self.nodes.pause_kubelet(node, False)

    def agent_log(self, lines: int = 60) -> str:
        return "\n".join(
            f"--- {n.kubelet_proc}\n{self.procs.tail(n.kubelet_proc, lines)}"
            for n in self.nodes.nodes
        )

    def stop_node(self, node: str) -> None:
        self.nodes.stop_runtime(self.nodes.node(node))

    def start_node(self, node: str) -> None:
        self.nodes.start_runtime(self.nodes.node(node))

    def restart_all_nodes(
        self, within: float = 120.0, while_down: Callable[[], None] | None = None
    ) -> None:
        self.nodes.restart_all(within, while_down)

    def restart_agent(self, within: float = 120.0) -> None:
        self.nodes.restart_all(within)


async def real_local_node(control_plane: ControlPlane) -> AsyncIterator[LocalNode]:
    """Start 3 real nodes under the machine lock (waiting for other sessions), stop them at
    the end; with ETCDOP_REUSE_CLUSTER=1 use those `up` started."""
    real = RealNodes(control_plane.state_dir, control_plane.kubeconfig, control_plane.pki_dir, 3)
    handle = KubeletNode(real.state, [n.name for n in real.nodes], real.procs, real=real)
    if reuse_requested():
        if not real.running():
            raise RuntimeError(
                "ETCDOP_REUSE_CLUSTER is set but no kubelets run for "
                f"{control_plane.state_dir}: run `python -m e2e.localcluster up`"
            )
        await asyncio.to_thread(real.wait_ready, 60)
        yield handle
        return
    lock_fd = await machine_lock(3600)
    try:
        try:
            await asyncio.to_thread(real.start)
        except BaseException as e:
            tail = handle.agent_log(40)
            await asyncio.to_thread(real.stop)
            raise RuntimeError(f"real nodes did not come up: {e}\n{tail}") from e
        try:
            yield handle
        finally:
            await asyncio.to_thread(real.stop)
    finally:
        os.close(lock_fd)
