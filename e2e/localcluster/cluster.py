"""The whole local cluster as one unit: control plane, S3 server and (when present) node agent."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from e2e.localcluster.binaries import bin_dir
from e2e.localcluster.controlplane import ControlPlane
from e2e.localcluster.procs import Procs
from e2e.localcluster.s3 import S3Server

NODE_AGENT = "node-agent"


def default_state_dir() -> Path:
    env = os.environ.get("ETCDOP_STATE_DIR")
    if env:
        return Path(env)
    return Path.home() / ".local" / "state" / "etcdop" / "cluster"


def node_agent_available() -> bool:
    return importlib.util.find_spec("e2e.localcluster.node.__main__") is not None


class LocalCluster:
    def __init__(self, state_dir: Path | None = None, nodes: int = 3) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.control_plane = ControlPlane(self.state_dir)
        self.s3 = S3Server(self.state_dir)
        self.procs = Procs(self.state_dir)
        self.nodes = nodes

    def up(self, with_node: bool = True) -> None:
        self.control_plane.start()
        self.s3.start()
        if with_node and node_agent_available() and not self.procs.alive(NODE_AGENT):
            self.procs.start(NODE_AGENT, [
                sys.executable, "-m", "e2e.localcluster.node",
                "--kubeconfig", str(self.control_plane.kubeconfig),
                "--state-dir", str(self.state_dir / "node"),
                "--nodes", str(self.nodes),
            ], cwd=Path(__file__).resolve().parents[2])

    def down(self) -> None:
        self.procs.stop(NODE_AGENT, grace=30)
        if node_agent_available():
            from e2e.localcluster.node import netns  # only the node agent creates namespaces

            netns.teardown_all()
        self.s3.stop()
        self.control_plane.stop()

    def env_lines(self) -> list[str]:
        path = [bin_dir("kubectl"), bin_dir("etcdctl"), bin_dir("helm")]
        return [
            f"export KUBECONFIG={self.control_plane.kubeconfig}",
            f"export PATH={':'.join(str(p) for p in path)}:$PATH",
            f"export ETCDOP_STATE_DIR={self.state_dir}",
        ]
