"""The whole local cluster as one unit: control plane, S3 server and (when present) node agent."""

from __future__ import annotations

import fcntl
import importlib.util
import os
from pathlib import Path

from e2e.localcluster import kubelet
from e2e.localcluster.binaries import bin_dir
from e2e.localcluster.controlplane import ControlPlane
from e2e.localcluster.kubelet.nodes import RealNodes
from e2e.localcluster.procs import GaveUp, Procs, wait_for
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

    def nodes_running(self) -> bool:
        """Whether this cluster's nodes run (the kubelets, or the imitation's agent)."""
        if kubelet.enabled():
            return self.real_nodes().running()
        return self.procs.alive(NODE_AGENT)

    def real_nodes(self) -> RealNodes:
        return RealNodes(self.state_dir, self.control_plane.kubeconfig, self.control_plane.pki_dir,
                         self.nodes)

    def up(self, with_node: bool = True, lock_wait: float = 0) -> None:
        self.control_plane.start()
        self.s3.start()
        if with_node and kubelet.enabled():
            self._up_real_nodes(lock_wait)
            return
        if with_node and node_agent_available() and not self.procs.alive(NODE_AGENT):
            from e2e.localcluster.node.fixtures import MACHINE_LOCK

            # The pod sandbox is machine-wide: hold the lock test sessions take, for as long as
            # this node agent lives (it inherits the locked descriptor).
            MACHINE_LOCK.parent.mkdir(parents=True, exist_ok=True)
            lock = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock)
                raise SystemExit(
                    f"another local node agent (a test session?) holds {MACHINE_LOCK}; wait for "
                    "it to finish, or run `python -m e2e.localcluster down` for the cluster that "
                    "started it"
                ) from None
            from e2e.localcluster.node import agent

            argv = agent.agent_argv(self.control_plane.kubeconfig, self.state_dir / "node",
                                    self.nodes)
            agent.start(self.procs, argv, pass_fds=(lock,))
            os.close(lock)
            # Nodes of an earlier `up` may still look Ready: wait for this agent itself first.
            agent.wait_ready(self.procs, self.state_dir / "node", 120)
            self._wait_nodes_ready()

    def _up_real_nodes(self, lock_wait: float) -> None:
        """Real kubelets (the default node) under the machine lock, which a small process
        keeps until `down`; waits LOCK_WAIT seconds for another session to release it."""
        import sys
        import time

        from e2e.localcluster.node.fixtures import MACHINE_LOCK

        real = self.real_nodes()
        if real.running():
            real.wait_ready(60)
            return
        MACHINE_LOCK.parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + lock_wait
        try:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise SystemExit(
                            f"another local node (a test session?) holds {MACHINE_LOCK}; wait for "
                            "it (up --wait-lock SECONDS) or run `python -m e2e.localcluster down` "
                            "for the cluster that started it"
                        ) from None
                    time.sleep(2)
            real.hold_lock(lock)
            try:
                timings = real.start()
            except BaseException:
                real.stop()
                raise
        finally:
            os.close(lock)
        print("# real nodes up; seconds since start: "
              + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()), file=sys.stderr)

    def _wait_nodes_ready(self, timeout: float = 90) -> None:
        import json
        import subprocess

        from e2e.localcluster.binaries import bin_path

        def ready() -> bool:
            if not self.procs.alive(NODE_AGENT):
                raise GaveUp(f"the node agent exited:\n{self.procs.tail(NODE_AGENT, 40)}")
            out = subprocess.run(
                [str(bin_path("kubectl")), f"--kubeconfig={self.control_plane.kubeconfig}",
                 "get", "nodes", "-o", "json"],
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout
            nodes = json.loads(out)["items"]
            ready = [
                n for n in nodes
                if any(c["type"] == "Ready" and c["status"] == "True"
                       for c in n.get("status", {}).get("conditions") or [])
            ]
            return len(ready) >= self.nodes

        wait_for(ready, timeout, f"{self.nodes} Ready nodes")

    def down(self) -> None:
        real = self.real_nodes()
        if real.state.exists():
            for problem in real.stop():
                print(f"# down: could not undo {problem}")
        self.procs.stop(NODE_AGENT, grace=30)
        if node_agent_available():
            from e2e.localcluster.node import netns  # only the node agent creates namespaces
            from e2e.localcluster.node.fixtures import MACHINE_LOCK

            # Sweep what a crashed agent left, unless another session's agent is using it now.
            MACHINE_LOCK.parent.mkdir(parents=True, exist_ok=True)
            lock = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                netns.teardown_all()
            except BlockingIOError:
                pass
            finally:
                os.close(lock)
        self.s3.stop()
        self.control_plane.stop()

    def env_lines(self) -> list[str]:
        path = [bin_dir("kubectl"), bin_dir("etcdctl"), bin_dir("helm")]
        if kubelet.enabled():  # crictl --runtime-endpoint unix:///run/etcdop/kn/<node>/...
            from e2e.localcluster.kubelet.nodes import crictl_path

            path.append(crictl_path().parent)
        return [
            f"export KUBECONFIG={self.control_plane.kubeconfig}",
            f"export PATH={':'.join(str(p) for p in path)}:$PATH",
            f"export ETCDOP_STATE_DIR={self.state_dir}",
        ]
