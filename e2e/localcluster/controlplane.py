"""A real Kubernetes control plane run as local processes: etcd, kube-apiserver (RBAC on),
kube-controller-manager and kube-scheduler, envtest-style but with the controllers running."""

from __future__ import annotations

import json
import ssl
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from e2e.localcluster import config
from e2e.localcluster.binaries import K8S_VERSION, bin_path
from e2e.localcluster.pki import CertificateAuthority, Pair, service_account_keys
from e2e.localcluster.procs import GaveUp, Procs, free_port, wait_for

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int


def write_kubeconfig(path: Path, server: str, ca: Path, pair: Pair, user: str) -> None:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate": str(pair.cert), "client-key": str(pair.key)},
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)


class ControlPlane:
    """Start, find and stop one local control plane whose files all live in STATE_DIR."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.pki_dir = self.state_dir / "pki"
        self.procs = Procs(self.state_dir)
        self.kubeconfig = self.state_dir / "admin.kubeconfig"
        self.ca_file = self.pki_dir / "ca.crt"
        self._state_file = self.state_dir / "controlplane.json"
        self.ports = self._load_ports()

    def _load_ports(self) -> Ports | None:
        try:
            return Ports(**json.loads(self._state_file.read_text()))
        except FileNotFoundError:
            return None

    @property
    def server(self) -> str:
        if self.ports is None:
            raise RuntimeError(f"no control plane in {self.state_dir}: start it first")
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def running(self) -> bool:
        return self.ports is not None and all(self.procs.alive(c) for c in COMPONENTS)

    # -- start ---------------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> None:
        if self.running():
            return
        self.stop()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.ports = Ports(free_port(), free_port(), free_port(), free_port(), free_port())
        self._state_file.write_text(json.dumps(asdict(self.ports)))
        ca = CertificateAuthority(self.pki_dir)
        sa = service_account_keys(self.pki_dir)
        serving = ca.issue(
            "apiserver", "kube-apiserver", server=True,
            ips=("127.0.0.1", config.BRIDGE_IP, "10.96.0.1"),
            dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 f"kubernetes.default.svc.{config.CLUSTER_DOMAIN}"),
        )
        admin = ca.issue("admin", "admin", org="system:masters", client=True)
        # The API server's client certificate towards kubelets (logs, exec, port-forward).
        kubelet_client = ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                  org="system:masters", client=True)
        kcm = ca.issue("controller-manager", "system:kube-controller-manager", client=True)
        sched = ca.issue("scheduler", "system:kube-scheduler", client=True)
        write_kubeconfig(self.kubeconfig, self.server, ca.cert_path, admin, "admin")
        kcm_kc = self.state_dir / "controller-manager.kubeconfig"
        sched_kc = self.state_dir / "scheduler.kubeconfig"
        write_kubeconfig(kcm_kc, self.server, ca.cert_path, kcm, "system:kube-controller-manager")
        write_kubeconfig(sched_kc, self.server, ca.cert_path, sched, "system:kube-scheduler")

        try:
            self._start_etcd(timeout)
            self._start_apiserver(serving, sa, ca.cert_path, kubelet_client, timeout)
            self._start_controllers(kcm_kc, sched_kc, sa, ca.cert_path, timeout)
        except BaseException:
            self.stop()
            raise

    def _start_etcd(self, timeout: float) -> None:
        assert self.ports is not None
        client = f"http://127.0.0.1:{self.ports.etcd_client}"
        peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
        self.procs.start("etcd", [
            str(bin_path("etcd")), "--name=cp", f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=cp={peer}", "--unsafe-no-fsync", "--log-level=warn",
        ])
        self._wait_healthy("etcd", f"{client}/health", timeout, tls=False)

    def _start_apiserver(
        self, serving: Pair, sa: Pair, ca: Path, kubelet_client: Pair, timeout: float
    ) -> None:
        assert self.ports is not None
        etcd = f"http://127.0.0.1:{self.ports.etcd_client}"
        self.procs.start("kube-apiserver", [
            str(bin_path("kube-apiserver")),
            f"--etcd-servers={etcd}",
            "--bind-address=0.0.0.0",  # pods reach it over the bridge; nothing routes off the host
            f"--advertise-address={config.BRIDGE_IP}",
            f"--secure-port={self.ports.apiserver}",
            f"--cert-dir={self.pki_dir}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca}",
            # Node: what real kubelets may read and write, as on any cluster.
            "--authorization-mode=Node,RBAC",
            # Node names do not resolve here: reach kubelets by their InternalIP.
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            f"--service-account-issuer=https://kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
            f"--service-account-key-file={sa.cert}",
            f"--service-account-signing-key-file={sa.key}",
            f"--service-cluster-ip-range={config.SERVICE_CIDR}",
            "--allow-privileged=true",
            "--profiling=false",
            # The `kubernetes` Service's endpoints (the advertise address): pods on the real
            # node reach the API server by its ClusterIP, as in any cluster (kube-proxy).
            "--endpoint-reconciler-type=lease",
            "--v=1",
        ])
        self._wait_healthy("kube-apiserver", f"{self.server}/readyz", timeout)

    def _start_controllers(
        self, kcm_kc: Path, sched_kc: Path, sa: Pair, ca: Path, timeout: float
    ) -> None:
        assert self.ports is not None
        self.procs.start("kube-controller-manager", [
            str(bin_path("kube-controller-manager")),
            f"--kubeconfig={kcm_kc}",
            f"--authentication-kubeconfig={kcm_kc}", f"--authorization-kubeconfig={kcm_kc}",
            "--leader-elect=false",
            f"--service-account-private-key-file={sa.key}",
            f"--root-ca-file={ca}",
            "--use-service-account-credentials=true",
            "--controllers=*",
            # A silent Node is NotReady/Unknown after 20 s (default 50 s), checked every 2 s: node
            # loss tests wait less. The kubelets renew their Leases every 10 s (the default).
            "--node-monitor-grace-period=20s",
            "--node-monitor-period=2s",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports.controller_manager}",
            f"--cert-dir={self.state_dir / 'kcm-certs'}",
            "--v=1",
        ])
        self.procs.start("kube-scheduler", [
            str(bin_path("kube-scheduler")),
            f"--kubeconfig={sched_kc}",
            f"--authentication-kubeconfig={sched_kc}", f"--authorization-kubeconfig={sched_kc}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1", f"--secure-port={self.ports.scheduler}",
            f"--cert-dir={self.state_dir / 'scheduler-certs'}",
            "--v=1",
        ])
        self._wait_healthy(
            "kube-controller-manager",
            f"https://127.0.0.1:{self.ports.controller_manager}/healthz", timeout, verify=False,
        )
        self._wait_healthy(
            "kube-scheduler", f"https://127.0.0.1:{self.ports.scheduler}/healthz", timeout,
            verify=False,
        )

    def _wait_healthy(
        self, name: str, url: str, timeout: float, tls: bool = True, verify: bool = True
    ) -> None:
        ctx: ssl.SSLContext | None = None
        if tls:
            ctx = ssl.create_default_context(cafile=str(self.ca_file)) if verify else (
                ssl._create_unverified_context()
            )
            if verify:
                ctx.load_cert_chain(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")

        def ok() -> bool:
            if not self.procs.alive(name):
                raise GaveUp(f"{name} exited early; the end of its log:\n{self.procs.tail(name)}")
            with urllib.request.urlopen(url, context=ctx, timeout=3) as r:
                return bool(r.status == 200)

        try:
            wait_for(ok, timeout, f"{name} to answer {url}")
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n--- the end of {name}'s log:\n{self.procs.tail(name)}") from e

    # -- stop ----------------------------------------------------------------------------------

    def stop(self) -> None:
        for name in reversed(COMPONENTS):
            self.procs.stop(name)

    def version(self) -> str:
        return K8S_VERSION
