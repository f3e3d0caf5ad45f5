"""Cluster DNS against a real API server: CoreDNS answers cluster names for pods and the host.

No kubelet here: the test writes a headless Service with a hand-made EndpointSlice (as the
EndpointSlice controller does for pods with hostname/subdomain) and a ClusterIP Service.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import kr8s.asyncio
import pytest

from e2e.localcluster.controlplane import ControlPlane
from e2e.localcluster.node import dns, netns, proc
from e2e.localcluster.node.sandbox_testing import (
    TEST_BRIDGE_IP,
    isolated_sandbox,
    read,
    spec,
    wait_until,
)

pytestmark = pytest.mark.imitation  # the older node agent's parts (ETCDOP_NODE=imitation)


def _resolves_to(name: str, ip: str, tmp_path: Path) -> bool:
    return bool(getent(name, tmp_path).stdout.split()[:1] == [ip])

NS = "sbx-dns"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[netns.Settings]:
    with isolated_sandbox() as settings:
        yield settings


@pytest.fixture(scope="module")
def cluster_dns(
    sandbox: netns.Settings, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dns.ClusterDNS]:
    server = dns.ClusterDNS(control_plane.kubeconfig, tmp_path_factory.mktemp("dns"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def post(
    api: kr8s.asyncio.Api,
    version: str,
    url: str,
    body: dict[str, Any],
    namespace: str | None = None,
) -> dict[str, Any]:
    async with api.call_api("POST", version=version, namespace=namespace, url=url, json=body) as r:
        out: dict[str, Any] = r.json()
        return out


@pytest.fixture(scope="module")
async def records(kube_api: kr8s.asyncio.Api) -> AsyncIterator[dict[str, str]]:
    """etcd-0.etcd.<NS> -> 10.214.0.77 (headless, by EndpointSlice hostname) and web.<NS>."""
    await post(kube_api, "v1", "namespaces", {"metadata": {"name": NS}})
    try:
        await post(
            kube_api,
            "v1",
            "services",
            {
                "metadata": {"name": "etcd"},
                "spec": {"clusterIP": "None", "ports": [{"name": "client", "port": 2379}]},
            },
            NS,
        )
        await post(
            kube_api,
            "discovery.k8s.io/v1",
            "endpointslices",
            {
                "metadata": {
                    "name": "etcd-manual",
                    "labels": {
                        "kubernetes.io/service-name": "etcd",
                        "endpointslice.kubernetes.io/managed-by": "sandbox-test",
                    },
                },
                "addressType": "IPv4",
                "ports": [{"name": "client", "port": 2379, "protocol": "TCP"}],
                "endpoints": [
                    {
                        "addresses": ["10.214.0.77"],
                        "hostname": "etcd-0",
                        "conditions": {"ready": True},
                    }
                ],
            },
            NS,
        )
        web = await post(
            kube_api,
            "v1",
            "services",
            {
                "metadata": {"name": "web"},
                "spec": {"ports": [{"port": 80}]},
            },
            NS,
        )
        yield {
            f"etcd-0.etcd.{NS}.svc.cluster.local": "10.214.0.77",
            f"web.{NS}.svc.cluster.local": web["spec"]["clusterIP"],
        }
    finally:
        async with kube_api.call_api(
            "DELETE", version="v1", url=f"namespaces/{NS}", raise_for_status=False
        ):
            pass


def getent(name: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    return dns.run_on_host_with_cluster_dns(["getent", "ahostsv4", name], state_dir, timeout=20)


async def test_host_resolves_cluster_names_and_nothing_else(
    cluster_dns: dns.ClusterDNS, records: dict[str, str], tmp_path: Path
) -> None:
    for name, ip in records.items():
        await wait_until(
            functools.partial(_resolves_to, name, ip, tmp_path),
            30,
            f"{name} -> {ip} through cluster DNS",
        )
    resolv = dns.host_resolv_conf(tmp_path).read_text()
    assert f"nameserver {TEST_BRIDGE_IP}\n" in resolv and resolv.count("nameserver") == 1
    # Outside names are refused (no forwarding), unknown cluster names do not exist.
    assert getent("example.com", tmp_path).returncode != 0
    assert getent(f"nope.etcd.{NS}.svc.cluster.local", tmp_path).returncode != 0
    # The host's own resolv.conf is untouched by the wrapper.
    assert TEST_BRIDGE_IP not in read("/etc/resolv.conf")


async def test_pod_resolves_short_and_full_names(
    cluster_dns: dns.ClusterDNS, records: dict[str, str], tmp_path: Path
) -> None:
    full = f"etcd-0.etcd.{NS}.svc.cluster.local"
    await wait_until(lambda: getent(full, tmp_path).returncode == 0, 30, f"{full} to resolve")
    pod = netns.create_pod_network("dns-client", "client")
    script = "import socket,sys\nfor n in sys.argv[1:]: print(n, socket.gethostbyname(n))\n"
    running = await proc.start_container(
        spec(
            pod,
            ["python3", "-c", script, "etcd-0.etcd", full, "web"],
            tmp_path,
            "resolver",
            namespace=NS,
        )
    )
    assert await running.wait() == 0, (tmp_path / "resolver.log").read_text()
    lines = (tmp_path / "resolver.log").read_text().splitlines()
    assert lines == [
        f"etcd-0.etcd {records[full]}",
        f"{full} {records[full]}",
        f"web {records[f'web.{NS}.svc.cluster.local']}",
    ]
    netns.delete_pod_network("dns-client")


def test_corefile_serves_only_cluster_zones() -> None:
    text = dns.corefile(Path("/k/kubeconfig"), "10.213.0.1", 53, 8181)
    assert text.startswith("cluster.local:53 in-addr.arpa:53 {")
    assert "bind 10.213.0.1" in text and "kubeconfig /k/kubeconfig" in text
    assert "forward" not in text and "ready 127.0.0.1:8181" in text
