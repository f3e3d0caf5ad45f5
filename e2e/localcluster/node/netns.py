"""Pod networks: one network namespace per pod, a veth into one host bridge, IPs kept on disk.

Everything stays on this machine: the bridge carries only pod traffic and the host's bridge address
(where the API server and cluster DNS listen); there is no NAT and nothing is forwarded off the host
(the pods' default route points at the bridge address, and we never enable ip_forward).

The sandbox is machine-wide (one bridge, one set of netns), so its state lives at a fixed place
under /run/etcdop/<prefix>: an agent restarted with another --state-dir, or a test process calling a
fault function, finds the same pods and the same IPs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from e2e.localcluster import config

NETNS_DIR = Path("/run/netns")
FIRST_HOST_OFFSET = 10  # pod IPs start at <network>.0.10; .1 is the bridge


@dataclass(frozen=True)
class Settings:
    """Which bridge, address range and name prefix this sandbox owns (tests use their own)."""

    prefix: str = "etcdop"  # netns "<prefix>-<8 hex>", host veth "<prefix>v<8 hex>" (<= 15 chars)
    bridge: str = config.BRIDGE_NAME
    bridge_ip: str = config.BRIDGE_IP
    cidr: str = config.POD_CIDR
    state_dir: Path | None = None  # default /run/etcdop/<prefix>

    @property
    def root(self) -> Path:
        return self.state_dir or Path("/run/etcdop") / self.prefix

    @property
    def prefix_len(self) -> int:
        return ipaddress.ip_network(self.cidr).prefixlen


_settings = Settings()
_lock = threading.RLock()


def configure(**changes: Any) -> Settings:
    """Change the sandbox settings of this process (fields of Settings); returns the new ones."""
    global _settings
    prefix = changes.get("prefix", _settings.prefix)
    if not isinstance(prefix, str) or not 1 <= len(prefix) <= 6 or not prefix.isalnum():
        raise ValueError(f"sandbox prefix {prefix!r}: use 1-6 letters/digits (short veth names)")
    _settings = replace(_settings, **changes)
    return _settings


def settings() -> Settings:
    return _settings


@dataclass(frozen=True)
class PodNetwork:
    netns: str  # name under /run/netns, e.g. "etcdop-<8 hex of pod uid>"
    ip: str  # the pod IP on the bridge, never loopback
    host_veth: str


class NetworkError(RuntimeError):
    """An `ip` command failed; the message carries the command and its stderr."""


def short_id(uid: str) -> str:
    """Eight hex digits naming a pod's netns and veth: the uid's own when it is hex, else a hash."""
    compact = uid.replace("-", "").lower()
    if len(compact) >= 8 and all(c in "0123456789abcdef" for c in compact[:8]):
        return compact[:8]
    return hashlib.sha256(uid.encode()).hexdigest()[:8]


def netns_name(uid: str) -> str:
    return f"{_settings.prefix}-{short_id(uid)}"


def host_veth_name(uid: str) -> str:
    return f"{_settings.prefix}v{short_id(uid)}"


def pod_dir(netns: str) -> Path:
    """Per-pod files of the sandbox (hosts, resolv.conf, container records)."""
    return _settings.root / "pods" / netns


# ---------------------------------------------------------------------------------------- ip(8)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetworkError(f"`ip {' '.join(args)}` failed: {proc.stderr.strip()}")
    return proc


def _link_exists(name: str, netns: str | None = None) -> bool:
    args = (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    return _ip(*args, check=False).returncode == 0


def _netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def list_netns() -> list[str]:
    """Names of this sandbox's network namespaces."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(_settings.prefix + "-"))


def _links() -> list[str]:
    out = _ip("-o", "link", "show").stdout
    names = []
    for line in out.splitlines():
        # "7: etcdopv1a2b3c4d@if2: <...>"
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        names.append(name)
    return names


def ensure_bridge() -> None:
    """Create the bridge with the host's pod-side address, once; later calls only check it."""
    s = _settings
    with _lock:
        if not _link_exists(s.bridge):
            _ip("link", "add", s.bridge, "type", "bridge")
        addr = f"{s.bridge_ip}/{s.prefix_len}"
        if addr not in _ip("-o", "addr", "show", "dev", s.bridge).stdout:
            _ip("addr", "add", addr, "dev", s.bridge)
        _ip("link", "set", s.bridge, "up")


# ---------------------------------------------------------------------------------------- IPAM


@contextlib.contextmanager
def _ipam() -> Iterator[dict[str, dict[str, str]]]:
    """The uid -> {ip, netns, hostname} table, locked across processes while the block runs."""
    root = _settings.root
    root.mkdir(parents=True, exist_ok=True)
    path = root / "ipam.json"
    with _lock, open(root / "ipam.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            table: dict[str, dict[str, str]] = json.loads(path.read_text()) if path.exists() else {}
            before = json.dumps(table, sort_keys=True)
            yield table
            if json.dumps(table, sort_keys=True) != before:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
                tmp.replace(path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _allocate(table: dict[str, dict[str, str]]) -> str:
    net = ipaddress.ip_network(_settings.cidr)
    used = {e["ip"] for e in table.values()} | {_settings.bridge_ip}
    for offset in range(FIRST_HOST_OFFSET, net.num_addresses - 1):
        ip = str(net.network_address + offset)
        if ip not in used:
            return ip
    raise NetworkError(f"pod CIDR {_settings.cidr} is full ({len(table)} pods): delete some pods")


def allocations() -> dict[str, str]:
    """uid -> pod IP of every pod network this sandbox knows."""
    with _ipam() as table:
        return {uid: e["ip"] for uid, e in table.items()}


def pod_ip_of_netns(netns: str) -> str | None:
    with _ipam() as table:
        for entry in table.values():
            if entry["netns"] == netns:
                return entry["ip"]
    return None


# ---------------------------------------------------------------------------------------- pods


def _configured(net: PodNetwork) -> bool:
    if not (_netns_exists(net.netns) and _link_exists(net.host_veth)):
        return False
    inside = _ip("-n", net.netns, "-o", "addr", "show", "dev", "eth0", check=False).stdout
    return f" {net.ip}/" in inside


def create_pod_network(uid: str, hostname: str) -> PodNetwork:
    """Give pod UID a netns with eth0 on the bridge; the same IP every time for the same uid."""
    ensure_bridge()
    s = _settings
    with _ipam() as table:
        entry = table.get(uid)
        if entry is None:
            entry = {"ip": _allocate(table), "netns": netns_name(uid), "hostname": hostname}
            table[uid] = entry
        ip = entry["ip"]
    net = PodNetwork(netns=netns_name(uid), ip=ip, host_veth=host_veth_name(uid))
    with _lock:
        if _configured(net):
            return net
        # Half-built (an earlier attempt failed, or the host rebooted): rebuild from scratch.
        if _netns_exists(net.netns):
            _ip("netns", "del", net.netns, check=False)
        if _link_exists(net.host_veth):
            _ip("link", "del", net.host_veth, check=False)
        try:
            _ip("netns", "add", net.netns)
            _ip(
                "link",
                "add",
                net.host_veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                net.netns,
            )
            _ip("link", "set", net.host_veth, "master", s.bridge, "up")
            n = ["-n", net.netns]
            _ip(*n, "link", "set", "lo", "up")
            _ip(*n, "addr", "add", f"{ip}/{s.prefix_len}", "dev", "eth0")
            _ip(*n, "link", "set", "eth0", "up")
            # Only the bridge address as gateway; the host does not forward, so nothing leaves.
            _ip(*n, "route", "add", "default", "via", s.bridge_ip, "dev", "eth0")
        except Exception:
            _ip("netns", "del", net.netns, check=False)
            _ip("link", "del", net.host_veth, check=False)
            raise
    return net


def delete_pod_network(uid: str, keep_ip: bool = False) -> None:
    """Kill what still runs in the pod's netns, remove it and its veth, and free its IP (unless
    KEEP_IP: a pod of a stopped node still owns its address, as on a real node's pod CIDR)."""
    netns, veth = netns_name(uid), host_veth_name(uid)
    with _lock:
        kill_netns_processes(netns)
        if _netns_exists(netns):
            _ip("netns", "del", netns, check=False)
        if _link_exists(veth):
            _ip("link", "del", veth, check=False)
        shutil.rmtree(pod_dir(netns), ignore_errors=True)
    if keep_ip:
        return
    with _ipam() as table:
        table.pop(uid, None)


def cut_pod_network(uid: str) -> None:
    """Fault: take the pod's bridge port down, so no packet reaches it or leaves it."""
    _ip("link", "set", host_veth_name(uid), "down")


def heal_pod_network(uid: str) -> None:
    _ip("link", "set", host_veth_name(uid), "up")


def is_cut(uid: str) -> bool:
    out = _ip("-o", "link", "show", "dev", host_veth_name(uid)).stdout
    return "UP" not in out.split("<", 1)[1].split(">", 1)[0].split(",")


# ---------------------------------------------------------------------------------------- processes


def _ns_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in_netns(netns: str) -> list[int]:
    """Every process whose network namespace is NETNS (found through /proc, across agents)."""
    target = _ns_id(str(NETNS_DIR / netns))
    if target is None:
        return []
    me = os.getpid()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and _ns_id(f"/proc/{entry}/ns/net") == target:
            pids.append(int(entry))
    return pids


def kill_netns_processes(netns: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in NETNS until none is left (so `ip netns del` frees it)."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in pids_in_netns(netns) if not _is_zombie(p)]
        if not alive:
            return
        if time.monotonic() > deadline:
            raise NetworkError(f"processes {alive} in netns {netns} survive SIGKILL")
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


# ---------------------------------------------------------------------------------------- teardown


def teardown_all() -> None:
    """Remove every netns, veth and the bridge of this sandbox, its processes and its state."""
    s = _settings
    with _lock:
        for netns in list_netns():
            kill_netns_processes(netns)
            _ip("netns", "del", netns, check=False)
        for link in _links():
            if link.startswith(s.prefix + "v") and len(link) == len(s.prefix) + 9:
                _ip("link", "del", link, check=False)
        if _link_exists(s.bridge):
            _ip("link", "del", s.bridge, check=False)
        shutil.rmtree(s.root, ignore_errors=True)
        with contextlib.suppress(OSError):
            Path("/run/etcdop").rmdir()  # only when no other sandbox keeps state there
        _drop_netns_mount_if_unused()


def reset_pods() -> None:
    """At agent start: no pod process survives a node restart, so kill whatever an agent that
    died without cleaning up left in the pod namespaces, and remove them. IP allocations and
    fault switches stay (the agent frees the IPs of pods that are gone once it has listed them)."""
    s = _settings
    with _lock:
        for netns in list_netns():
            kill_netns_processes(netns)
            _ip("netns", "del", netns, check=False)
        for link in _links():
            if link.startswith(s.prefix + "v") and len(link) == len(s.prefix) + 9:
                _ip("link", "del", link, check=False)
        shutil.rmtree(s.root / "pods", ignore_errors=True)


def release_ips(keep: set[str]) -> None:
    """Free the IPs of every pod uid not in KEEP."""
    with _ipam() as table:
        for uid in [u for u in table if u not in keep]:
            table.pop(uid)


def mount_points() -> list[str]:
    """Mount points of this process's mount namespace (os.path.ismount misses bind mounts)."""
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4].replace("\\040", " ") for line in f]


def _drop_netns_mount_if_unused() -> None:
    """`ip netns add` mounts /run/netns; leave no mount behind once no namespace is left in it."""
    try:
        if os.listdir(NETNS_DIR):
            return
    except FileNotFoundError:
        return
    for _ in range(4):  # it can be stacked when two `ip netns add` raced
        if str(NETNS_DIR) not in mount_points():
            break
        subprocess.run(["umount", str(NETNS_DIR)], capture_output=True, timeout=30)
    with contextlib.suppress(OSError):
        NETNS_DIR.rmdir()
