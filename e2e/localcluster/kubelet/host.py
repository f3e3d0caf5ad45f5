"""What the real nodes change on the host, recorded so that `down` undoes exactly that: kernel
settings the kubelet insists on, cgroup roots, node addresses on the pod bridge, the host paths
the kubelet writes whatever its --root-dir says.

The record lives in one JSON file under the cluster's state; each change is written there before
it is made, so a crash between the two still gets undone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from e2e.localcluster import config

# The kubelet's setupKernelTunables (pkg/kubelet/cm/container_manager_linux.go, v1.36): with
# protectKernelDefaults it refuses to start unless these hold, without it writes them itself
# and never restores them. We set them (and restore them on `down`) so the kubelet never writes.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1000000,
    "kernel/keys/root_maxbytes": 25000000,
}
# kube-proxy: a Service IP answered by a pod is routed through the host.
SERVICE_SYSCTLS = {"net/ipv4/ip_forward": 1}
# ... and only that: pods are IPv4 only, and nothing they send leaves the machine.
FORWARD_GUARD = ("FORWARD", "-s", config.POD_CIDR, "!", "-d", config.POD_CIDR, "-m", "comment",
                 "--comment", "etcdop: pod traffic stays on this host", "-j", "DROP")
CGROUP_V1 = Path("/sys/fs/cgroup")
# The device manager's registration socket is fixed in the kubelet (pluginapi.KubeletSocket).
DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")


class HostChanges:
    """The undo log of one cluster's real nodes (STATE/host-changes.json)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "host-changes.json"

    def _load(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.path.read_text())
            return data
        except FileNotFoundError:
            return {"sysctls": {}, "cgroups": [], "addresses": [], "paths": []}

    def _save(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(self.path)

    # -- apply ------------------------------------------------------------------------------------

    def set_kernel_settings(self, settings: dict[str, int] = KUBELET_SYSCTLS) -> None:
        data = self._load()
        for key, want in settings.items():
            f = Path("/proc/sys") / key
            old = int(f.read_text().split()[0])
            if old == want:
                continue
            data["sysctls"].setdefault(key, old)  # the first value seen is the host's own
            self._save(data)
            f.write_text(f"{want}\n")

    def make_cgroup_root(self, name: str) -> None:
        """/NAME in every v1 hierarchy: the kubelet's cgroupRoot must exist beforehand."""
        data = self._load()
        if name not in data["cgroups"]:
            data["cgroups"].append(name)
            self._save(data)
        for h in v1_hierarchies():
            (h / name).mkdir(exist_ok=True)

    def add_address(self, ip: str) -> None:
        """IP as a secondary address on the pod bridge: one InternalIP per node."""
        data = self._load()
        if ip not in data["addresses"]:
            data["addresses"].append(ip)
            self._save(data)
        cidr = f"{ip}/{config.POD_CIDR.split('/')[1]}"
        shown = _ip("-o", "addr", "show", "dev", config.BRIDGE_NAME).stdout
        if f" {cidr} " not in shown:
            _ip("addr", "add", cidr, "dev", config.BRIDGE_NAME, check=True)

    def note_path(self, path: Path) -> None:
        """A host path we create (only when absent now), removed on undo when empty."""
        data = self._load()
        if str(path) in data["paths"] or path.exists():
            return
        data["paths"].append(str(path))
        self._save(data)

    def note_kube_proxy(self) -> None:
        """Before our kube-proxy starts: undo will remove every KUBE-* chain (and each rule
        jumping to one) that is there then. Another kube-proxy's chains would be ours to
        remove too, so a host that has any is refused. (`kube-proxy --cleanup` is not used: it
        removes any kube-proxy's chains, leaves KUBE-FIREWALL, and loads the ipvs modules.)"""
        data = self._load()
        if data.get("kube_proxy"):
            return  # recorded by an earlier start of this cluster: its chains are ours
        found = kube_chains()
        if found:
            raise RuntimeError(
                f"the host already has kube-proxy chains {found[:6]}: another cluster's "
                "kube-proxy runs here, or an earlier one was not stopped; run "
                "`python -m e2e.localcluster down` for that cluster (or remove them)"
            )
        data["kube_proxy"] = True
        self._save(data)

    def guard_forwarding(self) -> None:
        """Before IP forwarding goes on: a FORWARD rule drops what pods send to addresses outside
        the pod network, so forwarding serves Service IPs (DNAT'd to pod IPs before FORWARD)
        and nothing a pod sends leaves the machine. Undone by `undo`."""
        data = self._load()
        if not data.get("forward_guard"):
            data["forward_guard"] = True
            self._save(data)
        if subprocess.run(["iptables", "-C", *FORWARD_GUARD], capture_output=True).returncode:
            subprocess.run(["iptables", "-I", FORWARD_GUARD[0], "1", *FORWARD_GUARD[1:]],
                           check=True, capture_output=True, text=True)

    # -- undo -------------------------------------------------------------------------------------

    def undo(self) -> list[str]:
        """Put back everything recorded; returns what could not be undone (to report)."""
        data = self._load()
        problems: list[str] = []
        if data.get("kube_proxy"):
            problems += remove_kube_chains()
        for key, old in data["sysctls"].items():
            try:
                (Path("/proc/sys") / key).write_text(f"{old}\n")
            except OSError as e:
                problems.append(f"sysctl {key}={old}: {e}")
        if data.get("forward_guard"):  # after ip_forward is back off
            while subprocess.run(["iptables", "-C", *FORWARD_GUARD],
                                 capture_output=True).returncode == 0:
                r = subprocess.run(["iptables", "-D", *FORWARD_GUARD], capture_output=True,
                                   text=True)
                if r.returncode:
                    problems.append(f"iptables -D {' '.join(FORWARD_GUARD)}: {r.stderr.strip()}")
                    break
        for name in data["cgroups"]:
            for h in v1_hierarchies(with_unified=True):
                problems += remove_cgroup_tree(h / name)
        for ip in data["addresses"]:
            cidr = f"{ip}/{config.POD_CIDR.split('/')[1]}"
            _ip("addr", "del", cidr, "dev", config.BRIDGE_NAME)
        for p in sorted(data["paths"], key=len, reverse=True):
            path = Path(p)
            if path.is_dir():
                for child in path.iterdir():
                    if child.is_socket() or child.name.startswith("kubelet_internal_checkpoint"):
                        child.unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    path.rmdir()
        self.path.unlink(missing_ok=True)
        return problems


IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")


def _rules(tool: str, table: str) -> list[str]:
    if shutil.which(tool) is None:
        return []
    return subprocess.run([tool, "-t", table, "-S"], capture_output=True, text=True).stdout.split(
        "\n"
    )


def kube_chains() -> list[str]:
    """The KUBE-* chains on the host now, as `<tool>:<table>:<chain>`."""
    return [
        f"{tool}:{table}:{line.split()[1]}"
        for tool in IPTABLES
        for table in TABLES
        for line in _rules(tool, table)
        if line.startswith("-N KUBE-")
    ]


def remove_kube_chains() -> list[str]:
    """Every KUBE-* chain gone: first the rules of other chains that jump to one, then their
    own rules (which jump to each other), then the chains. Returns what failed."""
    problems: list[str] = []
    for tool in IPTABLES:
        for table in TABLES:
            lines = _rules(tool, table)
            ours = [line.split()[1] for line in lines if line.startswith("-N KUBE-")]
            for line in lines:
                args = shlex.split(line) if line.startswith("-A ") and " -j KUBE-" in line else []
                target = args[args.index("-j") + 1] if "-j" in args else ""
                if args and args[1] not in ours and target in ours:
                    r = subprocess.run([tool, "-t", table, "-D", *args[1:]], capture_output=True,
                                       text=True)
                    if r.returncode != 0:
                        problems.append(f"{tool} -t {table} -D {line}: {r.stderr.strip()}")
            for step in ("-F", "-X"):
                for chain in ours:
                    r = subprocess.run([tool, "-t", table, step, chain], capture_output=True,
                                       text=True)
                    if r.returncode != 0:
                        problems.append(f"{tool} -t {table} {step} {chain}: {r.stderr.strip()}")
    return problems


def v1_hierarchies(with_unified: bool = False) -> list[Path]:
    """The mounted cgroup v1 controllers; WITH_UNIFIED adds the hybrid cgroup2 mount, where
    runc mirrors the pods' cgroups too (so `down` must remove them there as well)."""
    kinds = ("cgroup", "cgroup2") if with_unified else ("cgroup",)
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        if post.split()[0] in kinds:
            out.append(Path(pre.split()[4]))
    return sorted(set(out))


def remove_cgroup_tree(root: Path) -> list[str]:
    """rmdir ROOT bottom-up (cgroups are removed with rmdir once empty of tasks)."""
    if not root.is_dir():
        return []
    problems = []
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except OSError as e:
            problems.append(f"cgroup {dirpath}: {e.strerror}")
    return problems


def _ip(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)
