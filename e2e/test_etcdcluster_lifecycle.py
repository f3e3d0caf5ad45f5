"""One EtcdCluster through its life: created at size 3, healed after losing a member's data and
after losing a member's pod, then deleted with everything it owns. The steps share the cluster
(each one waits for the state it starts from, so any one of them also runs alone).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.localcluster.kubeapi import KubeClient
from e2e.localcluster.kubelet import faults
from e2e.operator import (
    ETCD_VERSION,
    OperatorProcess,
    condition,
    create_cluster,
    delete_cluster,
    delete_namespace,
    etcd_client,
    etcd_cluster,
    etcd_leader,
    get_cluster,
    member_ids,
    member_pods,
    membership_problems,
    new_namespace,
    observe_members,
    wait_cluster_ready,
    wait_membership_matches,
)
from e2e.workload import unreadable
from etcdop.operator.manifests import ANN_INITIAL_STATE, DATA_DIR, ETCD_CONTAINER
from tests.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.node]

NAME = "life"
SIZE = 3
READY_WITHIN = 240.0


@dataclass
class Cluster:
    kube: KubeClient
    ns: str
    name: str = NAME

    async def ready(self, size: int = SIZE) -> dict[str, Any]:
        return await wait_cluster_ready(self.kube, self.name, self.ns, size, READY_WITHIN)

    async def write(self, prefix: str, count: int) -> list[str]:
        keys = [f"{prefix}/{n:08d}" for n in range(count)]
        async with etcd_client(self.kube, self.name, self.ns) as etcd:
            for k in keys:
                await etcd.put(k, str(int(k.rsplit("/", 1)[1])))
        return keys


@pytest.fixture(scope="module")
async def cluster(
    etcdcluster_crd: KubeClient,
    local_node: object,
    operator: OperatorProcess,
    module_namespaces: list[str],
) -> AsyncIterator[Cluster]:
    ns = await new_namespace(etcdcluster_crd, "ec-life")
    module_namespaces.append(ns)
    await create_cluster(etcdcluster_crd, etcd_cluster(NAME, ns, SIZE))
    yield Cluster(etcdcluster_crd, ns)
    await delete_namespace(etcdcluster_crd, ns)


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


async def owned_objects(kube: KubeClient, ns: str, name: str) -> dict[str, list[dict[str, Any]]]:
    selector = f"etcdop.io/cluster={name}"
    return {
        "pods": await kube.items(f"/api/v1/namespaces/{ns}/pods", selector),
        "services": await kube.items(f"/api/v1/namespaces/{ns}/services", selector),
        "pdbs": await kube.items(
            f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets", selector
        ),
    }


async def test_create_size_3_gives_three_ready_members_and_one_leader(cluster: Cluster) -> None:
    ec = await cluster.ready()
    status = ec["status"]
    gen = ec["metadata"]["generation"]
    members = status["members"]
    assert [m["version"] for m in members] == [ETCD_VERSION] * SIZE, members
    assert status["currentVersion"] == ETCD_VERSION, status
    assert all(m["id"] for m in members), members
    assert status.get("clusterID"), status
    assert len(status.get("clientEndpoints") or []) >= 1, status
    expected = {"Available": "True", "Progressing": "False", "Degraded": "False",
                "EvenSize": "False"}
    for type_, want in expected.items():
        c = condition(ec, type_)
        assert c is not None, f"no condition {type_}: {status.get('conditions')}"
        assert c["status"] == want, f"{type_}: {c}"
        assert c.get("reason") and c.get("message"), f"{type_} without reason/message: {c}"
        assert c.get("observedGeneration") == gen, f"{type_}: {c} (generation {gen})"
        assert c.get("lastTransitionTime"), c

    # The status agrees with etcd itself, asked through the pod IPs.
    view = await observe_members(cluster.kube, cluster.name, cluster.ns)
    assert view.has_quorum() and view.healthy_voters == SIZE, view.describe()
    assert {m.hex_id for m in view.members} == {m["id"] for m in members}
    assert {m.name for m in view.members} == {m["name"] for m in members}
    async with etcd_client(cluster.kube, cluster.name, cluster.ns) as etcd:
        leaders = set()
        for endpoint in etcd.endpoints:
            leaders.add(f"{(await etcd.status(endpoint)).leader_id:x}")
    assert len(leaders) == 1, f"members disagree on the leader: {leaders}"
    assert [m["id"] for m in members if m["isLeader"]] == list(leaders), (members, leaders)
    await wait_membership_matches(cluster.kube, cluster.name, cluster.ns, SIZE, 30)

    # Pods, services and the PDB exist and are owned by the EtcdCluster (what makes GC work).
    uid = ec["metadata"]["uid"]
    owned = await owned_objects(cluster.kube, cluster.ns, cluster.name)
    assert len(owned["pods"]) == SIZE, [p["metadata"]["name"] for p in owned["pods"]]
    assert len(owned["services"]) == 2, [s["metadata"]["name"] for s in owned["services"]]
    assert len(owned["pdbs"]) == 1, owned["pdbs"]
    for kind, objs in owned.items():
        for obj in objs:
            assert owned_by(obj, uid), f"{kind} {obj['metadata']['name']} not owned by {uid}"
    pdb = owned["pdbs"][0]["spec"]
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable") == 2, pdb
    headless = [s for s in owned["services"] if s["spec"].get("clusterIP") == "None"]
    assert len(headless) == 1, "one headless peer service expected"


async def wait_replaced(cluster: Cluster, victim_id: int, victim: str) -> None:
    """Until member VICTIM_ID is out of the membership, then the cluster is whole again."""

    async def removed() -> bool:
        ids = await member_ids(cluster.kube, cluster.name, cluster.ns)
        if victim_id in ids:
            problems = await membership_problems(cluster.kube, cluster.name, cluster.ns, SIZE)
            raise AssertionError(
                f"{victim} ({victim_id:x}) still among {sorted(ids.values())}; "
                f"membership problems: {problems or 'none'}"
            )
        return True

    await eventually(removed, READY_WITHIN, f"member {victim} to be removed")
    await cluster.ready()
    await wait_membership_matches(cluster.kube, cluster.name, cluster.ns, SIZE, 120)


async def test_deleted_member_pod_is_replaced(cluster: Cluster) -> None:
    """A member's pod is deleted (emptyDir: its data goes with it): the leader's, unless the
    leader is the seed, which the next test needs."""
    await cluster.ready()
    keys = await cluster.write("podloss", 200)
    seed = (await member_pods(cluster.kube, cluster.name, cluster.ns))[0]["metadata"]["name"]
    leader = await etcd_leader(cluster.kube, cluster.name, cluster.ns)
    ids = {n: i for i, n in (await member_ids(cluster.kube, cluster.name, cluster.ns)).items()}
    victim = leader.name if leader.name != seed else min(n for n in ids if n != seed)
    await cluster.kube.delete(f"/api/v1/namespaces/{cluster.ns}/pods/{victim}")
    await wait_replaced(cluster, ids[victim], victim)
    lost = await unreadable(cluster.kube, cluster.name, cluster.ns, keys)
    assert not lost, f"{len(lost)} of {len(keys)} keys lost, e.g. {lost[:5]}"


async def test_member_whose_data_is_wiped_is_replaced(cluster: Cluster) -> None:
    """The oldest member (the seed, started with --initial-cluster-state=new) loses its data
    dir; its etcd is then killed so that it restarts on the empty dir, as after a disk loss."""
    await cluster.ready()
    keys = await cluster.write("wipe", 200)
    victim = (await member_pods(cluster.kube, cluster.name, cluster.ns))[0]
    victim_name = victim["metadata"]["name"]
    ids = await member_ids(cluster.kube, cluster.name, cluster.ns)
    victim_id = next(i for i, n in ids.items() if n == victim_name)

    faults.wipe_volume(victim["metadata"]["uid"], DATA_DIR, ETCD_CONTAINER)
    faults.kill_container(victim["metadata"]["uid"], ETCD_CONTAINER)

    await wait_replaced(cluster, victim_id, victim_name)
    lost = await unreadable(cluster.kube, cluster.name, cluster.ns, keys)
    assert not lost, f"{len(lost)} of {len(keys)} keys lost, e.g. {lost[:5]}"


async def test_joined_member_whose_data_is_wiped_is_replaced(cluster: Cluster) -> None:
    """A member that joined (--initial-cluster-state=existing) loses its data dir and its etcd
    restarts on the empty dir: it cannot serve again (it crash-loops) and must be replaced.
    The victim is the oldest joined follower: the membership has changed since its pod was
    made, so etcd fails its peer URL check rather than panicking on the raft log (was: that
    failure was not read as data loss and the member stayed DOWN; CI, 2026-12-02)."""
    await cluster.ready()
    keys = await cluster.write("wipe-joined", 200)
    pods = await member_pods(cluster.kube, cluster.name, cluster.ns)
    joined = {
        p["metadata"]["name"]: p
        for p in pods
        if (p["metadata"].get("annotations") or {}).get(ANN_INITIAL_STATE) == "existing"
    }
    leader = await etcd_leader(cluster.kube, cluster.name, cluster.ns)
    ids = {n: i for i, n in (await member_ids(cluster.kube, cluster.name, cluster.ns)).items()}
    followers = sorted(
        (n for n in joined if n != leader.name and n in ids),
        key=lambda n: (joined[n]["metadata"]["creationTimestamp"], n),
    )
    assert followers, f"no joined follower among {sorted(joined)} (leader {leader.name})"
    victim = joined[followers[0]]

    faults.wipe_volume(victim["metadata"]["uid"], DATA_DIR, ETCD_CONTAINER)
    faults.kill_container(victim["metadata"]["uid"], ETCD_CONTAINER)

    await wait_replaced(cluster, ids[followers[0]], followers[0])
    lost = await unreadable(cluster.kube, cluster.name, cluster.ns, keys)
    assert not lost, f"{len(lost)} of {len(keys)} keys lost, e.g. {lost[:5]}"


async def test_deleting_the_etcdcluster_removes_pods_services_and_pdb(cluster: Cluster) -> None:
    """Runs last: the garbage collector removes what the EtcdCluster owned (its discovery of a
    fresh CRD may lag ~30 s, hence the long wait)."""
    async def all_there() -> bool:
        before = await owned_objects(cluster.kube, cluster.ns, cluster.name)
        assert all(before.values()), {k: len(v) for k, v in before.items()}
        return True

    await eventually(all_there, 60, "pods, services and PDB before the deletion")
    await delete_cluster(cluster.kube, cluster.name, cluster.ns)

    async def cluster_gone() -> bool:
        return await cluster.kube.get(
            f"/apis/etcdop.io/v1alpha1/namespaces/{cluster.ns}/etcdclusters/{cluster.name}"
        ) is None

    await eventually(cluster_gone, 30, f"EtcdCluster {cluster.ns}/{cluster.name} deleted")

    async def all_gone() -> bool:
        left = await owned_objects(cluster.kube, cluster.ns, cluster.name)
        names = {k: [o["metadata"]["name"] for o in v] for k, v in left.items() if v}
        assert not names, f"still there: {names}"
        return True

    await eventually(all_gone, 150, "pods, services and PDB of the deleted EtcdCluster to go")
    with pytest.raises(AssertionError):
        await get_cluster(cluster.kube, cluster.name, cluster.ns)
