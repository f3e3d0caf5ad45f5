"""Real nodes: the upstream kubelet with containerd 2 and runc, several on one machine (as kind
runs one container per node, here each node has its own containerd, state, root-dir, cgroup
root and InternalIP on the pod bridge).

Layout, for node local-<i> of a cluster whose files live in STATE:
  STATE/kubelet-nodes/local-<i>/   containerd root, kubelet root-dir, pod logs, CNI config, IPAM
  /run/etcdop/kn/local-<i>/        containerd state and sockets (short paths: sun_path is 108 B)
  /etcdop-local-<i> in every cgroup v1 hierarchy: the kubelet's cgroupRoot
  10.213.0.<2+i> on the bridge:    the kubelet's address (InternalIP), port 10250
  10.213.<1+i>.0/24 of 10.213.0.0/16: its pods' addresses (host-local IPAM, CNI bridge plugin)
CoreDNS serves cluster.local on the bridge address (dns.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.localcluster import config
from e2e.localcluster.binaries import K8S_VERSION, VERSIONS, bin_path, cache_dir
from e2e.localcluster.controlplane import write_kubeconfig
from e2e.localcluster.kubelet import bridge, images
from e2e.localcluster.kubelet.dns import ClusterDNS
from e2e.localcluster.kubelet.host import DEVICE_PLUGINS, SERVICE_SYSCTLS, HostChanges
from e2e.localcluster.pki import CertificateAuthority
from e2e.localcluster.procs import GaveUp, Procs, wait_for

RUN_ROOT = Path("/run/etcdop/kn")
FREEZER = Path("/sys/fs/cgroup/freezer")  # cgroup v1 only here (shared/notes/containers.md)
REPO = Path(__file__).resolve().parents[3]
PROVISIONER = "kn-provisioner"
LOCK_HOLDER = "kn-machine-lock"
KUBE_PROXY = "kn-kube-proxy"
KUBELET_PORT = 10250
# Tools the kubelet and containerd may exec. Their PATH holds only these (and our binaries): with
# iptables on its PATH the kubelet adds KUBE-FIREWALL rules to the host's firewall.
HOST_TOOLS = ("mount", "umount", "losetup", "du", "find", "nice", "ionice", "nsenter", "runc",
              "blkid", "stat", "tar")


def containerd_dir() -> Path:
    return cache_dir() / "bin" / f"containerd-{VERSIONS['CONTAINERD_VERSION']}"


def cni_dir() -> Path:
    return cache_dir() / "bin" / f"cni-plugins-{VERSIONS['CNI_PLUGINS_VERSION']}"


def crictl_path() -> Path:
    return cache_dir() / "bin" / f"crictl-{VERSIONS['CRICTL_VERSION']}" / "crictl"


def kubelet_path() -> Path:
    return cache_dir() / "bin" / f"kubernetes-{K8S_VERSION}" / "kubelet"


@dataclass(frozen=True)
class Node:
    """One node's names, addresses and paths."""

    name: str
    index: int
    state: Path  # STATE/kubelet-nodes

    @property
    def ip(self) -> str:
        return f"10.213.0.{2 + self.index}"

    @property
    def dir(self) -> Path:
        return self.state / self.name

    @property
    def run(self) -> Path:
        return RUN_ROOT / self.name

    @property
    def socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    @property
    def root_dir(self) -> Path:
        return self.dir / "kubelet"

    @property
    def cgroup_root(self) -> str:
        return f"etcdop-{self.name}"

    @property
    def containerd_proc(self) -> str:
        return f"containerd-{self.name}"

    @property
    def kubelet_proc(self) -> str:
        return f"kubelet-{self.name}"


def node_names(count: int) -> list[str]:
    return [f"local-{i}" for i in range(count)]


def host_tools_dir(state: Path) -> Path:
    """A directory of links to HOST_TOOLS only, for the daemons' PATH."""
    d = state / "host-tools"
    d.mkdir(parents=True, exist_ok=True)
    search = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    for tool in HOST_TOOLS:
        link = d / tool
        if link.is_symlink():
            continue
        for s in search:
            if os.access(Path(s) / tool, os.X_OK):
                link.symlink_to(Path(s) / tool)
                break
    return d


def kube_proxy_path() -> Path:
    return kubelet_path().parent / "kube-proxy"


# kube-proxy (unlike the kubelet) must write the host's firewall: iptables on its PATH.
KUBE_PROXY_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def kube_proxy_config(kubeconfig: Path) -> dict[str, Any]:
    """iptables mode, all health and metrics on loopback, and no kernel setting it would change
    without undoing: conntrack sizes and timeouts left alone, no localhost NodePorts (those
    set route_localnet). masqueradeAll: a pod answering a Service IP replies through the host,
    not straight over the bridge, so the reply is translated back."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_names(1)[0],
        "clusterCIDR": config.POD_CIDR,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "bindAddressHardFail": False,
        "nodePortAddresses": [config.POD_CIDR],
        "iptables": {"masqueradeAll": True, "localhostNodePorts": False, "syncPeriod": "30s",
                     "minSyncPeriod": "0s"},
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s", "tcpBeLiberal": False,
                      "udpTimeout": "0s", "udpStreamTimeout": "0s"},
    }


def daemon_path(state: Path) -> str:
    dirs = [containerd_dir(), cni_dir(), kubelet_path().parent, host_tools_dir(state)]
    return ":".join(str(d) for d in dirs)


def containerd_config(node: Node) -> str:
    d, run = node.dir, node.run
    return f"""version = 3
root = "{d / 'containerd'}"
state = "{run / 'containerd'}"
temp = "{d / 'tmp'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{node.socket}"

[ttrpc]
  address = "{run / 'containerd.sock.ttrpc'}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"

[plugins."io.containerd.nri.v1.nri"]
  disable = true

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{images.PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  # Lowering oom_score_adj below containerd's own needs CAP_SYS_RESOURCE, which this machine's
  # bounding set lacks: without this every sandbox fails in runc ("can't get final child's PID").
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  disable_apparmor = true
  cdi_spec_dirs = []
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{host_tools_dir(node.state) / 'runc'}"
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{cni_dir()}"]
    conf_dir = "{d / 'cni' / 'net.d'}"
    max_conf_num = 1
"""


def cni_config(node: Node) -> dict[str, Any]:
    """The bridge plugin on our bridge, not as gateway and without masquerade: it then leaves
    ip_forward and the firewall alone; the default route comes from IPAM."""
    third = 1 + node.index
    return {
        "cniVersion": "1.0.0",
        "name": "etcdop",
        "plugins": [{
            "type": "bridge",
            "bridge": config.BRIDGE_NAME,
            "isGateway": False,
            "ipMasq": False,
            "hairpinMode": False,
            "ipam": {
                "type": "host-local",
                "dataDir": str(node.dir / "cni" / "ipam"),
                "ranges": [[{
                    "subnet": config.POD_CIDR,
                    "rangeStart": f"10.213.{third}.2",
                    "rangeEnd": f"10.213.{third}.254",
                    "gateway": config.BRIDGE_IP,
                }]],
                "routes": [{"dst": "0.0.0.0/0", "gw": config.BRIDGE_IP}],
            },
        }],
    }


def kubelet_config(node: Node, ca: Path, serving_cert: Path, serving_key: Path,
                   resolv: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this machine has cgroup v1 only (shared/notes/containers.md)
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{node.cgroup_root}",
        "failSwapOn": False,
        "address": node.ip,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": node.ip,
        "healthzPort": 10248,
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [config.BRIDGE_IP],
        "clusterDomain": config.CLUSTER_DOMAIN,
        "resolvConf": str(resolv),
        "containerRuntimeEndpoint": node.endpoint,
        "podLogsDir": str(node.dir / "pod-logs"),
        # We set the kernel settings the kubelet wants ourselves (host.py) and undo them on
        # `down`; with this the kubelet only checks them instead of writing them for good.
        "protectKernelDefaults": True,
        # Our images cannot be pulled again: never collect them; evict only when truly short.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "nodefs.inodesFree": "1%", "imagefs.available": "1%"},
        "serializeImagePulls": False,
        "staticPodPath": "",
        "nodeStatusReportFrequency": "10s",
        "syncFrequency": "10s",
        "shutdownGracePeriod": "0s",
    }


class RealNodes:
    """Start, find and stop the real nodes of one cluster (its control plane's state dir)."""

    def __init__(self, cluster_state: Path, kubeconfig: Path, pki_dir: Path, count: int = 3):
        self.cluster_state = cluster_state
        self.state = cluster_state / "kubelet-nodes"
        self.kubeconfig = kubeconfig
        self.pki_dir = pki_dir
        self.procs = Procs(cluster_state)
        self.nodes = [Node(n, i, self.state) for i, n in enumerate(node_names(count))]
        self.host = HostChanges(self.state)
        self.timings: dict[str, float] = {}

    @classmethod
    def current(cls) -> RealNodes:
        """The real nodes running on this machine (there is at most one set: the machine lock)."""
        try:
            rec = json.loads((RUN_ROOT / "cluster.json").read_text())
        except FileNotFoundError:
            raise RuntimeError(
                f"no real nodes run here ({RUN_ROOT / 'cluster.json'} is absent)"
            ) from None
        return cls(Path(rec["state"]), Path(rec["kubeconfig"]), Path(rec["pki"]), rec["count"])

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} (have {[n.name for n in self.nodes]})")

    def dns(self) -> ClusterDNS:
        return ClusterDNS(self.kubeconfig, self.state)

    def running(self) -> bool:
        return all(self.procs.alive(n.kubelet_proc) for n in self.nodes)

    # -- start ------------------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> dict[str, float]:
        """Everything, then wait until every Node is Ready; returns seconds per phase."""
        t0 = time.monotonic()
        self.state.mkdir(parents=True, exist_ok=True)
        RUN_ROOT.mkdir(parents=True, exist_ok=True)
        (RUN_ROOT / "cluster.json").write_text(json.dumps({
            "state": str(self.cluster_state), "kubeconfig": str(self.kubeconfig),
            "pki": str(self.pki_dir), "count": len(self.nodes),
        }))
        bridge.ensure_bridge()
        self.host.set_kernel_settings()
        self.host.note_path(DEVICE_PLUGINS.parent)
        self.host.note_path(DEVICE_PLUGINS)
        for n in self.nodes:
            self.host.add_address(n.ip)
            self.host.make_cgroup_root(n.cgroup_root)
        tarballs = images.build_all(cache_dir() / "images")
        self.timings["images_written"] = time.monotonic() - t0
        for n in self.nodes:
            self._start_containerd(n)
        for n in self.nodes:
            self._wait_containerd(n, 60)
        self.timings["containerd_ready"] = time.monotonic() - t0
        for n in self.nodes:
            self._import(n, tarballs)
        self.timings["images_imported"] = time.monotonic() - t0
        self.dns().start()
        self.timings["dns_ready"] = time.monotonic() - t0
        for n in self.nodes:
            self._start_kubelet(n)
        self._start_kube_proxy()
        if not self.procs.alive(PROVISIONER):
            self.procs.start(PROVISIONER, [
                sys.executable, "-m", "e2e.localcluster.kubelet", "provisioner",
                "--kubeconfig", str(self.kubeconfig), "--root", str(self.state / "pv"),
            ], cwd=REPO)
        self.wait_ready(timeout)
        self.timings["nodes_ready"] = time.monotonic() - t0
        wait_for(self._storage_class, 60, "StorageClass local")
        (self.state / "timings.json").write_text(json.dumps(self.timings, indent=1))
        return self.timings

    def _start_containerd(self, n: Node) -> None:
        if self.procs.alive(n.containerd_proc):
            return
        for d in (n.dir / "cni" / "net.d", n.dir / "tmp", n.run, n.dir / "pod-logs"):
            d.mkdir(parents=True, exist_ok=True)
        (n.dir / "containerd.toml").write_text(containerd_config(n))
        (n.dir / "cni" / "net.d" / "10-etcdop.conflist").write_text(
            json.dumps(cni_config(n), indent=1))
        self.procs.start(n.containerd_proc, [
            str(containerd_dir() / "containerd"), "--config", str(n.dir / "containerd.toml"),
            "--log-level", "warn",
        ], env={"PATH": daemon_path(self.state)})

    def crictl(self, n: Node, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(crictl_path()), "--runtime-endpoint", n.endpoint, "--image-endpoint", n.endpoint,
             "--timeout", "30s", *args],
            capture_output=True, text=True, timeout=timeout,
        )

    def ctr(self, n: Node, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(containerd_dir() / "ctr"), "--address", str(n.socket), "--namespace", "k8s.io",
             *args],
            capture_output=True, text=True, timeout=timeout,
        )

    def _wait_containerd(self, n: Node, timeout: float) -> None:
        def up() -> bool:
            if not self.procs.alive(n.containerd_proc):
                raise GaveUp(f"{n.containerd_proc} exited:\n{self.procs.tail(n.containerd_proc)}")
            info = self.crictl(n, "info", timeout=10)
            return info.returncode == 0 and '"RuntimeReady"' in info.stdout

        wait_for(up, timeout, f"{n.containerd_proc} to serve CRI")

    def _import_tarball(self, n: Node, tarball: Path, timeout: float = 120) -> None:
        r = self.ctr(n, "images", "import", str(tarball), timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"ctr images import {tarball} on {n.name}: {r.stderr.strip()}")

    def _pin(self, n: Node, names: list[str]) -> None:
        """Every name in NODE's images, pinned: the CRI plugin never garbage-collects pinned
        images, and ours cannot be pulled again."""
        listed = self.ctr(n, "images", "list", "-q").stdout.split()
        for name in names:
            if name not in listed:
                raise RuntimeError(f"{name} not in {n.name}'s images after import: {listed}")
            self.ctr(n, "images", "label", name, "io.cri-containerd.pinned=pinned")

    def _import(self, n: Node, tarballs: list[Path]) -> None:
        for t in tarballs:
            self._import_tarball(n, t)
        self._pin(n, [i.name for i in images.default_images()])
        if images.PRODUCT_TARBALL.is_file():
            self._import_product(n)
        elif n is self.nodes[0]:
            print(f"real node: no {images.PRODUCT_TARBALL}; member pods' agent sidecar "
                  f"({images.PRODUCT_IMAGE}) cannot start: run `make image` first",
                  file=sys.stderr)

    def _import_product(self, n: Node) -> None:
        """The product tarball into NODE under PRODUCT_IMAGE, pinned; the node remembers which
        tarball it has (`refresh_product_image`)."""
        stamp = _file_stamp(images.PRODUCT_TARBALL)
        self._import_tarball(n, images.PRODUCT_TARBALL, timeout=300)
        saved = "docker.io/library/etcdop:dev"  # `make image`'s tag, as ctr names it
        self.ctr(n, "images", "tag", "--force", saved, images.PRODUCT_IMAGE)
        self._pin(n, [images.PRODUCT_IMAGE])
        (n.dir / "product-image").write_text(stamp)

    def refresh_product_image(self) -> bool:
        """Running nodes import the product tarball again when `make image` has written a new
        one since they did (they import it at start): without this, a reused cluster ran the
        old code in new pods. True when some node imported it."""
        if not images.PRODUCT_TARBALL.is_file():
            return False
        stamp = _file_stamp(images.PRODUCT_TARBALL)
        stale = [n for n in self.nodes
                 if not (n.dir / "product-image").is_file()
                 or (n.dir / "product-image").read_text() != stamp]
        for n in stale:
            self._import_product(n)
        return bool(stale)

    def add_image(self, image: images.Image) -> None:
        """IMAGE written and imported into every node's containerd, pinned (a test's own image,
        such as an etcd that cannot start)."""
        tarball = images.build_all(self.state / "images", [image])[0]
        for n in self.nodes:
            self._import_tarball(n, tarball)
            self._pin(n, [image.name])

    def _start_kubelet(self, n: Node) -> None:
        if self.procs.alive(n.kubelet_proc):
            return
        ca = CertificateAuthority(self.pki_dir)
        client = ca.issue(f"kubelet-{n.name}", f"system:node:{n.name}", org="system:nodes",
                          client=True)
        serving = ca.issue(f"kubelet-{n.name}-serving", n.name, server=True, ips=(n.ip,),
                           dns=(n.name,))
        server = yaml.safe_load(self.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        kc = n.dir / "kubelet.kubeconfig"
        write_kubeconfig(kc, server, ca.cert_path, client, f"system:node:{n.name}")
        resolv = self.state / "resolv.conf"  # for dnsPolicy Default: the cluster DNS only
        resolv.write_text(f"nameserver {config.BRIDGE_IP}\n")
        cfg = n.dir / "kubelet.yaml"
        cfg.write_text(yaml.safe_dump(kubelet_config(n, ca.cert_path, serving.cert, serving.key,
                                                     resolv)))
        n.root_dir.mkdir(parents=True, exist_ok=True)
        self.procs.start(n.kubelet_proc, [
            str(kubelet_path()), f"--config={cfg}", f"--kubeconfig={kc}",
            f"--root-dir={n.root_dir}", f"--cert-dir={n.root_dir / 'pki'}",
            f"--hostname-override={n.name}", f"--node-ip={n.ip}",
            "--node-labels=node.etcdop.io/local=true", "--v=1",
        ], env={"PATH": daemon_path(self.state)})

    def _start_kube_proxy(self) -> None:
        """One kube-proxy for the host (every node shares its network): Service IPs route, so a
        pod reaches the API server and an EtcdCluster's client Service by their ClusterIPs. Its
        iptables chains are removed again on `down` (host.py); IP forwarding is on meanwhile (a
        Service IP answered by a pod is routed through the host)."""
        if self.procs.alive(KUBE_PROXY):
            return
        self.host.guard_forwarding()
        self.host.set_kernel_settings(SERVICE_SYSCTLS)
        ca = CertificateAuthority(self.pki_dir)
        cert = ca.issue("kube-proxy", "system:kube-proxy", client=True)
        server = yaml.safe_load(self.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        kc = self.state / "kube-proxy.kubeconfig"
        write_kubeconfig(kc, server, ca.cert_path, cert, "system:kube-proxy")
        (self.state / "kube-proxy.yaml").write_text(yaml.safe_dump(kube_proxy_config(kc)))
        self.host.note_kube_proxy()
        self.procs.start(KUBE_PROXY, [str(kube_proxy_path()),
                                      f"--config={self.state / 'kube-proxy.yaml'}", "--v=1"],
                         env={"PATH": KUBE_PROXY_PATH})

    def _stop_kube_proxy(self) -> None:
        self.procs.stop(KUBE_PROXY, grace=10)

    def hold_lock(self, fd: int) -> None:
        """Keep the machine lock (fd FD, flocked) in a process of its own until `stop`: `up`
        returns while the nodes run."""
        self.procs.start(LOCK_HOLDER, [sys.executable, "-c", "import signal; signal.pause()"],
                         pass_fds=(fd,))

    def _storage_class(self) -> bool:
        if not self.procs.alive(PROVISIONER):
            raise GaveUp(f"the provisioner exited:\n{self.procs.tail(PROVISIONER)}")
        return subprocess.run(
            [str(bin_path("kubectl")), f"--kubeconfig={self.kubeconfig}", "get",
             "storageclass", "local"], capture_output=True, timeout=20,
        ).returncode == 0

    def node_status(self) -> dict[str, bool]:
        out = subprocess.run(
            [str(bin_path("kubectl")), f"--kubeconfig={self.kubeconfig}", "get", "nodes",
             "-o", "json"], capture_output=True, text=True, timeout=20, check=True,
        ).stdout
        ready = {}
        for item in json.loads(out)["items"]:
            conds = {c["type"]: c["status"] for c in item["status"].get("conditions") or []}
            ready[item["metadata"]["name"]] = conds.get("Ready") == "True"
        return ready

    def wait_ready(self, timeout: float, names: list[str] | None = None) -> None:
        want = names or [n.name for n in self.nodes]

        def ready() -> bool:
            for n in self.nodes:
                if n.name in want and not self.procs.alive(n.kubelet_proc):
                    raise GaveUp(f"{n.kubelet_proc} exited:\n{self.procs.tail(n.kubelet_proc, 40)}")
            status = self.node_status()
            return all(status.get(w) for w in want)

        wait_for(ready, timeout, f"Nodes {want} to be Ready", interval=0.5)

    # -- stop -------------------------------------------------------------------------------------

    def stop(self) -> list[str]:
        """Stop pods, kubelets, containerds, CoreDNS; undo the host changes. Returns problems
        left (printed by `down`)."""
        self.procs.stop(PROVISIONER)
        self._stop_kube_proxy()
        for n in self.nodes:
            self.procs.stop(n.kubelet_proc, grace=20)
        for n in self.nodes:
            if self.procs.alive(n.containerd_proc):
                self.crictl(n, "rmp", "--all", "--force", timeout=120)
        problems: list[str] = []
        for n in self.nodes:
            try:
                self.stop_runtime(n)
            except RuntimeError as e:  # undo the rest all the same, and say what is left
                problems.append(str(e))
        self.dns().stop()
        problems += self.host.undo()
        for n in self.nodes:
            with contextlib.suppress(OSError):
                for p in sorted(n.run.rglob("*"), key=lambda p: -len(str(p))):
                    p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
                n.run.rmdir()
        (RUN_ROOT / "cluster.json").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            RUN_ROOT.rmdir()
        bridge.remove_bridge()
        self.procs.stop(LOCK_HOLDER)
        return problems

    def stop_runtime(self, n: Node) -> None:
        """Kill NODE's containers (every task in its cgroup root), its shims and its containerd,
        then unmount what they left: the machine is off."""
        self.procs.stop(n.kubelet_proc, grace=20)
        if survivors := kill_cgroup_tasks(n.cgroup_root):
            raise RuntimeError(f"node {n.name}: tasks {survivors[:10]} of its containers "
                               f"survive SIGKILL (cgroup {n.cgroup_root})")
        for pid in shim_pids(n):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.procs.stop(n.containerd_proc, grace=20)
        unmount_under((n.dir, n.run))

    def start_runtime(self, n: Node, timeout: float = 120.0) -> None:
        """Power NODE on again: containerd, then the kubelet, then wait for Ready."""
        self._start_containerd(n)
        self._wait_containerd(n, 60)
        self._start_kubelet(n)
        self.wait_ready(timeout, [n.name])

    def restart_all(self, within: float = 120.0, while_down: Any = None) -> None:
        """Every node off at once (containers killed, daemons gone), WHILE_DOWN, then on."""
        for n in self.nodes:
            self.stop_runtime(n)
        if while_down is not None:
            while_down()
        for n in self.nodes:
            self._start_containerd(n)
        for n in self.nodes:
            self._wait_containerd(n, 60)
            self._start_kubelet(n)
        self.wait_ready(within)

    # -- measuring --------------------------------------------------------------------------------

    def usage(self) -> dict[str, dict[str, float]]:
        """Resident memory (MiB) and CPU seconds used so far of each daemon and of the shims."""
        out: dict[str, dict[str, float]] = {}
        for n in self.nodes:
            for name in (n.containerd_proc, n.kubelet_proc):
                pid = self.procs.pid(name)
                if pid is not None and self.procs.alive(name):
                    out[name] = proc_usage(pid)
            shims = [proc_usage(p) for p in shim_pids(n)]
            out[f"shims-{n.name}"] = {
                "rss_mib": sum(s["rss_mib"] for s in shims),
                "cpu_s": sum(s["cpu_s"] for s in shims),
                "count": float(len(shims)),
            }
        return out


def proc_usage(pid: int) -> dict[str, float]:
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    return {"rss_mib": round(rss, 1), "cpu_s": round(cpu, 2)}


def shim_pids(n: Node) -> list[int]:
    """containerd-shim-runc-v2 processes serving NODE's containerd (by their -address)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(n.socket).encode() in argv:
            pids.append(int(d.name))
    return pids


def cgroup_tasks(cgroup_root: str) -> list[int]:
    root = Path("/sys/fs/cgroup/pids") / cgroup_root
    pids: list[int] = []
    for procs in root.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


def kill_cgroup_tasks(cgroup_root: str, within: float = 20) -> list[int]:
    """SIGKILL every task under CGROUP_ROOT until none is left; returns those that survive
    WITHIN seconds. Frozen cgroups (a paused container) are thawed first: a frozen task acts
    on SIGKILL only once thawed."""
    for state in (FREEZER / cgroup_root).rglob("freezer.state"):
        with contextlib.suppress(OSError):
            state.write_text("THAWED")
    deadline = time.monotonic() + within
    while pids := cgroup_tasks(cgroup_root):
        if time.monotonic() > deadline:
            return pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    return []


def unmount_under(roots: tuple[Path, ...]) -> None:
    """Lazily unmount every mount point below ROOTS, deepest first (overlay rootfs, tmpfs
    volumes, netns bind mounts): the daemons that made them are gone."""
    prefixes = tuple(str(r.resolve()) + "/" for r in roots)
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefixes):
            points.append(point)
    for p in sorted(set(points), key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)


def _file_stamp(path: Path) -> str:
    """Which file PATH is now: a rewrite changes its mtime (and mostly its size)."""
    st = path.stat()
    return f"{st.st_mtime_ns} {st.st_size}"
