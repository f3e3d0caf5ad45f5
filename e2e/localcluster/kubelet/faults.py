"""Faults on real nodes, through the runtime as an operator on a real cluster would do them:
crictl finds a pod's sandbox and containers by the pod's uid on whichever node's containerd
runs it; the pod's network is cut on the host side of its veth (the pod keeps its address and
routes, its packets go nowhere).

These work from any process on the machine: the containerd sockets live at fixed paths under
/run/etcdop/kn. Faults on whole nodes (power one off, reboot them all) are RealNodes' methods,
also `python -m e2e.localcluster node ...`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from e2e.localcluster.kubelet.nodes import FREEZER, RUN_ROOT, crictl_path


class FaultError(RuntimeError):
    """The fault could not be applied (no such pod, container or mount); the message says which."""


def wipe_directory(path: Path) -> None:
    """Delete everything inside PATH, keeping PATH itself (it is a mount source)."""
    if not path.is_dir():
        raise FaultError(f"cannot wipe {path}: not a directory")
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _crictl(socket: Path, *args: str) -> subprocess.CompletedProcess[str]:
    ep = f"unix://{socket}"
    return subprocess.run(
        [str(crictl_path()), "--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "20s",
         *args], capture_output=True, text=True, timeout=60,
    )


def _sockets() -> list[Path]:
    return sorted(RUN_ROOT.glob("*/containerd.sock"))


def find_sandbox(uid: str) -> tuple[Path, str]:
    """(containerd socket, ready sandbox id) of the pod with UID."""
    for sock in _sockets():
        r = _crictl(sock, "pods", "--label", f"io.kubernetes.pod.uid={uid}", "--state", "ready",
                    "-q")
        ids = r.stdout.split()
        if r.returncode == 0 and ids:
            return sock, ids[0]
    raise FaultError(f"pod uid {uid}: no ready sandbox on any node ({len(_sockets())} nodes)")


def inspect_container(uid: str, container: str) -> tuple[Path, dict[str, Any]]:
    sock, sandbox = find_sandbox(uid)
    r = _crictl(sock, "ps", "--pod", sandbox, "--name", f"^{container}$", "--state", "running",
                "-q")
    ids = r.stdout.split()
    if not ids:
        raise FaultError(f"pod uid {uid}: no running container {container!r}")
    info = json.loads(_crictl(sock, "inspect", ids[0]).stdout)
    return sock, info


def kill_container(uid: str, container: str, sig: int = signal.SIGKILL) -> int:
    """SIG to CONTAINER's main process (its pid 1, seen from the host); returns the host pid."""
    _, info = inspect_container(uid, container)
    pid = int(info["info"]["pid"])
    os.kill(pid, sig)
    return pid


def wipe_volume(uid: str, mount_path: str, container: str | None = None) -> Path:
    """Wipe the host directory mounted at MOUNT_PATH (emptyDir, hostPath) in CONTAINER."""
    if container is None:
        raise FaultError("real nodes: name the container whose mount to wipe")
    _, info = inspect_container(uid, container)
    wanted = os.path.normpath(mount_path)
    for m in info["status"].get("mounts") or []:
        if os.path.normpath(m["containerPath"]) == wanted:
            source = Path(m["hostPath"])
            wipe_directory(source)
            return source
    raise FaultError(f"pod uid {uid}: {container!r} mounts nothing at {mount_path}")


def _freezer_state(uid: str, container: str) -> Path:
    """The freezer cgroup v1 state file of CONTAINER (its cgroupsPath under cgroupfs)."""
    _, info = inspect_container(uid, container)
    path = str(info["info"]["runtimeSpec"]["linux"]["cgroupsPath"])
    state = FREEZER / path.lstrip("/") / "freezer.state"
    if not state.is_file():
        raise FaultError(f"pod uid {uid}: {container!r} has no freezer cgroup at {state.parent}")
    return state


def pause_container(uid: str, container: str, *, paused: bool = True) -> None:
    """Freeze (or with PAUSED false thaw) every process of CONTAINER, as `runc pause` does: a
    hung member that holds its sockets open and answers nothing. Returns once the kernel says
    it is done. Stopping a node thaws what it froze (nodes.kill_cgroup_tasks)."""
    state = _freezer_state(uid, container)
    want = "FROZEN" if paused else "THAWED"
    state.write_text(want)
    deadline = time.monotonic() + 10
    while (now := state.read_text().strip()) != want:
        if time.monotonic() > deadline:
            state.write_text("THAWED")  # not left half-frozen
            raise FaultError(f"pod uid {uid}: {container!r} is {now}, not {want}, after 10 s")
        time.sleep(0.01)


def pod_sandbox(uid: str) -> dict[str, Any]:
    """`crictl inspectp` of the pod's sandbox: its IP, netns path, pid of the pause process."""
    sock, sandbox = find_sandbox(uid)
    info: dict[str, Any] = json.loads(_crictl(sock, "inspectp", sandbox).stdout)
    return info


def netns_path(uid: str) -> str:
    for ns in pod_sandbox(uid)["info"]["runtimeSpec"]["linux"]["namespaces"]:
        if ns["type"] == "network":
            return str(ns["path"])
    raise FaultError(f"pod uid {uid}: its sandbox has no network namespace")


def host_veth(uid: str) -> str:
    """The host end of the pod's eth0 (its peer index, read inside the pod's netns with `ip`:
    /sys/class/net shows the netns sysfs was mounted in, the host's, whatever nsenter says)."""
    path = netns_path(uid)
    r = subprocess.run(["nsenter", f"--net={path}", "ip", "-o", "link", "show", "eth0"],
                       capture_output=True, text=True, check=True)
    found = re.search(r"eth0@if(\d+)", r.stdout)
    if found is None:
        raise FaultError(f"pod uid {uid}: cannot read its eth0's peer from {r.stdout!r}")
    index = found.group(1)
    for dev in Path("/sys/class/net").iterdir():
        try:
            if (dev / "ifindex").read_text().strip() == index:
                return dev.name
        except OSError:
            continue
    raise FaultError(f"pod uid {uid}: no host interface with index {index}")


def cut_pod_network(uid: str) -> None:
    subprocess.run(["ip", "link", "set", host_veth(uid), "down"], check=True)


def heal_pod_network(uid: str) -> None:
    subprocess.run(["ip", "link", "set", host_veth(uid), "up"], check=True)
