"""Cluster DNS: CoreDNS with its kubernetes plugin, served on the bridge address only.

Pods get `nameserver <bridge IP>` in their resolv.conf; host processes that must resolve cluster
names (etcdctl in a test) run in a mount namespace whose /etc/resolv.conf says the same. CoreDNS
serves only the cluster zones: there is no `forward`, so any other name is refused and no query
ever leaves the machine.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from e2e.localcluster import config
from e2e.localcluster.binaries import bin_path
from e2e.localcluster.kubelet.bridge import ensure_bridge
from e2e.localcluster.procs import GaveUp, Procs, free_port, wait_for

PROC_NAME = "coredns"


def corefile(kubeconfig: Path, listen_ip: str, port: int, ready_port: int) -> str:
    """The whole configuration: one server block, authoritative for the cluster zones."""
    d = config.CLUSTER_DOMAIN
    return (
        f"{d}:{port} in-addr.arpa:{port} {{\n"
        f"    bind {listen_ip}\n"
        f"    ready 127.0.0.1:{ready_port}\n"
        "    errors\n"
        f"    kubernetes {d} in-addr.arpa {{\n"
        f"        kubeconfig {kubeconfig}\n"
        "        pods verified\n"
        "        ttl 5\n"
        "    }\n"
        "}\n"
    )


class ClusterDNS:
    """One CoreDNS process, its PID, log and Corefile under STATE_DIR/dns."""

    def __init__(self, kubeconfig: Path, state_dir: Path, *, port: int = 53) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.dir = Path(state_dir) / "dns"
        self.port = port
        self.procs = Procs(self.dir)
        self.corefile_path = self.dir / "Corefile"

    @property
    def listen_ip(self) -> str:
        return config.BRIDGE_IP

    def running(self) -> bool:
        return self.procs.alive(PROC_NAME)

    def start(self, timeout: float = 60.0) -> None:
        """Start CoreDNS (if not running) and wait until its kubernetes plugin has synced."""
        if self.running():
            return
        ensure_bridge()  # CoreDNS binds the bridge address, which must exist first
        ready_port = free_port()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.corefile_path.write_text(
            corefile(self.kubeconfig, self.listen_ip, self.port, ready_port)
        )
        binary = bin_path("coredns")
        self.procs.start(PROC_NAME, [str(binary), "-conf", str(self.corefile_path)], cwd=self.dir)

        def ready() -> bool:
            if not self.running():
                raise GaveUp(f"coredns exited; log:\n{self.procs.tail(PROC_NAME)}")
            with urllib.request.urlopen(f"http://127.0.0.1:{ready_port}/ready", timeout=2) as r:
                return bool(r.status == 200)

        try:
            wait_for(ready, timeout, f"coredns on {self.listen_ip}:{self.port} to be ready")
        except TimeoutError as exc:
            tail = self.procs.tail(PROC_NAME)
            self.stop()
            raise TimeoutError(f"{exc}; coredns log:\n{tail}") from exc

    def stop(self) -> None:
        self.procs.stop(PROC_NAME)


def host_resolv_conf(state_dir: Path, namespace: str = "default") -> Path:
    """A resolv.conf pointing at cluster DNS, for host processes that resolve cluster names."""
    d = config.CLUSTER_DOMAIN
    path = Path(state_dir) / "dns" / "host-resolv.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"search {namespace}.svc.{d} svc.{d} {d}\n"
        f"nameserver {config.BRIDGE_IP}\n"
        "options ndots:5\n"
    )
    return path


# Bind the resolv.conf in a private mount namespace, then exec the command.
_WRAPPER = 'mount --bind "$0" /etc/resolv.conf || exit 125; exec "$@"'


def cluster_dns_argv(argv: Sequence[str], state_dir: Path) -> list[str]:
    """ARGV wrapped so that it sees the cluster DNS resolv.conf (for asyncio subprocesses)."""
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    resolv = host_resolv_conf(state_dir)
    return [
        unshare,
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        _WRAPPER,
        str(resolv),
        *argv,
    ]


def run_on_host_with_cluster_dns(
    argv: Sequence[str],
    state_dir: Path,
    *,
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a host command that resolves cluster names; captures its output as text."""
    return subprocess.run(
        cluster_dns_argv(argv, state_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env is not None else None,
        check=check,
    )
