"""The whole local cluster as one unit: control plane, S3 server and real nodes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from e2e.localcluster import lock
from e2e.localcluster.binaries import bin_dir
from e2e.localcluster.controlplane import ControlPlane
from e2e.localcluster.kubelet import bridge
from e2e.localcluster.kubelet.nodes import RealNodes, crictl_path
from e2e.localcluster.s3 import S3Server


def default_state_dir() -> Path:
    env = os.environ.get("ETCDOP_STATE_DIR")
    if env:
        return Path(env)
    return Path.home() / ".local" / "state" / "etcdop" / "cluster"


class LocalCluster:
    def __init__(self, state_dir: Path | None = None, nodes: int = 3) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.control_plane = ControlPlane(self.state_dir)
        self.s3 = S3Server(self.state_dir)
        self.nodes = nodes

    def real_nodes(self) -> RealNodes:
        return RealNodes(self.state_dir, self.control_plane.kubeconfig, self.control_plane.pki_dir,
                         self.nodes)

    def nodes_running(self) -> bool:
        return self.real_nodes().running()

    def up(
        self,
        with_node: bool = True,
        lock_wait: float = 0,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        """Start what is not running. Nodes first take the machine lock (waiting LOCK_WAIT
        seconds for another session's nodes, telling ON_WAIT; MachineBusy after that), before
        anything starts; a small process keeps it until `down`."""
        real = self.real_nodes()
        fd = lock.take(lock_wait, on_wait) if with_node and not real.running() else None
        try:
            self.control_plane.start()
            self.s3.start()
            if not with_node:
                return
            if fd is None:
                real.wait_ready(60)
                if real.refresh_product_image():
                    print("# real nodes: imported the product image `make image` wrote since "
                          "they started", file=sys.stderr)
                return
            real.hold_lock(fd)
            try:
                timings = real.start()
            except BaseException:
                real.stop()
                raise
        finally:
            if fd is not None:
                os.close(fd)
        print("# real nodes up; seconds since start: "
              + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()), file=sys.stderr)

    def down(self) -> None:
        """Stop this cluster. The nodes' machine-wide parts (cgroup roots, sockets, the bridge)
        are named alike for every cluster, so another cluster's running nodes are left alone."""
        real = self.real_nodes()
        try:
            running: Path | None = RealNodes.current().cluster_state.resolve()
        except RuntimeError:
            running = None
        if running is not None and running != self.state_dir:
            print(f"# down: the nodes running here belong to the cluster in {running}; "
                  "leaving them (run down with that --state-dir)")
        elif real.state.exists():
            for problem in real.stop():
                print(f"# down: could not undo {problem}")
        elif (fd := lock.try_take()) is not None:
            try:  # no state, no nodes: sweep a bridge a crashed run left
                bridge.remove_bridge()
            finally:
                os.close(fd)
        self.s3.stop()
        self.control_plane.stop()

    def env_lines(self) -> list[str]:
        # crictl needs --runtime-endpoint unix:///run/etcdop/kn/<node>/containerd.sock
        path = [bin_dir("kubectl"), bin_dir("etcdctl"), bin_dir("helm"), crictl_path().parent]
        return [
            f"export KUBECONFIG={self.control_plane.kubeconfig}",
            f"export PATH={':'.join(str(p) for p in path)}:$PATH",
            f"export ETCDOP_STATE_DIR={self.state_dir}",
        ]
