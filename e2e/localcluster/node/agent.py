"""The node agent as a process: start it, know when it is up, and restart it like a rebooted
machine (every node at once) while the control plane keeps running.

`up` (cluster.py), the ``local_node`` fixture and the restart hook all start the agent here, so
a restart in a test goes through the same path as ``make cluster-down && make cluster-up``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from e2e.localcluster.procs import Procs

NODE_AGENT = "node-agent"
REPO = Path(__file__).resolve().parents[3]
MACHINE_LOCK = Path("/run/etcdop/local-node.lock")


def agent_argv(kubeconfig: Path, state_dir: Path, nodes: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "e2e.localcluster.node",
        "--kubeconfig",
        str(kubeconfig),
        "--state-dir",
        str(state_dir),
        "--nodes",
        str(nodes),
    ]


def ready_file(state_dir: Path) -> Path:
    """Written by the agent (its pid) once its Nodes are registered and its pods listed."""
    return state_dir / "agent-ready"


def ready_pid(state_dir: Path) -> int | None:
    try:
        return int(ready_file(state_dir).read_text())
    except (FileNotFoundError, ValueError):
        return None


def start(procs: Procs, argv: list[str], pass_fds: tuple[int, ...] = ()) -> int:
    state_dir = Path(argv[argv.index("--state-dir") + 1])
    ready_file(state_dir).unlink(missing_ok=True)
    return procs.start(NODE_AGENT, argv, cwd=REPO, pass_fds=pass_fds)


def wait_ready(procs: Procs, state_dir: Path, within: float) -> None:
    """Until the agent started last says it is up; fail at once with its log if it exited."""
    deadline = time.monotonic() + within
    pid = procs.pid(NODE_AGENT)
    while ready_pid(state_dir) != pid or pid is None:
        if not procs.alive(NODE_AGENT):
            raise RuntimeError(f"the node agent exited:\n{procs.tail(NODE_AGENT, 60)}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the node agent (pid {pid}) was not up within {within:.0f}s:\n"
                f"{procs.tail(NODE_AGENT, 60)}"
            )
        time.sleep(0.2)


def running_argv(procs: Procs) -> list[str]:
    """The command line of the running agent (to start it again the same way)."""
    pid = procs.pid(NODE_AGENT)
    if pid is None or not procs.alive(NODE_AGENT):
        raise RuntimeError(f"no node agent runs (no live pid in {procs.pid_dir})")
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [a.decode() for a in raw.split(b"\0") if a]


def _holds_lock(pid: int | str) -> bool:
    """Whether process PID has the machine lock file open (flock is held by open files)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(MACHINE_LOCK):
                return True
    return False


def _kill_now(procs: Procs, name: str) -> None:
    """SIGKILL NAME's process group (no chance to clean up, as at power loss) and reap it."""
    pid = procs.pid(name)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while procs.alive(name) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if procs.alive(name):
        raise RuntimeError(f"{name} (pid {pid}) survived SIGKILL")
    (procs.pid_dir / f"{name}.pid").unlink(missing_ok=True)


def restart_all_nodes(
    cluster_state_dir: Path,
    within: float = 120.0,
    while_down: Callable[[], None] | None = None,
) -> None:
    """Reboot every node at once: SIGKILL the agent and the cluster DNS it runs, kill every pod
    process and remove the pod networks (what a reboot does to /run), start the agent again with
    the same command line, and return once it is up. The control plane keeps running; pod
    objects, their volumes (emptyDir included) and their logs stay.

    WHILE_DOWN, when given, runs while no agent runs (e.g. to delete a pod meanwhile).

    Only the session that owns the agent may do this: this process holds the machine lock (the
    ``local_node`` fixture) or the agent holds it (``up``); the lock then passes to the new one.
    """
    from e2e.localcluster.node import dns, netns

    procs = Procs(cluster_state_dir)
    argv = running_argv(procs)
    old = procs.pid(NODE_AGENT)
    assert old is not None
    agent_has_lock = _holds_lock(old)
    if not agent_has_lock and not _holds_lock("self"):
        raise RuntimeError(
            f"neither this process nor the node agent (pid {old}) holds {MACHINE_LOCK}: "
            "this agent belongs to another session; not restarting it"
        )
    state_dir = Path(argv[argv.index("--state-dir") + 1])
    _kill_now(procs, NODE_AGENT)
    _kill_now(Procs(state_dir / "dns"), dns.PROC_NAME)
    netns.teardown_all()
    if while_down is not None:
        while_down()
    lock_fd = -1
    if agent_has_lock:
        lock_fd = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise RuntimeError(f"{MACHINE_LOCK} was taken by another session meanwhile") from None
    try:
        start(procs, argv, pass_fds=(lock_fd,) if lock_fd >= 0 else ())
    finally:
        if lock_fd >= 0:
            os.close(lock_fd)
    wait_ready(procs, state_dir, within)
