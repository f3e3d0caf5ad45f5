"""Faults for reliability tests: kill a container, wipe a volume, cut a pod off, silence a Node,
stop a whole Node (and start it again), restart every Node at once.

Each works from any process on the machine (a test, or the agent itself): containers and volumes
are found through the sandbox's records under its state root, and the node switches are flag
files there that the agent polls (`heartbeat_stopped`, `node_stopped`).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import cast

from e2e.localcluster.node import netns, proc


class FaultError(RuntimeError):
    """The fault could not be applied (no such container or mount); the message says which."""


def _real_nodes() -> bool:
    """Real kubelets run here (the default node): faults go through their runtime instead."""
    from e2e.localcluster.kubelet.nodes import RUN_ROOT

    return (RUN_ROOT / "cluster.json").exists()


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
    if _real_nodes():
        from e2e.localcluster.kubelet import faults as real

        return real.kill_container(uid, container, sig)
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
    if _real_nodes():
        from e2e.localcluster.kubelet import faults as real

        return real.wipe_volume(uid, mount_path, container)
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
    if _real_nodes():
        from e2e.localcluster.kubelet import faults as real

        return real.cut_pod_network(uid)
    netns.cut_pod_network(uid)


def heal_pod_network(uid: str) -> None:
    if _real_nodes():
        from e2e.localcluster.kubelet import faults as real

        return real.heal_pod_network(uid)
    netns.heal_pod_network(uid)


def _heartbeat_flag(node: str) -> Path:
    return netns.settings().root / "faults" / "heartbeat-stopped" / node


def stop_node_heartbeat(node: str) -> None:
    """Make the kubelet of NODE stop renewing its Lease and status (it checks the flag)."""
    if _real_nodes():
        from e2e.localcluster.kubelet.nodes import RealNodes

        return RealNodes.current().pause_kubelet(node, True)
    flag = _heartbeat_flag(node)
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.touch()


def resume_node_heartbeat(node: str) -> None:
    if _real_nodes():
        from e2e.localcluster.kubelet.nodes import RealNodes

        return RealNodes.current().pause_kubelet(node, False)
    _heartbeat_flag(node).unlink(missing_ok=True)


def heartbeat_stopped(node: str) -> bool:
    """For the kubelet: skip this heartbeat of NODE when true."""
    return _heartbeat_flag(node).exists()


# -- a whole node down --------------------------------------------------------------------------
# The flag holds a token; the agent answers in "<node>.off" with the same token once the node's
# pods are dead, and removes that file once the node is back: so stop/start can wait for it.


def _node_flag(node: str) -> Path:
    return netns.settings().root / "faults" / "node-stopped" / node


def _node_ack(node: str) -> Path:
    return _node_flag(node).with_name(f"{node}.off")


def node_stopped(node: str) -> bool:
    """For the agent: NODE is powered off (no heartbeat, no pods run)."""
    return _node_flag(node).exists()


def acknowledge_node_stopped(node: str) -> None:
    """For the agent: every process of NODE's pods is dead."""
    try:
        token = _node_flag(node).read_text()
        if _node_ack(node).exists() and _node_ack(node).read_text() == token:
            return
    except FileNotFoundError:
        return
    _node_ack(node).write_text(token)


def acknowledge_node_started(node: str) -> None:
    """For the agent: NODE acts on its pods again."""
    _node_ack(node).unlink(missing_ok=True)


def _wait(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise FaultError(f"the node agent did not {what} within {within:.0f}s (is it running?)")
        time.sleep(0.1)


def stop_node(node: str, within: float = 60.0) -> None:
    """Power NODE off, as a machine that dies: its Lease and status stop (the node lifecycle
    controller marks it NotReady/Unknown after its grace period), its pods' processes are
    SIGKILLed (no preStop, no grace) and their networks go, and nothing acts on its pods until
    `start_node`: pod statuses stay as they were, and a pod deleted meanwhile stays Terminating.
    Volumes (emptyDir included) stay. Returns once every process of its pods is dead."""
    if _real_nodes():
        from e2e.localcluster.kubelet.nodes import RealNodes

        real = RealNodes.current()
        return real.stop_runtime(real.node(node))
    flag = _node_flag(node)
    flag.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    _node_ack(node).unlink(missing_ok=True)
    flag.write_text(token)

    def acked() -> bool:
        try:
            return _node_ack(node).read_text() == token
        except FileNotFoundError:
            return False

    _wait(acked, within, f"stop node {node}")


def start_node(node: str, within: float = 60.0) -> None:
    """Power NODE on again: it boots like a rebooted machine (restartPolicy Never pods whose
    containers ran are not run again; others start over with restartCount + 1; pods deleted
    meanwhile finish their deletion). Returns once the agent acts on its pods again; the Node
    is Ready again with its next heartbeat."""
    if _real_nodes():
        from e2e.localcluster.kubelet.nodes import RealNodes

        real = RealNodes.current()
        return real.start_runtime(real.node(node), within)
    _node_flag(node).unlink(missing_ok=True)
    _wait(lambda: not _node_ack(node).exists(), within, f"start node {node}")


def restart_all_nodes(
    cluster_state_dir: Path, within: float = 120.0, while_down: Callable[[], None] | None = None
) -> None:
    """Restart every node at once (see `agent.restart_all_nodes`): the control plane keeps
    running; every pod process dies and the agent boots again with the same command line."""
    if _real_nodes():
        from e2e.localcluster.kubelet.nodes import RealNodes

        return RealNodes.current().restart_all(within, while_down)
    from e2e.localcluster.node import agent

    agent.restart_all_nodes(Path(cluster_state_dir), within, while_down)
