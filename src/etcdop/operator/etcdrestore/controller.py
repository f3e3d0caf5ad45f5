"""The EtcdRestore controller's registration: EtcdRestores, woken by their cluster's changes."""

from __future__ import annotations

from etcdop.kube.client import PODS, SECRETS, KubeClient, Obj
from etcdop.kube.events import EventRecorder
from etcdop.kube.manager import Controller, KeysOf, Manager, Watch
from etcdop.kube.store import Store
from etcdop.operator.etcdbackup.agentclient import AgentClient
from etcdop.operator.etcdbackup.cache import ETCDBACKUPS
from etcdop.operator.etcdcluster.cache import ETCDCLUSTERS, MANAGED
from etcdop.operator.etcdrestore.cache import ETCDRESTORES
from etcdop.operator.etcdrestore.reconciler import RestoreReconciler

__all__ = ["ETCDRESTORES", "controller"]


def restores_of(restores: Store) -> KeysOf:
    """The unfinished restores of a cluster that changed."""

    def keys(cluster: Obj) -> list[str]:
        meta = cluster.get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        out = []
        for r in restores.list(ns):
            phase = (r.get("status") or {}).get("phase")
            if (r.get("spec") or {}).get("clusterName") == name and phase not in (
                "Succeeded",
                "Failed",
            ):
                out.append(f"{ns}/{r['metadata']['name']}")
        return out

    return keys


def controller(
    mgr: Manager,
    kube: KubeClient,
    recorder: EventRecorder,
    *,
    workers: int = 2,
    agent: AgentClient | None = None,
) -> Controller:
    restores = mgr.store(ETCDRESTORES)
    reconciler = RestoreReconciler(
        restores,
        mgr.store(ETCDCLUSTERS),
        mgr.store(ETCDBACKUPS),
        mgr.store(PODS, MANAGED),
        mgr.store(SECRETS, MANAGED),
        kube,
        recorder,
        agent,
    )
    return Controller(
        name="etcdrestore",
        primary=ETCDRESTORES,
        reconcile=reconciler.reconcile,
        watches=[Watch(ETCDCLUSTERS, restores_of(restores))],
        workers=workers,
    )
