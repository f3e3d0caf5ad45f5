"""Real local etcd clusters for tests: N members on loopback, each a process we can kill or restart.

Every member listens on 127.0.0.1 with free ports and its own data dir; `--unsafe-no-fsync` keeps
them fast on a busy machine. `stop()` kills every process the cluster started (use it as a context
manager, or through the fixtures in tests/integration/conftest.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from e2e.localcluster.binaries import bin_path
from e2e.localcluster.procs import GaveUp, Procs, free_port, wait_for

START_TIMEOUT = 30.0


@dataclass
class EtcdProc:
    """One member process: its name, URLs and data dir (kept across restarts)."""

    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    initial_cluster: str
    state: str  # "new" or "existing": the --initial-cluster-state it was first started with

    @property
    def endpoint(self) -> str:
        return self.client_url


class EtcdProcs:
    """A local etcd cluster of one VERSION (e.g. "v3.6.16") under BASE_DIR."""

    def __init__(
        self,
        base_dir: Path,
        version: str,
        size: int = 3,
        token: str = "etcdop-test",
        extra_args: tuple[str, ...] = (),
    ):
        self.extra_args = extra_args
        self.base_dir = base_dir
        self.version = version
        self.token = token
        self._procs = Procs(base_dir)
        self.members: dict[str, EtcdProc] = {}
        self._size = size

    # lifecycle ----------------------------------------------------------------------------------

    def start(self) -> EtcdProcs:
        """Start SIZE members with --initial-cluster-state=new and wait until all are healthy."""
        names = [f"m{i}" for i in range(self._size)]
        peers = {name: f"http://127.0.0.1:{free_port()}" for name in names}
        initial = ",".join(f"{name}={url}" for name, url in peers.items())
        for name in names:
            self.members[name] = EtcdProc(
                name=name,
                client_url=f"http://127.0.0.1:{free_port()}",
                peer_url=peers[name],
                data_dir=self.base_dir / name,
                initial_cluster=initial,
                state="new",
            )
        try:
            for name in names:
                self._launch(self.members[name])
            for name in names:
                self.wait_healthy(name)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill every member process (SIGKILL: data dirs are throw-away) and reap it."""
        for name in list(self.members):
            self.kill(name)

    def __enter__(self) -> EtcdProcs:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # members ------------------------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        """Client URLs of the members that are running now."""
        return [m.client_url for m in self.members.values() if self.alive(m.name)]

    def new_member(self, name: str) -> EtcdProc:
        """Reserve URLs for a member not yet in the cluster (add it with MemberAdd, then `join`)."""
        if name in self.members:
            raise ValueError(f"member {name!r} already exists in this test cluster")
        proc = EtcdProc(
            name=name,
            client_url=f"http://127.0.0.1:{free_port()}",
            peer_url=f"http://127.0.0.1:{free_port()}",
            data_dir=self.base_dir / name,
            initial_cluster="",
            state="existing",
        )
        self.members[name] = proc
        return proc

    def join(self, name: str, initial_cluster: str) -> EtcdProc:
        """Start a reserved member with --initial-cluster-state=existing; waits only for its port.

        A learner answers /health with "false" until it caught up, so the caller waits on what it
        needs (for example a successful promote).
        """
        proc = self.members[name]
        proc.initial_cluster = initial_cluster
        self._launch(proc)
        wait_for(lambda: self._answers(proc), START_TIMEOUT, f"etcd member {name} to serve")
        return proc

    def kill(self, name: str) -> None:
        """SIGKILL one member; its data dir stays, so `restart` brings back the same member."""
        pid = self._procs.pid(name)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        # A Go process shows "Z" while its threads still exit, and WNOHANG then reaps nothing:
        # block in waitpid (SIGKILL cannot be ignored) so no zombie is left behind.
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # not our child (another session started it): poll instead
            deadline = time.monotonic() + 10
            while self._procs.alive(name) and time.monotonic() < deadline:
                time.sleep(0.05)
        if self._procs.alive(name):
            raise RuntimeError(f"etcd member {name} (pid {pid}) survived SIGKILL")
        (self._procs.pid_dir / f"{name}.pid").unlink(missing_ok=True)

    def restart(self, name: str) -> None:
        """Start a killed member again on the same data dir and wait until it is healthy."""
        self.kill(name)
        self._launch(self.members[name])
        self.wait_healthy(name)

    def alive(self, name: str) -> bool:
        return self._procs.alive(name)

    def pids(self) -> list[int]:
        return [pid for name in self.members if (pid := self._procs.pid(name)) is not None]

    def log(self, name: str, lines: int = 40) -> str:
        return self._procs.tail(name, lines)

    def wait_healthy(self, name: str, timeout: float = START_TIMEOUT) -> None:
        """Wait until the member's own /health says true (it has a leader and no alarm)."""
        proc = self.members[name]

        def healthy() -> bool:
            if not self.alive(name):
                raise GaveUp(f"etcd member {name} exited:\n{self.log(name)}")
            with urllib.request.urlopen(f"{proc.client_url}/health", timeout=2) as resp:
                return bool(json.loads(resp.read())["health"] == "true")

        try:
            wait_for(healthy, timeout, f"etcd member {name} to be healthy")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last log lines:\n{self.log(name)}") from e

    # internals ----------------------------------------------------------------------------------

    def _answers(self, proc: EtcdProc) -> bool:
        if not self.alive(proc.name):
            raise GaveUp(f"etcd member {proc.name} exited:\n{self.log(proc.name)}")
        with urllib.request.urlopen(f"{proc.client_url}/version", timeout=2) as resp:
            return bool(resp.status == 200)

    def _launch(self, proc: EtcdProc) -> None:
        self._procs.start(
            proc.name,
            [
                str(bin_path("etcd", self.version)),
                f"--name={proc.name}",
                f"--data-dir={proc.data_dir}",
                f"--listen-client-urls={proc.client_url}",
                f"--advertise-client-urls={proc.client_url}",
                f"--listen-peer-urls={proc.peer_url}",
                f"--initial-advertise-peer-urls={proc.peer_url}",
                f"--initial-cluster={proc.initial_cluster}",
                f"--initial-cluster-state={proc.state}",
                f"--initial-cluster-token={self.token}",
                "--unsafe-no-fsync",
                "--log-level=warn",
                *self.extra_args,
            ],
        )
