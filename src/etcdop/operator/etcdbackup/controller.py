"""The EtcdBackup controller's registration: EtcdBackups, woken by their cluster's changes
(a member becoming ready lets a waiting backup start)."""

from __future__ import annotations

from etcdop.kube.client import PODS, SECRETS, KubeClient, Obj
from etcdop.kube.events import EventRecorder
from etcdop.kube.manager import Controller, KeysOf, Manager, Watch
from etcdop.kube.store import Store
from etcdop.operator.etcdbackup.agentclient import AgentClient
from etcdop.operator.etcdbackup.cache import ETCDBACKUPS
from etcdop.operator.etcdbackup.reconciler import BackupReconciler
from etcdop.operator.etcdcluster.cache import ETCDCLUSTERS, MANAGED

__all__ = ["ETCDBACKUPS", "controller"]


def backups_of(backups: Store) -> KeysOf:
    """The not yet finished (or being deleted) backups of a cluster that changed."""

    def keys(cluster: Obj) -> list[str]:
        meta = cluster.get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        out = []
        for b in backups.list(ns):
            bmeta = b.get("metadata") or {}
            phase = (b.get("status") or {}).get("phase")
            if (b.get("spec") or {}).get("clusterName") == name and (
                phase not in ("Succeeded", "Failed") or bmeta.get("deletionTimestamp")
            ):
                out.append(f"{ns}/{bmeta.get('name')}")
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
    backups = mgr.store(ETCDBACKUPS)
    reconciler = BackupReconciler(
        backups,
        mgr.store(ETCDCLUSTERS),
        mgr.store(PODS, MANAGED),
        mgr.store(SECRETS, MANAGED),
        kube,
        recorder,
        agent,
    )
    return Controller(
        name="etcdbackup",
        primary=ETCDBACKUPS,
        reconcile=reconciler.reconcile,
        watches=[Watch(ETCDCLUSTERS, backups_of(backups))],
        workers=workers,
    )
