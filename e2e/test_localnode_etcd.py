"""A 3-member etcd 3.6 cluster written as plain Pods plus a headless Service (no operator) forms
on the local node, is healthy by DNS name from the host, and survives one member being cut off;
a member whose data is wiped crash-loops with etcd's fatal error in its termination message.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import kr8s.asyncio
import pytest

from e2e.localcluster.binaries import bin_path
from e2e.localcluster.node import dns, faults
from e2e.localcluster.node.fixtures import LocalNode
from e2e.localcluster.node.kubeapi import Kube
from e2e.localcluster.node.testing import (
    condition,
    container_status,
    create,
    delete_namespace,
    eventually,
    new_namespace,
    pod,
    wait_pod,
    wait_ready,
)

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.imitation]

ETCD_VERSION = "v3.6.16"
IMAGE = f"gcr.io/etcd-development/etcd:{ETCD_VERSION}"
MEMBERS = ("etcd-0", "etcd-1", "etcd-2")
STATE_ANNOTATION = "etcdop.io/initial-cluster-state"


@dataclass
class EtcdPods:
    ns: str
    kube: Kube
    node: LocalNode

    def fqdn(self, member: str) -> str:
        return f"{member}.etcd.{self.ns}.svc.cluster.local"

    def client_url(self, member: str) -> str:
        return f"http://{self.fqdn(member)}:2379"

    async def etcdctl(self, *args: str, endpoint: str = "etcd-0") -> tuple[int, str]:
        argv = [str(bin_path("etcdctl", ETCD_VERSION)), f"--endpoints={self.client_url(endpoint)}",
                "--dial-timeout=2s", "--command-timeout=3s", *args]
        out = await asyncio.to_thread(dns.run_on_host_with_cluster_dns, argv,
                                      self.node.state_dir, timeout=30)
        return out.returncode, out.stdout + out.stderr

    async def health(self) -> dict[str, bool]:
        """endpoint health --cluster, from the host: {client URL: healthy}."""
        _, out = await self.etcdctl("endpoint", "health", "--cluster", "-w", "json")
        start = out.find("[")
        if start < 0:
            return {}
        entries = json.loads(out[start:out.rindex("]") + 1])
        return {e["endpoint"]: bool(e["health"]) for e in entries}


def member_pod(ns: str, member: str) -> dict[str, Any]:
    peers = ",".join(f"{m}=http://{m}.etcd.{ns}.svc.cluster.local:2380" for m in MEMBERS)
    fqdn = f"{member}.etcd.{ns}.svc.cluster.local"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": member, "namespace": ns, "labels": {"app": "etcd"},
                     "annotations": {STATE_ANNOTATION: "new"}},
        "spec": {
            "hostname": member, "subdomain": "etcd",
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "etcd", "image": IMAGE,
                "command": ["/usr/local/bin/etcd"],
                "args": [
                    f"--name={member}", "--data-dir=/var/lib/etcd",
                    "--listen-peer-urls=http://0.0.0.0:2380",
                    "--listen-client-urls=http://0.0.0.0:2379",
                    f"--advertise-client-urls=http://{fqdn}:2379",
                    f"--initial-advertise-peer-urls=http://{fqdn}:2380",
                    f"--initial-cluster={peers}", f"--initial-cluster-token={ns}",
                    "--initial-cluster-state=$(STATE)", "--unsafe-no-fsync",
                ],
                # read at each start: the way an operator turns a member into a joining one
                "env": [{"name": "STATE", "valueFrom": {"fieldRef": {
                    "fieldPath": f"metadata.annotations['{STATE_ANNOTATION}']"}}}],
                "ports": [{"name": "client", "containerPort": 2379},
                          {"name": "peer", "containerPort": 2380}],
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "client"},
                                   "periodSeconds": 2, "failureThreshold": 2},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/etcd"}],
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }


@pytest.fixture(scope="module")
async def etcd_pods(kube_api: kr8s.asyncio.Api, local_node: LocalNode) -> AsyncIterator[EtcdPods]:
    kube = Kube(kube_api)
    ns = await new_namespace(kube, "etcd")
    await create(kube, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "etcd", "namespace": ns},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                 "selector": {"app": "etcd"},
                 "ports": [{"name": "client", "port": 2379}, {"name": "peer", "port": 2380}]},
    })
    for m in MEMBERS:
        await create(kube, member_pod(ns, m))
    try:
        yield EtcdPods(ns, kube, local_node)
    finally:
        await delete_namespace(kube, ns)


async def test_etcd_cluster_of_plain_pods_is_healthy_by_dns_name(etcd_pods: EtcdPods) -> None:
    for m in MEMBERS:
        await wait_ready(etcd_pods.kube, etcd_pods.ns, m, 120)
    want = {etcd_pods.client_url(m): True for m in MEMBERS}

    async def all_healthy() -> dict[str, bool] | None:
        got = await etcd_pods.health()
        return got if got == want else None

    assert await eventually(all_healthy, 60, "3 healthy members by DNS name") == want
    code, out = await etcd_pods.etcdctl("member", "list", "-w", "json")
    assert code == 0, out
    members = json.loads(out)["members"]
    assert sorted(m["name"] for m in members) == list(MEMBERS)


async def test_cut_off_member_is_unhealthy_then_recovers_after_heal(etcd_pods: EtcdPods) -> None:
    for m in MEMBERS:
        await wait_ready(etcd_pods.kube, etcd_pods.ns, m, 120)
    victim = await pod(etcd_pods.kube, etcd_pods.ns, "etcd-1")
    assert victim is not None
    uid = victim["metadata"]["uid"]
    url = etcd_pods.client_url("etcd-1")

    faults.cut_pod_network(uid)
    try:
        async def victim_unhealthy() -> bool:
            got = await etcd_pods.health()
            return got.get(url) is False and got.get(etcd_pods.client_url("etcd-0")) is True

        await eventually(victim_unhealthy, 60, "etcd-1 unhealthy while cut off")
    finally:
        faults.heal_pod_network(uid)

    want = {etcd_pods.client_url(m): True for m in MEMBERS}

    async def recovered() -> bool:
        return await etcd_pods.health() == want

    await eventually(recovered, 60, "all 3 members healthy after heal")
    await wait_ready(etcd_pods.kube, etcd_pods.ns, "etcd-1", 60)


async def test_members_keep_their_keys_across_a_restart_of_every_node(
        etcd_pods: EtcdPods) -> None:
    for m in MEMBERS:
        await wait_ready(etcd_pods.kube, etcd_pods.ns, m, 120)
    code, out = await etcd_pods.etcdctl("put", "before-reboot", "kept")
    assert code == 0, out
    await asyncio.to_thread(etcd_pods.node.restart_all_nodes)

    def back(p: dict[str, Any]) -> bool:
        restarted = container_status(p, "etcd")["restartCount"] == 1
        return restarted and condition(p, "Ready") == "True"

    for m in MEMBERS:
        await wait_pod(etcd_pods.kube, etcd_pods.ns, m, back, 120, "restarted once and Ready")
    want = {etcd_pods.client_url(m): True for m in MEMBERS}

    async def all_healthy() -> bool:
        return await etcd_pods.health() == want

    await eventually(all_healthy, 60, "3 healthy members after the reboot")
    for m in MEMBERS:
        code, out = await etcd_pods.etcdctl("get", "before-reboot", "--print-value-only",
                                            endpoint=m)
        assert (code, out.strip()) == (0, "kept")


async def test_wiped_member_crash_loops_with_its_fatal_error_in_last_state(
        etcd_pods: EtcdPods) -> None:
    """What the operator reads as evidence of data loss (FallbackToLogsOnError). Destructive:
    keep it last in this module."""
    for m in MEMBERS:
        await wait_ready(etcd_pods.kube, etcd_pods.ns, m, 120)
    for i in range(20):
        code, out = await etcd_pods.etcdctl("put", f"k{i}", "v")
        assert code == 0, out
    # A follower: the leader still holds its old match index and sends it as the commit index
    # (a new leader would probe it from scratch and the wiped member would simply catch up).
    code, out = await etcd_pods.etcdctl("endpoint", "status", "--cluster", "-w", "json")
    assert code == 0, out
    statuses = json.loads(out[out.find("["):out.rindex("]") + 1])
    follower = next(e["Endpoint"] for e in statuses
                    if e["Status"]["header"]["member_id"] != e["Status"]["leader"])
    name = next(m for m in MEMBERS if etcd_pods.client_url(m) == follower)
    victim = await pod(etcd_pods.kube, etcd_pods.ns, name)
    assert victim is not None
    uid = victim["metadata"]["uid"]
    # Restarted as "new" on an empty dir it would stop at "member ... has already been
    # bootstrapped"; as a joining member it gets the leader's commit index and panics.
    await etcd_pods.kube.merge_patch(
        f"/api/v1/namespaces/{etcd_pods.ns}/pods/{name}",
        {"metadata": {"annotations": {STATE_ANNOTATION: "existing"}}})
    faults.wipe_volume(uid, "/var/lib/etcd")
    faults.kill_container(uid, "etcd")

    def fatal_in_last_state(p: dict[str, Any]) -> bool:
        cs = container_status(p, "etcd")
        last = cs["lastState"].get("terminated") or {}
        return "tocommit(" in (last.get("message") or "")

    p = await wait_pod(etcd_pods.kube, etcd_pods.ns, name, fatal_in_last_state, 120,
                       "lastState.terminated.message with etcd's tocommit panic")
    cs = container_status(p, "etcd")
    last = cs["lastState"]["terminated"]
    assert last["exitCode"] != 0 and len(last["message"].encode()) <= 2048, last
    assert "is out of range [lastIndex(" in last["message"], (cs["restartCount"], last)
