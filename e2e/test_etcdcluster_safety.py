"""What the safety review found, each tried on the local cluster: a crash is not data loss, a
size-1 cluster survives one, an emptied seed never founds a second cluster, owned objects follow
the spec, refusals show up, restricted namespaces work, NOSPACE is cleared, claims outlive the
cluster unless asked otherwise.
"""

from __future__ import annotations

from typing import Any

import pytest

from e2e.localcluster.kubeapi import ApiError, KubeClient
from e2e.localcluster.kubelet import faults
from e2e.localcluster.kubelet.fixtures import LocalNode
from e2e.operator import (
    OperatorProcess,
    condition,
    create_cluster,
    delete_cluster,
    etcd_client,
    etcd_cluster,
    etcd_leader,
    get_cluster,
    member_ids,
    member_pods,
    new_namespace,
    patch_spec,
    wait_cluster_ready,
)
from e2e.workload import unreadable, write_keys
from etcdop.etcd import EtcdError
from etcdop.operator.manifests import DATA_DIR, ETCD_CONTAINER
from tests.waiting import eventually

pytestmark = [pytest.mark.cluster, pytest.mark.node]

READY_WITHIN = 240.0
Obj = dict[str, Any]


@pytest.fixture(autouse=True)
def _node(local_node: LocalNode) -> LocalNode:
    """Every scenario here runs member pods: the nodes must be up."""
    return local_node


async def events(kube: KubeClient, ns: str, name: str) -> list[Obj]:
    items = await kube.items(f"/apis/events.k8s.io/v1/namespaces/{ns}/events")
    return [e for e in items if (e.get("regarding") or {}).get("name") == name]


async def event_reasons(kube: KubeClient, ns: str, name: str) -> list[str]:
    return [str(e.get("reason")) for e in await events(kube, ns, name)]


async def etcd_container(kube: KubeClient, ns: str, pod: str) -> Obj:
    got = await kube.get(f"/api/v1/namespaces/{ns}/pods/{pod}")
    assert got is not None, f"pod {ns}/{pod} is gone"
    for cs in got.get("status", {}).get("containerStatuses") or []:
        if cs.get("name") == ETCD_CONTAINER:
            return dict(cs)
    return {}


async def kill_and_wait_restarted(kube: KubeClient, ns: str, pod: Obj) -> None:
    """SIGKILL the etcd container of POD and wait until the kubelet has started it again."""
    name = pod["metadata"]["name"]
    before = int((await etcd_container(kube, ns, name)).get("restartCount") or 0)
    faults.kill_container(pod["metadata"]["uid"], ETCD_CONTAINER)

    async def restarted() -> bool:
        cs = await etcd_container(kube, ns, name)
        return int(cs.get("restartCount") or 0) > before and bool(cs.get("ready"))

    await eventually(restarted, 120, f"etcd of {name} to restart in place and be ready")


async def test_a_size_1_emptydir_cluster_survives_a_crash(
    operator: OperatorProcess, etcdcluster_crd: KubeClient, namespace: str
) -> None:
    """Was: the seed had restartPolicy Never, so its first crash failed the pod, and with
    emptyDir the only copy of the data went with it."""
    kube = etcdcluster_crd
    await create_cluster(kube, etcd_cluster("solo", namespace, 1))
    await wait_cluster_ready(kube, "solo", namespace, 1, READY_WITHIN)
    keys = await write_keys(kube, "solo", namespace, "solo", 50)
    ids = await member_ids(kube, "solo", namespace)
    (pod,) = await member_pods(kube, "solo", namespace)

    await kill_and_wait_restarted(kube, namespace, pod)

    await wait_cluster_ready(kube, "solo", namespace, 1, READY_WITHIN)
    assert await member_ids(kube, "solo", namespace) == ids
    (after,) = await member_pods(kube, "solo", namespace)
    assert after["metadata"]["uid"] == pod["metadata"]["uid"], "the pod was replaced"
    lost = await unreadable(kube, "solo", namespace, keys)
    assert not lost, f"{len(lost)} of {len(keys)} keys lost after a crash"


async def test_an_emptied_seed_never_founds_a_second_cluster(
    operator: OperatorProcess, etcdcluster_crd: KubeClient, namespace: str
) -> None:
    """The seed of a formed size-1 cluster restarts on an emptied data dir: it must fail (it
    now starts as `existing`) and the cluster say ClusterLost, never come back Available with
    no keys (what happened after a whole-cluster restart)."""
    kube = etcdcluster_crd
    await create_cluster(kube, etcd_cluster("seed", namespace, 1))
    await wait_cluster_ready(kube, "seed", namespace, 1, READY_WITHIN)
    (pod,) = await member_pods(kube, "seed", namespace)

    async def marked() -> bool:
        """Marked, and serving clients: the operator serves the seed only once its kubelet has
        the mark (status.observedGeneration), which it took 1-2 s to get on the real node. Keys
        are written from then on, as a client of the Service would; a restart on emptied data
        before that is the window docs/architecture.md names."""
        p = await kube.get(f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}")
        meta = (p or {}).get("metadata") or {}
        ann, labels = meta.get("annotations") or {}, meta.get("labels") or {}
        return (ann.get("etcdop.io/initial-cluster-state") == "existing"
                and labels.get("etcdop.io/serving") == "true")

    await eventually(marked, 60, "the seed to be marked as formed and to serve clients")
    await write_keys(kube, "seed", namespace, "seed", 20)
    faults.wipe_volume(pod["metadata"]["uid"], DATA_DIR, ETCD_CONTAINER)
    faults.kill_container(pod["metadata"]["uid"], ETCD_CONTAINER)

    async def lost() -> bool:
        ec = await get_cluster(kube, "seed", namespace)
        return (condition(ec, "Available") or {}).get("reason") == "ClusterLost"

    await eventually(lost, READY_WITHIN, "ClusterLost after the seed's data was wiped")
    # Nothing answers as a fresh cluster on the old member's address (a second cluster would
    # answer this read with "no such key" instead of failing).
    async with etcd_client(kube, "seed", namespace, call_timeout=2) as etcd:
        with pytest.raises(EtcdError):
            await etcd.get("seed/000000")
    # The Event is written after the status that says it (seen missing when read at once).
    async def said() -> bool:
        return "ClusterLost" in await event_reasons(kube, namespace, "seed")

    await eventually(said, 30, "a ClusterLost event about the cluster")


async def test_restarts_are_not_data_loss(
    operator: OperatorProcess, etcdcluster_crd: KubeClient, namespace: str
) -> None:
    """Was: 3 restarts and a non-zero last exit made a member DataLost, so it was removed (and,
    with a claim, its claim deleted). A member killed three times keeps its ID, pod and data."""
    kube = etcdcluster_crd
    await create_cluster(kube, etcd_cluster("crashy", namespace, 3))
    await wait_cluster_ready(kube, "crashy", namespace, 3, READY_WITHIN)
    keys = await write_keys(kube, "crashy", namespace, "crashy", 50)
    ids = await member_ids(kube, "crashy", namespace)
    leader = await etcd_leader(kube, "crashy", namespace)
    victim = next(
        p
        for p in await member_pods(kube, "crashy", namespace)
        if p["metadata"]["name"] != leader.name
    )
    for _ in range(3):  # what the old rule took for data loss: 3 restarts, last exit non-zero
        await kill_and_wait_restarted(kube, namespace, victim)
    cs = await etcd_container(kube, namespace, victim["metadata"]["name"])
    assert int(cs.get("restartCount") or 0) >= 3, cs

    await wait_cluster_ready(kube, "crashy", namespace, 3, READY_WITHIN)
    assert await member_ids(kube, "crashy", namespace) == ids, "a member was replaced"
    uids = {p["metadata"]["uid"] for p in await member_pods(kube, "crashy", namespace)}
    assert victim["metadata"]["uid"] in uids, "the restarted member's pod was deleted"
    reasons = await event_reasons(kube, namespace, "crashy")
    assert not {"DataLost", "PodFailed", "NotAMember"} & set(reasons), reasons
    lost = await unreadable(kube, "crashy", namespace, keys)
    assert not lost, f"{len(lost)} of {len(keys)} keys lost"


async def pdb(kube: KubeClient, ns: str, name: str) -> Obj:
    got = await kube.get(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}-quorum")
    assert got is not None, "no PodDisruptionBudget"
    return got


async def test_the_disruption_budget_follows_the_size_and_drift_is_corrected(
    operator: OperatorProcess, etcdcluster_crd: KubeClient, namespace: str
) -> None:
    """Was: owned objects were only ever created, so after 3 -> 1 a drain could still evict a
    member of a cluster that tolerates no failure."""
    kube = etcdcluster_crd
    await create_cluster(kube, etcd_cluster("budget", namespace, 3))
    await wait_cluster_ready(kube, "budget", namespace, 3, READY_WITHIN)
    assert (await pdb(kube, namespace, "budget"))["spec"]["maxUnavailable"] == 1

    path = f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/budget-quorum"
    await kube.merge_patch(path, {"spec": {"maxUnavailable": 2}})

    async def corrected() -> bool:
        return bool((await pdb(kube, namespace, "budget"))["spec"]["maxUnavailable"] == 1)

    await eventually(corrected, 60, "the hand-edited budget to be put back")
    rv = (await pdb(kube, namespace, "budget"))["metadata"]["resourceVersion"]

    await patch_spec(kube, "budget", namespace, {"size": 1})
    await wait_cluster_ready(kube, "budget", namespace, 1, READY_WITHIN)
    after = await pdb(kube, namespace, "budget")
    assert after["spec"]["maxUnavailable"] == 0, after["spec"]
    assert after["metadata"]["resourceVersion"] != rv

    # Unchanged, it is not written again: two more reconciles (each a spec change) leave it.
    settled = after["metadata"]["resourceVersion"]
    await patch_spec(kube, "budget", namespace, {"paused": True})
    generation = (await patch_spec(kube, "budget", namespace, {"paused": False}))["metadata"][
        "generation"
    ]

    async def seen() -> bool:
        ec = await get_cluster(kube, "budget", namespace)
        return bool((ec.get("status") or {}).get("observedGeneration") == generation)

    await eventually(seen, 60, f"the operator to reconcile generation {generation}")
    assert (await pdb(kube, namespace, "budget"))["metadata"]["resourceVersion"] == settled


async def test_a_cluster_forms_in_a_restricted_namespace(
    operator: OperatorProcess, etcdcluster_crd: KubeClient
) -> None:
    kube = etcdcluster_crd
    ns = await new_namespace(kube, "ec-restricted")
    try:
        await kube.merge_patch(
            f"/api/v1/namespaces/{ns}",
            {
                "metadata": {
                    "labels": {
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    }
                }
            },
        )
        await create_cluster(kube, etcd_cluster("strict", ns, 1))
        await wait_cluster_ready(kube, "strict", ns, 1, READY_WITHIN)
    finally:
        await kube.delete(f"/api/v1/namespaces/{ns}")


async def test_a_refused_pod_create_shows_in_status_and_events(
    operator: OperatorProcess, etcdcluster_crd: KubeClient, namespace: str
) -> None:
    """Was: only etcd errors were caught, so a create refused by a quota wrote nothing."""
    kube = etcdcluster_crd
    await kube.create(
        f"/api/v1/namespaces/{namespace}/resourcequotas",
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "no-pods", "namespace": namespace},
            "spec": {"hard": {"pods": "0"}},
        },
    )

    async def quota_counted() -> bool:
        q = await kube.get(f"/api/v1/namespaces/{namespace}/resourcequotas/no-pods")
        return bool(((q or {}).get("status") or {}).get("hard"))

    await eventually(quota_counted, 30, "the quota to be in force")
    await create_cluster(kube, etcd_cluster("refused", namespace, 1))

    async def said() -> bool:
        ec = await get_cluster(kube, "refused", namespace)
        c = condition(ec, "Progressing") or {}
        return c.get("reason") == "StepRefused" and "quota" in c.get("message", "")

    await eventually(said, 60, "Progressing=False StepRefused naming the quota")
    refused = [e for e in await events(kube, namespace, "refused") if e["reason"] == "StepRefused"]
    assert refused and refused[0]["type"] == "Warning", refused
    assert "quota" in refused[0]["note"], refused[0]


async def test_names_that_cannot_work_are_refused_at_admission(
    operator: OperatorProcess, etcdcluster_crd: KubeClient, namespace: str
) -> None:
    kube = etcdcluster_crd
    for bad in ("1abc", "a" * 58):
        with pytest.raises(ApiError) as refused:
            await create_cluster(kube, etcd_cluster(bad, namespace, 1))
        assert "metadata.name" in str(refused.value) and "57" in str(refused.value)
    await create_cluster(kube, etcd_cluster("a" * 57, namespace, 1))
    await delete_cluster(kube, "a" * 57, namespace)


async def test_a_nospace_alarm_is_cleared_with_an_event_per_step(
    operator: OperatorProcess, etcdcluster_crd: KubeClient, namespace: str
) -> None:
    """A small quota filled with the history of one key: the operator compacts, defragments
    each member and disarms, and writes are accepted again."""
    kube = etcdcluster_crd
    await create_cluster(
        kube,
        etcd_cluster(
            "full", namespace, 3, backendQuota="24Mi", autoCompaction={"retention": "1000h"}
        ),
    )
    await wait_cluster_ready(kube, "full", namespace, 3, READY_WITHIN)
    value = b"x" * (512 * 1024)
    async with etcd_client(kube, "full", namespace) as etcd:
        written = 0
        with pytest.raises(EtcdError) as full:
            for _ in range(200):  # 100 MiB of history at most: far past the quota
                await etcd.put("big", value)
                written += 1
    assert "space" in str(full.value).lower(), full.value
    assert written > 0

    async def disarmed() -> bool:
        reasons = await event_reasons(kube, namespace, "full")
        return "NoSpaceDisarm" in reasons

    await eventually(disarmed, READY_WITHIN, "the NOSPACE alarm to be disarmed")
    reasons = await event_reasons(kube, namespace, "full")
    assert "NoSpaceCompact" in reasons, reasons
    defrags = [
        e for e in await events(kube, namespace, "full") if e["reason"] == "NoSpaceDefragment"
    ]
    count = sum(int((e.get("series") or {}).get("count") or 1) for e in defrags)
    assert count >= 3, defrags
    await wait_cluster_ready(kube, "full", namespace, 3, READY_WITHIN)
    async with etcd_client(kube, "full", namespace) as etcd:
        await etcd.put("after", "ok")
        assert await etcd.get("after") == b"ok"


async def claims(kube: KubeClient, ns: str, name: str) -> dict[str, str]:
    """Claim name -> uid of cluster NAME's claims."""
    items = await kube.items(
        f"/api/v1/namespaces/{ns}/persistentvolumeclaims", f"etcdop.io/cluster={name}"
    )
    return {c["metadata"]["name"]: c["metadata"]["uid"] for c in items}


async def test_claims_outlive_their_cluster_and_are_never_adopted(
    operator: OperatorProcess, etcdcluster_crd: KubeClient, namespace: str
) -> None:
    """Was: deleting an EtcdCluster deleted every claim through owner references."""
    kube = etcdcluster_crd
    storage = {"persistentVolumeClaim": {"size": "64Mi"}}
    await create_cluster(kube, etcd_cluster("keep", namespace, 1, storage=storage))
    await wait_cluster_ready(kube, "keep", namespace, 1, READY_WITHIN)
    first = await claims(kube, namespace, "keep")
    assert len(first) == 1, first
    await delete_cluster(kube, "keep", namespace)

    async def pods_gone() -> bool:
        return not await member_pods(kube, "keep", namespace)

    await eventually(pods_gone, 150, "the deleted cluster's pods to go")
    kept = await claims(kube, namespace, "keep")
    assert kept == first, "Retain (the default) must keep the claims"

    await create_cluster(kube, etcd_cluster("keep", namespace, 1, storage=storage))
    await wait_cluster_ready(kube, "keep", namespace, 1, READY_WITHIN)
    now = await claims(kube, namespace, "keep")
    assert set(first).issubset(now) and len(now) == 2, now
    assert all(now[n] == first[n] for n in first), "the old claim was replaced"
    (pod,) = await member_pods(kube, "keep", namespace)
    vols = [v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["spec"]["volumes"]]
    assert not set(first) & set(vols), f"the new cluster adopted an old claim: {vols}"
