"""The real node: upstream kubelets run our images with containerd and runc.

A pod with an emptyDir, a readiness probe and a native sidecar becomes Ready, and a person can
read its logs and exec into it through the kubelet; a 3-member etcd made of plain pods behind a
headless Service forms by DNS names and answers, by DNS, from inside a pod.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from e2e.localcluster.binaries import ETCD_VERSIONS, bin_path
from e2e.localcluster.config import SERVICE_CIDR
from e2e.localcluster.kubeapi import KubeClient
from e2e.localcluster.kubelet import faults
from e2e.localcluster.kubelet.fixtures import LocalNode
from e2e.localcluster.kubelet.host import FORWARD_GUARD
from e2e.localcluster.kubelet.images import PAUSE_IMAGE, etcd_image
from e2e.localcluster.kubelet.testing import (
    condition,
    container_status,
    create,
    pid_alive,
    wait_pod,
    wait_ready,
)
from e2e.operator import delete_namespace, new_namespace
from tests.waiting import eventually

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.node,
]

ETCD = etcd_image(ETCD_VERSIONS[0]).name


@pytest.fixture
async def ns(kube: KubeClient, local_node: LocalNode) -> AsyncIterator[str]:
    name = await new_namespace(kube, "kubelet")
    yield name
    await delete_namespace(kube, name)


async def kubectl(local_node: LocalNode, *args: str) -> subprocess.CompletedProcess[str]:
    kubeconfig = local_node.cluster_state_dir / "admin.kubeconfig"
    return await asyncio.to_thread(
        subprocess.run, [str(bin_path("kubectl")), f"--kubeconfig={kubeconfig}", *args],
        capture_output=True, text=True, timeout=60,
    )


def single_etcd_pod(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "solo", "namespace": ns},
        "spec": {
            "initContainers": [
                # A native sidecar: started before the main container, running beside it.
                {"name": "sidecar", "image": PAUSE_IMAGE, "restartPolicy": "Always"},
            ],
            "containers": [{
                "name": "etcd",
                "image": ETCD,
                "command": ["etcd", "--name=kubelet-solo", "--data-dir=/data/etcd",
                            "--listen-client-urls=http://0.0.0.0:2379",
                            "--advertise-client-urls=http://127.0.0.1:2379"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                "readinessProbe": {"httpGet": {"path": "/health", "port": 2379},
                                   "periodSeconds": 1},
            }],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }


async def test_pod_with_emptydir_probe_and_sidecar_is_ready_and_serves_logs_and_exec(
    kube: KubeClient, ns: str, local_node: LocalNode
) -> None:
    await create(kube, single_etcd_pod(ns))
    p = await wait_ready(kube, ns, "solo", within=120)

    sidecar = container_status(p, "sidecar", init=True)
    assert sidecar["started"] is True and sidecar["ready"] is True, sidecar
    main = container_status(p, "etcd")
    assert main["ready"] is True and main["restartCount"] == 0, main
    # The sidecar was running before the main container started (native sidecar order).
    assert sidecar["state"]["running"]["startedAt"] <= main["state"]["running"]["startedAt"]
    ip = p["status"]["podIP"]
    assert ip.startswith("10.213.") and not ip.startswith("10.213.0."), ip
    assert p["status"]["hostIP"] in {f"10.213.0.{2 + i}" for i in range(3)}, p["status"]

    logs = await kubectl(local_node, "logs", "-n", ns, "solo", "-c", "etcd")
    assert logs.returncode == 0, logs.stderr
    assert "kubelet-solo" in logs.stdout, logs.stdout[-2000:]

    put = await kubectl(local_node, "exec", "-n", ns, "solo", "-c", "etcd", "--",
                        "etcdctl", "put", "greeting", "hello")
    assert put.returncode == 0 and put.stdout.strip() == "OK", (put.stdout, put.stderr)
    got = await kubectl(local_node, "exec", "-n", ns, "solo", "-c", "etcd", "--",
                        "etcdctl", "get", "greeting", "--print-value-only")
    assert got.stdout.strip() == "hello", (got.stdout, got.stderr)

    # etcd's data is in the emptyDir, which is a directory of the kubelet on the host.
    _, info = await asyncio.to_thread(faults.inspect_container, p["metadata"]["uid"], "etcd")
    host = [m["hostPath"] for m in info["status"]["mounts"] if m["containerPath"] == "/data"]
    assert host and "kubernetes.io~empty-dir" in host[0], info["status"]["mounts"]
    assert (Path(host[0]) / "etcd" / "member").is_dir()


MEMBERS = ("e0", "e1", "e2")


def member(ns: str, name: str) -> dict[str, Any]:
    peers = ",".join(f"{m}=http://{m}.etcd.{ns}.svc.cluster.local:2380" for m in MEMBERS)
    fqdn = f"{name}.etcd.{ns}.svc.cluster.local"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "etcd"}},
        "spec": {
            "hostname": name,
            "subdomain": "etcd",
            "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"topologyKey": "kubernetes.io/hostname",
                 "labelSelector": {"matchLabels": {"app": "etcd"}}},
            ]}},
            "containers": [{
                "name": "etcd",
                "image": ETCD,
                "command": [
                    "etcd", f"--name={name}", "--data-dir=/var/lib/etcd/data",
                    "--listen-client-urls=http://0.0.0.0:2379",
                    f"--advertise-client-urls=http://{fqdn}:2379",
                    "--listen-peer-urls=http://0.0.0.0:2380",
                    f"--initial-advertise-peer-urls=http://{fqdn}:2380",
                    f"--initial-cluster={peers}", "--initial-cluster-state=new",
                    "--initial-cluster-token=kubelet-test",
                ],
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/etcd"}],
                "readinessProbe": {"httpGet": {"path": "/health", "port": 2379},
                                   "periodSeconds": 2},
            }],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }


def headless_service(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "etcd", "namespace": ns},
        "spec": {
            "clusterIP": "None",
            # Members resolve each other before they are Ready (they cannot be Ready alone).
            "publishNotReadyAddresses": True,
            "selector": {"app": "etcd"},
            "ports": [{"name": "client", "port": 2379}, {"name": "peer", "port": 2380}],
        },
    }


async def test_three_member_etcd_of_plain_pods_forms_and_answers_by_dns_from_a_pod(
    kube: KubeClient, ns: str, local_node: LocalNode
) -> None:
    await create(kube, headless_service(ns))
    for name in MEMBERS:
        await create(kube, member(ns, name))
    pods = [await wait_ready(kube, ns, name, within=180) for name in MEMBERS]
    assert len({p["spec"]["nodeName"] for p in pods}) == 3, [p["spec"]["nodeName"] for p in pods]

    endpoints = ",".join(f"http://{m}.etcd:2379" for m in MEMBERS)  # search path: <ns>.svc...
    listed = await kubectl(local_node, "exec", "-n", ns, "e0", "--", "etcdctl",
                           f"--endpoints={endpoints}", "member", "list", "-w", "json")
    assert listed.returncode == 0, listed.stderr
    names = sorted(m["name"] for m in json.loads(listed.stdout)["members"])
    assert names == list(MEMBERS)

    put = await kubectl(local_node, "exec", "-n", ns, "e0", "--", "etcdctl",
                        "--endpoints=http://e1.etcd:2379", "put", "k", "v")
    assert put.returncode == 0, put.stderr

    # A separate client pod, resolving every member by its DNS name.
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client", "namespace": ns},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "etcdctl", "image": ETCD,
            "command": ["etcdctl", f"--endpoints={endpoints}", "get", "k", "--consistency=l"],
        }]},
    })
    done = await wait_pod(kube, ns, "client",
                          lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
                          90, "finished")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    out = await kubectl(local_node, "logs", "-n", ns, "client")
    assert out.stdout.split() == ["k", "v"], out.stdout

    # A Service IP routes (kube-proxy): the same read through a ClusterIP Service.
    service = await create(kube, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "etcd-client", "namespace": ns},
        "spec": {"selector": {"app": "etcd"}, "ports": [{"name": "client", "port": 2379}]},
    })
    cluster_ip = service["spec"]["clusterIP"]
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(SERVICE_CIDR), cluster_ip
    await create(kube, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "svc-client", "namespace": ns},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "etcdctl", "image": ETCD,
            "command": ["etcdctl", f"--endpoints=http://{cluster_ip}:2379", "get", "k",
                        "--consistency=l", "--command-timeout=20s"],
        }]},
    })
    done = await wait_pod(kube, ns, "svc-client",
                          lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
                          90, "finished")
    out = await kubectl(local_node, "logs", "-n", ns, "svc-client")
    assert done["status"]["phase"] == "Succeeded", (done["status"], out.stdout, out.stderr)
    assert out.stdout.split() == ["k", "v"], out.stdout
    # Forwarding is on for that, and only that: pods' packets to other networks are dropped.
    guard = await asyncio.to_thread(subprocess.run, ["iptables", "-C", *FORWARD_GUARD],
                                    capture_output=True, text=True)
    assert guard.returncode == 0, f"no FORWARD guard while ip_forward is on: {guard.stderr}"


async def test_fault_hooks_kill_a_container_cut_its_network_and_freeze_it(
    kube: KubeClient, ns: str, local_node: LocalNode
) -> None:
    """kill_container, cut/heal_pod_network and pause_container act on the real runtime: the
    kubelet restarts the killed container, and the readiness probe fails while the network is
    cut or the container frozen."""
    pod = single_etcd_pod(ns)
    pod["spec"]["containers"][0]["readinessProbe"]["failureThreshold"] = 1
    await create(kube, pod)
    p = await wait_ready(kube, ns, "solo", within=120)
    uid = p["metadata"]["uid"]

    await asyncio.to_thread(faults.kill_container, uid, "etcd")
    await wait_pod(kube, ns, "solo",
                   lambda p: container_status(p, "etcd")["restartCount"] == 1
                   and condition(p, "Ready") == "True", 120, "restarted once and Ready")

    await asyncio.to_thread(faults.cut_pod_network, uid)
    # The kubelet probes from the host over the bridge: a cut pod turns unready.
    await wait_pod(kube, ns, "solo", lambda p: condition(p, "Ready") == "False", 60, "unready")
    await asyncio.to_thread(faults.heal_pod_network, uid)
    await wait_pod(kube, ns, "solo", lambda p: condition(p, "Ready") == "True", 60, "Ready again")

    # A frozen member keeps its sockets and answers nothing: its probe times out.
    await asyncio.to_thread(faults.pause_container, uid, "etcd")
    try:
        await wait_pod(kube, ns, "solo", lambda p: condition(p, "Ready") == "False", 60,
                       "unready while frozen")
    finally:
        await asyncio.to_thread(partial(faults.pause_container, paused=False), uid, "etcd")
    healed = await wait_pod(kube, ns, "solo", lambda p: condition(p, "Ready") == "True", 60,
                            "Ready once thawed")
    # A cut network or a frozen process fails probes but restarts nothing (no liveness probe).
    assert container_status(healed, "etcd")["restartCount"] == 1


async def node_ready(kube: KubeClient, name: str) -> str | None:
    node = await kube.get(f"/api/v1/nodes/{name}")
    return condition(node, "Ready") if node is not None else None


async def test_stopped_node_loses_its_pods_and_goes_not_ready_then_boots_them_again(
    kube: KubeClient, ns: str, local_node: LocalNode
) -> None:
    await create(kube, single_etcd_pod(ns))
    p = await wait_ready(kube, ns, "solo", within=120)
    node, uid = p["spec"]["nodeName"], p["metadata"]["uid"]
    before = container_status(p, "etcd")["containerID"]
    _, info = await asyncio.to_thread(faults.inspect_container, uid, "etcd")
    pid = int(info["info"]["pid"])

    await asyncio.to_thread(local_node.stop_node, node)
    assert not pid_alive(pid)
    # kube-controller-manager's grace period is 20 s (controlplane.py).
    await eventually(lambda: _not_ready(kube, node), 90, f"Node {node} NotReady/Unknown")

    await asyncio.to_thread(local_node.start_node, node)
    assert await node_ready(kube, node) == "True"
    again = await wait_pod(
        kube, ns, "solo",
        lambda p: condition(p, "Ready") == "True"
        and container_status(p, "etcd")["containerID"] != before,
        120, "Ready in a new container",
    )
    assert again["spec"]["nodeName"] == node


async def _not_ready(kube: KubeClient, node: str) -> bool:
    return await node_ready(kube, node) in ("False", "Unknown")
