"""Detached processes tracked by PID files, so `down` (or a fixture) can stop what `up` started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class GaveUp(Exception):
    """Raised by a wait_for check when waiting longer cannot help (the process died)."""


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll CHECK until it holds; raise naming WHAT when TIMEOUT passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except GaveUp:
            raise
        except Exception:  # any other error from a check means "not yet"
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Procs:
    """Start and stop named daemons; their PIDs live in STATE/pids and their logs in STATE/logs."""

    def __init__(self, state_dir: Path) -> None:
        self.pid_dir = state_dir / "pids"
        self.log_dir = state_dir / "logs"
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> int:
        if self.alive(name):
            raise RuntimeError(f"{name} is already running (pid {self.pid(name)})")
        full_env = dict(os.environ)
        full_env.update(env or {})
        with self.log_path(name).open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,  # its own process group: outlives `up`, killed as a group
                pass_fds=pass_fds,
            )
        (self.pid_dir / f"{name}.pid").write_text(str(proc.pid))
        return proc.pid

    def pid(self, name: str) -> int | None:
        try:
            return int((self.pid_dir / f"{name}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def alive(self, name: str) -> bool:
        pid = self.pid(name)
        if pid is None:
            return False
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        return state != "Z"

    def stop(self, name: str, grace: float = 10.0) -> None:
        pid = self.pid(name)
        if pid is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + grace
            while self.alive(name) and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.1)
            if not self.alive(name):
                break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        (self.pid_dir / f"{name}.pid").unlink(missing_ok=True)

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.pid_dir.glob("*.pid"))

    def tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""
