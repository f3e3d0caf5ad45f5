"""The whole local cluster as one unit: control plane, S3 server and real nodes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from e2e.localcluster import lock
from e2e.localcluster.binaries import bin_dir
from e2e.localcluster.controlplane import ControlPlane
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

    def up(self, with_node: bool = True, lock_wait: float = 0) -> None:
        """Start what is not running; the nodes under the machine lock, which a small process
        keeps until `down` (waits LOCK_WAIT seconds for another session's nodes)."""
        self.control_plane.start()
        self.s3.start()
        if not with_node:
            return
        real = self.real_nodes()
        if real.running():
            real.wait_ready(60)
            return
        fd = lock.try_take()
        if fd is None:
            if lock_wait > 0:
                print(f"# waiting up to {lock_wait:.0f}s for {lock.MACHINE_LOCK} (another "
                      "session's nodes)", file=sys.stderr)
            try:
                fd = lock.take(lock_wait)
            except lock.MachineBusy as e:
                raise SystemExit(f"{e} (`up --wait-lock SECONDS` waits longer)") from None
        try:
            real.hold_lock(fd)
            try:
                timings = real.start()
            except BaseException:
                real.stop()
                raise
        finally:
            os.close(fd)
        print("# real nodes up; seconds since start: "
              + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()), file=sys.stderr)

    def down(self) -> None:
        real = self.real_nodes()
        if real.state.exists():
            for problem in real.stop():
                print(f"# down: could not undo {problem}")
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
