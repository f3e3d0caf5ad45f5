"""Faults for reliability tests: kill a container, wipe a volume, cut a pod off, silence a Node.

Each works from any process on the machine (a test, or the agent itself): containers and volumes
are found through the sandbox's records under its state root, and the heartbeat switch is a flag
file there that the kubelet reads before each Lease renewal (`heartbeat_stopped`).
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import cast

from e2e.localcluster.node import netns, proc


class FaultError(RuntimeError):
    """The fault could not be applied (no such container or mount); the message says which."""


def kill_process(pid: int, sig: int = signal.SIGKILL) -> None:
    os.kill(pid, sig)


def _record(uid: str, container: str) -> dict[str, object]:
    rec = proc.container_record(uid, container)
    if rec is None:
        known = sorted(proc.container_records(uid))
        raise FaultError(
            f"pod uid {uid}: no running container {container!r} (running: {known or 'none'})"
        )
    return rec


def kill_container(uid: str, container: str, sig: int = signal.SIGKILL) -> int:
    """Send SIG (default SIGKILL) to the main process of CONTAINER in pod UID; returns its pid."""
    rec = _record(uid, container)
    pid = int(str(rec["pid"]))
    try:
        with open(f"/proc/{pid}/stat") as f:
            starttime = int(f.read().rsplit(")", 1)[1].split()[19])
    except FileNotFoundError:
        raise FaultError(
            f"pod uid {uid}: container {container!r} (pid {pid}) already exited"
        ) from None
    if rec.get("starttime") is not None and starttime != rec["starttime"]:
        raise FaultError(f"pod uid {uid}: container {container!r} pid {pid} was reused")
    os.kill(pid, sig)
    return pid


def wipe_directory(path: Path) -> None:
    """Delete everything inside PATH, keeping PATH itself (it may be a mount source)."""
    path = Path(path)
    if not path.is_dir():
        raise FaultError(f"cannot wipe {path}: not a directory")
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def wipe_volume(uid: str, mount_path: str, container: str | None = None) -> Path:
    """Wipe the host directory mounted at MOUNT_PATH in pod UID (any container, or CONTAINER)."""
    records = proc.container_records(uid)
    if container is not None:
        records = {container: _record(uid, container)}
    wanted = os.path.normpath(mount_path)
    for rec in records.values():
        mounts = cast(list[dict[str, str]], rec.get("mounts", []))
        for m in mounts:
            if os.path.normpath(m["target"]) == wanted:
                source = Path(m["source"])
                wipe_directory(source)
                return source
    raise FaultError(f"pod uid {uid}: no container mounts a volume at {mount_path}")


def cut_pod_network(uid: str) -> None:
    netns.cut_pod_network(uid)


def heal_pod_network(uid: str) -> None:
    netns.heal_pod_network(uid)


def _heartbeat_flag(node: str) -> Path:
    return netns.settings().root / "faults" / "heartbeat-stopped" / node


def stop_node_heartbeat(node: str) -> None:
    """Make the kubelet of NODE stop renewing its Lease and status (it checks the flag)."""
    flag = _heartbeat_flag(node)
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.touch()


def resume_node_heartbeat(node: str) -> None:
    _heartbeat_flag(node).unlink(missing_ok=True)


def heartbeat_stopped(node: str) -> bool:
    """For the kubelet: skip this heartbeat of NODE when true."""
    return _heartbeat_flag(node).exists()
