"""The EtcdCluster controller's registration: what it watches, how a change maps to a cluster,
and its reconciler. The one example to copy for a new kind."""

from __future__ import annotations

from collections.abc import Callable

from etcdop.api import EtcdCluster
from etcdop.kube.client import NODES, PDBS, PODS, PVCS, SECRETS, SERVICES, KubeClient, Obj
from etcdop.kube.events import EventRecorder
from etcdop.kube.manager import Controller, KeysOf, Manager, Watch, owns
from etcdop.kube.store import Store
from etcdop.operator import manifests, metrics, sidecar
from etcdop.operator.etcdbackup.cache import ETCDBACKUPS
from etcdop.operator.etcdcluster.cache import ETCDCLUSTERS, MANAGED, Caches
from etcdop.operator.etcdcluster.reconciler import ClusterReconciler
from etcdop.operator.model import Observed
from etcdop.operator.planner import Action


def clusters_on_node(pods: Store) -> KeysOf:
    """A node that changes (goes NotReady, comes back, is deleted) wakes every cluster with a
    member pod on it: a member there may be lost, or back."""

    def keys(node: Obj) -> list[str]:
        name = (node.get("metadata") or {}).get("name")
        out = []
        for pod in pods:
            meta = pod.get("metadata") or {}
            cluster = (meta.get("labels") or {}).get(manifests.LABEL_CLUSTER)
            if cluster and (pod.get("spec") or {}).get("nodeName") == name:
                out.append(f"{meta.get('namespace')}/{cluster}")
        return out

    return keys


def _record_members(ec: EtcdCluster, o: Observed) -> None:
    counts = dict.fromkeys(metrics.MEMBER_STATES, 0)
    for m in o.members or ():
        state = "learner" if m.is_learner else ("healthy" if m.healthy else "unhealthy")
        counts[state] += 1
    for state, n in counts.items():
        metrics.MEMBERS.labels(ec.namespace, ec.name, state).set(n)


def _record_action(ec: EtcdCluster, action: Action) -> None:
    metrics.ACTIONS.labels(type(action).__name__, action.reason).inc()


def controller(
    mgr: Manager,
    kube: KubeClient,
    recorder: EventRecorder,
    *,
    workers: int = 4,
    cluster_domain: str = "cluster.local",
    agent_image: str = sidecar.DEFAULT_AGENT_IMAGE,
    on_action: Callable[[EtcdCluster, Action], None] | None = _record_action,
    on_observed: Callable[[EtcdCluster, Observed], None] | None = _record_members,
) -> Controller:
    """EtcdClusters, reconciled on a change of their spec, of anything they own (labelled with
    the cluster's name) and of a node their members run on."""
    caches = Caches(
        clusters=mgr.store(ETCDCLUSTERS),
        pods=mgr.store(PODS, MANAGED),
        claims=mgr.store(PVCS, MANAGED),
        services=mgr.store(SERVICES, MANAGED),
        pdbs=mgr.store(PDBS, MANAGED),
        nodes=mgr.store(NODES),
        secrets=mgr.store(SECRETS, MANAGED),
        backups=mgr.store(ETCDBACKUPS),
    )
    reconciler = ClusterReconciler(
        caches,
        kube,
        recorder,
        cluster_domain=cluster_domain,
        agent_image=agent_image,
        on_action=on_action,
        on_observed=on_observed,
    )
    by_cluster = manifests.LABEL_CLUSTER
    return Controller(
        name="etcdcluster",
        primary=ETCDCLUSTERS,
        reconcile=reconciler.reconcile,
        owns=[
            owns(PODS, label=by_cluster, selector=MANAGED),
            owns(PVCS, label=by_cluster, selector=MANAGED),
            owns(SERVICES, label=by_cluster, selector=MANAGED),
            owns(PDBS, label=by_cluster, selector=MANAGED),
            owns(SECRETS, label=by_cluster, selector=MANAGED),
            owns(ETCDBACKUPS, owner=ETCDCLUSTERS),
        ],
        watches=[Watch(NODES, clusters_on_node(caches.pods))],
        workers=workers,
    )
