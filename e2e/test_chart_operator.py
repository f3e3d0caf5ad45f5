"""The operator installed by the chart, running as Pods on the local node with the chart's service
account and nothing more: it creates a 3-member cluster and takes a verified backup (a verb the
chart's role lacks fails here), and `helm upgrade` of the release leaves running clusters alone.

No host operator runs in this module: the chart's Deployment is the only one, and it is
uninstalled (its pods gone) before the module ends.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.localcluster.binaries import bin_path
from e2e.localcluster.controlplane import ControlPlane
from e2e.localcluster.kubeapi import KubeClient
from e2e.localcluster.kubelet.fixtures import LocalNode
from e2e.localcluster.s3 import S3Endpoint
from e2e.operator import (
    GROUP_VERSION,
    create_cluster,
    delete_namespace,
    etcd_client,
    etcd_cluster,
    lease_holder,
    member_pods,
    new_namespace,
    pod_ready,
    product_image,
    wait_cluster_ready,
    wait_namespaces_gone,
)
from tests.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.node]

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "etcdop"
RELEASE = "etcdop"
SELECTOR = f"app.kubernetes.io/name=etcdop,app.kubernetes.io/instance={RELEASE}"
OPERATOR_WITHIN = 120.0
READY_WITHIN = 240.0
BACKUP_WITHIN = 180.0


@dataclass
class Release:
    kube: KubeClient
    kubeconfig: Path
    ns: str
    node: LocalNode
    image: str  # repository:tag of the operator's image

    def helm(self, *args: str) -> str:
        out = subprocess.run(
            [str(bin_path("helm")), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True, text=True, timeout=180,
        )
        assert out.returncode == 0, f"helm {' '.join(args)}: {out.stderr}"
        return out.stdout

    def install(self, *values: str) -> None:
        self.helm("upgrade", "--install", RELEASE, str(CHART), "--namespace", self.ns,
                  "--set", f"image.repository={self.image.rsplit(':', 1)[0]}",
                  "--set", f"image.tag={self.image.rsplit(':', 1)[1]}",
                  *values)

    async def pods(self) -> list[dict[str, Any]]:
        return await self.kube.items(f"/api/v1/namespaces/{self.ns}/pods", SELECTOR)

    async def wait_rolled_out(self) -> list[dict[str, Any]]:
        """Until the Deployment's current pods are all Ready, the old ones gone, and one of them
        holds the Lease; returns those pods."""
        path = f"/apis/apps/v1/namespaces/{self.ns}/deployments/{RELEASE}"
        current: list[dict[str, Any]] = []

        async def rolled_out() -> bool:
            dep = await self.kube.get(path)
            assert dep is not None, "no Deployment"
            want, st = dep["spec"]["replicas"], dep.get("status", {})
            assert st.get("observedGeneration") == dep["metadata"]["generation"], st
            pods = await self.pods()
            assert len(pods) == want == st.get("updatedReplicas"), f"{len(pods)} pods, {st}"
            assert all(pod_ready(p) for p in pods), "not every operator pod is Ready"
            holder = await lease_holder(self.kube, self.ns) or ""
            names = [p["metadata"]["name"] for p in pods]
            assert any(holder.startswith(n + "-") for n in names), f"lease held by {holder!r}"
            current[:] = pods
            return True

        await eventually(rolled_out, OPERATOR_WITHIN, "the operator Deployment rolled out",
                         every=1.0)
        return current

    def logs(self, pods: list[dict[str, Any]]) -> str:
        return "\n".join(self.node.pod_logs(self.ns, p["metadata"]["name"], "operator")
                         for p in pods)


@pytest.fixture(scope="module")
async def release(
    control_plane: ControlPlane, local_node: LocalNode, kube_api: Any,
) -> AsyncIterator[Release]:
    """The chart installed in a namespace of its own, its operator Pods running this checkout's
    code; uninstalled, and its pods gone, at the module's end."""
    kube = KubeClient(kube_api)
    image = product_image()
    ns = await new_namespace(kube, "etcdop-system")
    rel = Release(kube, control_plane.kubeconfig, ns, local_node, image)
    rel.install()
    try:
        yield rel
    finally:
        rel.helm("uninstall", RELEASE, "--namespace", ns, "--wait", "--timeout", "2m")
        await delete_namespace(kube, ns)
        await wait_namespaces_gone(kube, [ns], 180)


@pytest.fixture(scope="module")
async def workload(release: Release, s3_server: S3Endpoint) -> AsyncIterator[dict[str, Any]]:
    """A 3-member cluster with backup storage, made by the chart's operator (deleted while the
    operator still runs, so its finalizers are honoured)."""
    kube = release.kube
    ns = await new_namespace(kube, "ec-chart")
    bucket = s3_server.new_bucket("e2e-chart")
    await kube.create(f"/api/v1/namespaces/{ns}/secrets", s3_server.credentials_secret("s3-creds"))
    storage = {"bucket": bucket, "endpoint": s3_server.pod_url, "forcePathStyle": True,
               "region": s3_server.region, "credentialsSecret": "s3-creds"}
    await release.wait_rolled_out()
    await create_cluster(kube, etcd_cluster("demo", ns, 3, backup={"storage": storage}))
    try:
        yield {"ns": ns, "storage": storage}
    finally:
        await delete_namespace(kube, ns)
        await wait_namespaces_gone(kube, [ns], 180)


def uids(pods: list[dict[str, Any]]) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}


async def test_the_operator_runs_as_pods_of_the_chart_with_its_service_account(
    release: Release,
) -> None:
    pods = await release.wait_rolled_out()
    assert len(pods) == 2  # the chart's default: two replicas, one leading
    for pod in pods:
        spec = pod["spec"]
        assert spec["serviceAccountName"] == RELEASE and spec["nodeName"].startswith("local-")
        (c,) = spec["containers"]
        assert c["image"] == release.image and c["args"][0] == "operator"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"  # Ready: it answered
        ip = pod["status"]["podIP"]
        async with httpx.AsyncClient(timeout=5) as http:  # the endpoint the probes use
            assert (await http.get(f"http://{ip}:8080/healthz")).status_code == 200
            assert "etcdop_leader" in (await http.get(f"http://{ip}:8080/metrics")).text
    # it reached the API server with the service account's token: it holds the Lease
    holder = await lease_holder(release.kube, release.ns) or ""
    assert any(holder.startswith(p["metadata"]["name"] + "-") for p in pods), holder


async def test_under_the_charts_role_a_cluster_is_made_and_backed_up(
    release: Release, workload: dict[str, Any]
) -> None:
    kube, ns = release.kube, workload["ns"]
    await wait_cluster_ready(kube, "demo", ns, 3, READY_WITHIN)
    async with etcd_client(kube, "demo", ns) as etcd:
        await etcd.put("/chart/key", b"kept")
    path = f"/apis/{GROUP_VERSION}/namespaces/{ns}/etcdbackups"
    await kube.create(path, {
        "apiVersion": GROUP_VERSION, "kind": "EtcdBackup", "metadata": {"name": "first"},
        "spec": {"clusterName": "demo", "storage": workload["storage"], "verify": True},
    })
    seen: dict[str, Any] = {}

    async def drilled() -> bool:
        st = ((await kube.get(f"{path}/first")) or {}).get("status") or {}
        seen.update(st)
        assert st.get("phase") != "Failed", st
        return st.get("phase") == "Succeeded" and st.get("verified") is not None

    await eventually(drilled, BACKUP_WITHIN, "EtcdBackup first: succeeded and drilled")
    assert seen["verified"] is True, seen
    logs = release.logs(await release.pods())  # RBAC's refusals: 'User "..." cannot list ...'
    refused = [ln for ln in logs.splitlines() if f"system:serviceaccount:{release.ns}:" in ln]
    assert not refused, refused


async def test_helm_upgrade_of_the_release_leaves_running_clusters_untouched(
    release: Release, workload: dict[str, Any]
) -> None:
    kube, ns = release.kube, workload["ns"]
    await wait_cluster_ready(kube, "demo", ns, 3, READY_WITHIN)
    before = uids(await member_pods(kube, "demo", ns))
    old_ops = {p["metadata"]["name"] for p in await release.pods()}

    release.install("--set", "logLevel=debug")  # a new pod template: every operator pod replaced
    new_ops = await release.wait_rolled_out()
    assert not old_ops & {p["metadata"]["name"] for p in new_ops}

    # the new leader has reconciled the cluster (its own counter), and changed nothing
    leader = await lease_holder(kube, release.ns) or ""
    (pod,) = [p for p in new_ops if leader.startswith(p["metadata"]["name"] + "-")]

    async def reconciled() -> bool:
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(f"http://{pod['status']['podIP']}:8080/metrics")).text
        return 'etcdop_reconcile_total{kind="EtcdCluster",result="ok"}' in text

    await eventually(reconciled, OPERATOR_WITHIN, "the new leader reconciled the EtcdCluster")
    ec = await wait_cluster_ready(kube, "demo", ns, 3, 30)
    assert uids(await member_pods(kube, "demo", ns)) == before
    assert ec["metadata"]["generation"] == ec["status"]["observedGeneration"]
    async with etcd_client(kube, "demo", ns) as etcd:
        assert (await etcd.get("/chart/key")) == b"kept"


async def test_with_watch_namespace_a_role_there_is_enough(
    release: Release, workload: dict[str, Any]
) -> None:
    kube, ns = release.kube, workload["ns"]
    release.install("--set", f"watchNamespace={ns}")
    ops = await release.wait_rolled_out()
    (c,) = ops[0]["spec"]["containers"]
    assert f"--namespace={ns}" in c["args"]
    role = await kube.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/{RELEASE}")
    assert role is not None
    cluster_role = await kube.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{RELEASE}")
    assert cluster_role is not None
    assert [r["resources"] for r in cluster_role["rules"]] == [["nodes"]]

    await create_cluster(kube, etcd_cluster("solo", ns, 1))
    await wait_cluster_ready(kube, "solo", ns, 1, READY_WITHIN)
    await wait_cluster_ready(kube, "demo", ns, 3, 30)
    logs = release.logs(await release.pods())
    refused = [ln for ln in logs.splitlines() if f"system:serviceaccount:{release.ns}:" in ln]
    assert not refused, refused
