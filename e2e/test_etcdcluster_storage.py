"""An EtcdCluster on PersistentVolumeClaims: each member keeps its data on a claim named like it,
a deleted member pod comes back on the same claim as the same member (it rejoins, it is not
replaced), and deleting the EtcdCluster takes the claims with it (whenDeleted: Delete; the
default, Retain, keeps them). The steps share the cluster (each one waits for the state it
starts from).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.localcluster.kubeapi import KubeClient
from e2e.operator import (
    OperatorProcess,
    create_cluster,
    delete_cluster,
    delete_namespace,
    etcd_client,
    etcd_cluster,
    etcd_leader,
    member_ids,
    member_pods,
    new_namespace,
    pod_endpoint,
    pod_ready,
    wait_cluster_ready,
    wait_membership_matches,
)
from e2e.workload import unreadable
from etcdop.operator.manifests import DATA_DIR, ETCD_CONTAINER
from tests.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.node]

NAME = "disk"
SIZE = 3
CLAIM_SIZE = "1Gi"
READY_WITHIN = 240.0
KEYS = 100

Obj = dict[str, Any]


@dataclass
class Cluster:
    kube: KubeClient
    ns: str
    name: str = NAME

    async def ready(self) -> Obj:
        return await wait_cluster_ready(self.kube, self.name, self.ns, SIZE, READY_WITHIN)

    async def write(self, prefix: str, count: int) -> list[str]:
        keys = [f"{prefix}/{n:08d}" for n in range(count)]
        async with etcd_client(self.kube, self.name, self.ns) as etcd:
            for k in keys:
                await etcd.put(k, str(int(k.rsplit("/", 1)[1])))
        return keys

    def pod_path(self, name: str = "") -> str:
        return f"/api/v1/namespaces/{self.ns}/pods" + (f"/{name}" if name else "")

    def claim_path(self, name: str = "") -> str:
        path = f"/api/v1/namespaces/{self.ns}/persistentvolumeclaims"
        return f"{path}/{name}" if name else path

    async def claims(self) -> list[Obj]:
        return await self.kube.items(self.claim_path(), f"etcdop.io/cluster={self.name}")

    async def claim(self, name: str) -> Obj:
        got = await self.kube.get(self.claim_path(name))
        assert got is not None, f"claim {self.ns}/{name} does not exist"
        return got


@pytest.fixture(scope="module")
async def cluster(
    etcdcluster_crd: KubeClient,
    local_node: object,
    operator: OperatorProcess,
    module_namespaces: list[str],
) -> AsyncIterator[Cluster]:
    ns = await new_namespace(etcdcluster_crd, "ec-disk")
    module_namespaces.append(ns)
    spec = {"storage": {"persistentVolumeClaim": {"size": CLAIM_SIZE, "whenDeleted": "Delete"}}}
    await create_cluster(etcdcluster_crd, etcd_cluster(NAME, ns, SIZE, **spec))
    yield Cluster(etcdcluster_crd, ns)
    await delete_namespace(etcdcluster_crd, ns)


def data_claim_of(pod: Obj) -> str | None:
    """The claim behind the volume the etcd container mounts at the data dir, if any."""
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    mounts = containers[ETCD_CONTAINER].get("volumeMounts") or []
    volume = next((m["name"] for m in mounts if m["mountPath"] == DATA_DIR), None)
    for v in pod["spec"].get("volumes") or []:
        if v["name"] == volume:
            claim: str | None = (v.get("persistentVolumeClaim") or {}).get("claimName")
            return claim
    return None


def owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


async def test_each_member_mounts_a_bound_claim_named_like_it(cluster: Cluster) -> None:
    ec = await cluster.ready()
    uid = ec["metadata"]["uid"]
    pods = await member_pods(cluster.kube, cluster.name, cluster.ns)
    names = sorted(p["metadata"]["name"] for p in pods)
    assert names == sorted(m["name"] for m in ec["status"]["members"]), (names, ec["status"])
    for pod in pods:
        name = pod["metadata"]["name"]
        assert data_claim_of(pod) == name, f"pod {name} mounts {DATA_DIR} from {pod['spec']}"

    async def all_bound() -> bool:
        claims = {c["metadata"]["name"]: c for c in await cluster.claims()}
        assert sorted(claims) == names, f"claims {sorted(claims)}, member pods {names}"
        phases = {n: c.get("status", {}).get("phase") for n, c in claims.items()}
        assert set(phases.values()) == {"Bound"}, phases
        return True

    await eventually(all_bound, 30, "one Bound claim per member")
    for claim in await cluster.claims():
        meta, spec = claim["metadata"], claim["spec"]
        assert owned_by(claim, uid), f"claim {meta['name']} not owned by {uid}: {meta}"
        assert spec["resources"]["requests"]["storage"] == CLAIM_SIZE, spec
        pv = await cluster.kube.get(f"/api/v1/persistentvolumes/{spec['volumeName']}")
        assert pv is not None, f"claim {meta['name']} bound to a missing volume {spec}"
        assert pv["spec"]["claimRef"]["uid"] == meta["uid"], pv["spec"]["claimRef"]


async def rejoins_on_its_claim(cluster: Cluster, victim: str, prefix: str) -> None:
    """Delete VICTIM's pod; the same member (same ID, same claim, same volume) must come back."""
    await cluster.ready()
    keys = await cluster.write(prefix, KEYS)
    before = await member_ids(cluster.kube, cluster.name, cluster.ns)
    victim_id = next(i for i, n in before.items() if n == victim)
    old_pod = await cluster.kube.get(cluster.pod_path(victim))
    assert old_pod is not None, f"pod {victim} not found"
    old_claim = await cluster.claim(victim)

    await cluster.kube.delete(cluster.pod_path(victim))

    async def back() -> bool:
        ids = await member_ids(cluster.kube, cluster.name, cluster.ns)
        if ids.keys() != before.keys():
            # A membership change means the member was replaced instead of restarted in place.
            pytest.fail(
                f"membership changed after deleting pod {victim} ({victim_id:x}): "
                f"{sorted(f'{i:x}={n}' for i, n in before.items())} -> "
                f"{sorted(f'{i:x}={n}' for i, n in ids.items())}"
            )
        pod = await cluster.kube.get(cluster.pod_path(victim))
        assert pod is not None, f"no pod {victim} yet"
        assert pod["metadata"]["uid"] != old_pod["metadata"]["uid"], f"old pod {victim} still there"
        assert pod_ready(pod) and pod_endpoint(pod), f"new pod {victim} not ready"
        return True

    await eventually(back, READY_WITHIN, f"pod {victim} re-created and ready")
    await cluster.ready()
    await wait_membership_matches(cluster.kube, cluster.name, cluster.ns, SIZE, 60)
    after = await member_ids(cluster.kube, cluster.name, cluster.ns)
    assert after == before, f"members before {before}, after {after}"

    pod = await cluster.kube.get(cluster.pod_path(victim))
    assert pod is not None
    assert data_claim_of(pod) == victim, f"re-created {victim} mounts {pod['spec']}"
    claim = await cluster.claim(victim)
    assert claim["metadata"]["uid"] == old_claim["metadata"]["uid"], "the claim was re-created"
    assert claim["spec"]["volumeName"] == old_claim["spec"]["volumeName"], claim["spec"]
    endpoint = pod_endpoint(pod)
    assert endpoint is not None
    async with etcd_client(cluster.kube, cluster.name, cluster.ns) as etcd:
        status = await etcd.status(endpoint)
    assert status.member_id == victim_id, f"{victim} answers as {status.member_id:x}"

    lost = await unreadable(cluster.kube, cluster.name, cluster.ns, keys)
    assert not lost, f"{len(lost)} of {len(keys)} keys lost, e.g. {lost[:5]}"


async def test_deleted_follower_pod_rejoins_on_its_claim(cluster: Cluster) -> None:
    ec = await cluster.ready()
    leader = await etcd_leader(cluster.kube, cluster.name, cluster.ns)
    follower = min(m["name"] for m in ec["status"]["members"] if m["name"] != leader.name)
    await rejoins_on_its_claim(cluster, follower, "follower")


async def test_deleted_leader_pod_rejoins_on_its_claim(cluster: Cluster) -> None:
    await cluster.ready()
    leader = await etcd_leader(cluster.kube, cluster.name, cluster.ns)
    await rejoins_on_its_claim(cluster, leader.name, "leader")


async def test_deleting_the_etcdcluster_removes_pods_and_claims(cluster: Cluster) -> None:
    """Runs last: the garbage collector removes the pods, then the claims (a claim in use by a
    pod waits for it), then the provisioner the released volumes."""
    await cluster.ready()
    volumes = [c["spec"]["volumeName"] for c in await cluster.claims()]
    assert len(volumes) == SIZE, volumes
    await delete_cluster(cluster.kube, cluster.name, cluster.ns)

    async def all_gone() -> bool:
        pods = [p["metadata"]["name"] for p in await member_pods(cluster.kube, cluster.name,
                                                                   cluster.ns)]
        claims = [c["metadata"]["name"] for c in await cluster.claims()]
        assert not pods and not claims, f"still there: pods {pods}, claims {claims}"
        return True

    await eventually(all_gone, 150, "pods and claims of the deleted EtcdCluster to go")

    async def volumes_gone() -> bool:
        left = [v for v in volumes if await cluster.kube.get(f"/api/v1/persistentvolumes/{v}")]
        assert not left, f"volumes still there: {left}"
        return True

    await eventually(volumes_gone, 60, "the released volumes to be deleted")
