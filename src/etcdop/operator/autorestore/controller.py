"""The auto-restore controller: EtcdClusters whose QuorumLost condition is True and that allow
it (spec.recovery.autoRestore) get an EtcdRestore from their newest verified backup.

A controller of its own over EtcdClusters, like the backup schedule: the cluster's planner
stays free of backups, and the restore itself is the EtcdRestore's ordinary path. The restore's
name comes from the time the quorum was lost, so a repeated create is a 409, never a second
restore for the same loss.
"""

from __future__ import annotations

import logging

from etcdop.api import EtcdCluster, InvalidObject
from etcdop.api.etcdbackup import EtcdBackup
from etcdop.api.etcdrestore import API_VERSION, KIND
from etcdop.kube.client import ConflictError, KubeClient
from etcdop.kube.events import EventRecorder
from etcdop.kube.manager import Controller, Manager
from etcdop.kube.store import Change, Store
from etcdop.operator import manifests
from etcdop.operator.autorestore.decide import (
    LABEL_AUTO,
    CreateRestore,
    NoBackup,
    decide,
)
from etcdop.operator.etcdbackup.cache import ETCDBACKUPS
from etcdop.operator.etcdcluster.cache import ETCDCLUSTERS
from etcdop.operator.etcdrestore.cache import ETCDRESTORES

log = logging.getLogger(__name__)


def _any_change(change: Change) -> bool:
    return True  # QuorumLost is a status change: it must wake this controller


def _backups(store: Store, namespace: str) -> list[EtcdBackup]:
    out = []
    for raw in store.list(namespace):
        try:
            out.append(EtcdBackup.from_dict(raw))
        except InvalidObject:
            continue
    return out


def controller(mgr: Manager, kube: KubeClient, recorder: EventRecorder) -> Controller:
    clusters = mgr.store(ETCDCLUSTERS)
    backups = mgr.store(ETCDBACKUPS)
    restores = mgr.store(ETCDRESTORES)

    async def reconcile(key: str) -> float | None:
        namespace, _, name = key.partition("/")
        raw = clusters.get_by(namespace, name)
        if raw is None:
            return None
        try:
            ec = EtcdCluster.from_dict(raw)
        except InvalidObject:
            return None
        unfinished = sum(
            1
            for r in restores.list(namespace)
            if (r.get("spec") or {}).get("clusterName") == name
            and (r.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        )
        annotations = (raw.get("metadata") or {}).get("annotations")
        step = decide(ec, annotations, _backups(backups, namespace), unfinished)
        match step:
            case NoBackup(message=message):
                await recorder.warning(raw, "AutoRestoreImpossible", message)
                return 60.0
            case CreateRestore(name=restore, backup=b, since=since):
                body = {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "metadata": {
                        "name": restore,
                        "namespace": namespace,
                        "labels": {LABEL_AUTO: "true", manifests.LABEL_CLUSTER: name},
                        "ownerReferences": [manifests.owner_reference(ec)],
                    },
                    "spec": {"clusterName": name, "source": {"backupName": b.name}},
                }
                try:
                    await kube.create(ETCDRESTORES, body, namespace)
                except ConflictError:
                    return None  # made already for this loss
                message = (
                    f"quorum lost since {since}; spec.recovery.autoRestore is true: restoring "
                    f"from the newest verified EtcdBackup {b.name} (revision "
                    f"{b.status.revision}) with EtcdRestore {restore}; the surviving members' "
                    "data is replaced by the backup's"
                )
                log.warning("auto restore", extra={"cluster": key, "restore": restore})
                await recorder.warning(raw, "AutoRestore", message)
                return None
        return None

    return Controller(
        name="autorestore",
        primary=ETCDCLUSTERS,
        reconcile=reconcile,
        primary_filter=_any_change,
        workers=1,
    )
