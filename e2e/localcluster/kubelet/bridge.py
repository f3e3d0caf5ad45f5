"""The pod bridge `etcdop0`: the host's address on it is where pods reach the API server and
cluster DNS, so it exists before the nodes start; the CNI bridge plugin then plugs every pod's
veth into it. Nothing masquerades pod traffic to other addresses: while kube-proxy needs
ip_forward (nodes.py) a pod's packet to another network could leave, but no reply finds it."""

from __future__ import annotations

import ipaddress
import subprocess

from e2e.localcluster import config


class NetworkError(RuntimeError):
    """An `ip` command failed; the message carries the command and its stderr."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetworkError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def exists(name: str = config.BRIDGE_NAME) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def ensure_bridge() -> None:
    """Create the bridge with the host's pod-side address, once; later calls only check it."""
    name = config.BRIDGE_NAME
    if not exists(name):
        _ip("link", "add", name, "type", "bridge")
    prefix = ipaddress.ip_network(config.POD_CIDR).prefixlen
    addr = f"{config.BRIDGE_IP}/{prefix}"
    if addr not in _ip("-o", "addr", "show", "dev", name).stdout:
        _ip("addr", "add", addr, "dev", name)
    _ip("link", "set", name, "up")


def remove_bridge() -> None:
    """Delete the bridge; the pods' veths went with their sandboxes (containerd keeps their
    network namespaces under its own state, not in /run/netns)."""
    if exists():
        _ip("link", "del", config.BRIDGE_NAME, check=False)
