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
from etcdop.api.etcdbackup import EtcdBackup, EtcdBackupSpec
from etcdop.api.etcdrestore import API_VERSION, KIND
from etcdop.kube.client import PODS, SECRETS, ConflictError, KubeClient, Obj
from etcdop.kube.events import EventRecorder
from etcdop.kube.manager import Controller, Manager
from etcdop.kube.store import Change, Store
from etcdop.operator import manifests, sidecar
from etcdop.operator.autorestore.decide import (
    ANN_FINAL_BACKUP,
    LABEL_AUTO,
    CreateRestore,
    FinalBackup,
    NoBackup,
    Survivor,
    decide,
    stamp_of,
)
from etcdop.operator.etcdbackup.agentclient import AgentClient
from etcdop.operator.etcdbackup.cache import ETCDBACKUPS
from etcdop.operator.etcdcluster.cache import ETCDCLUSTERS, MANAGED
from etcdop.operator.etcdcluster.token import cluster_token
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


def survivors(pods: Store, ec: EtcdCluster) -> list[Survivor]:
    """Member pods still running with an address whose agent mounts the storage Secret: one
    of them may still serve a snapshot of what it holds."""
    secret = sidecar.credentials_secret(ec)
    out = []
    for p in pods.list(ec.namespace, {manifests.LABEL_CLUSTER: ec.name}):
        meta, status = p.get("metadata") or {}, p.get("status") or {}
        ip = status.get("podIP")
        running = status.get("phase") == "Running" and not meta.get("deletionTimestamp")
        if ip and running and secret and sidecar.mounts_credentials(dict(p), secret):
            out.append(Survivor(str(meta.get("name")), str(ip)))
    return out


def controller(
    mgr: Manager, kube: KubeClient, recorder: EventRecorder, agent: AgentClient | None = None
) -> Controller:
    clusters = mgr.store(ETCDCLUSTERS)
    backups = mgr.store(ETCDBACKUPS)
    restores = mgr.store(ETCDRESTORES)
    pods = mgr.store(PODS, MANAGED)
    secrets = mgr.store(SECRETS, MANAGED)
    agents = agent or AgentClient()

    async def final_backup(raw: Obj, ec: EtcdCluster, member: Survivor, since: str) -> None:
        """One attempt, whatever comes of it: the restore must not wait on a dying member."""
        assert ec.spec.backup is not None
        token = cluster_token(secrets, ec.namespace, ec.name)
        spec = EtcdBackupSpec(
            cluster_name=ec.name,
            storage=ec.spec.backup.storage,
            compression=ec.spec.backup.compression,
            encryption=ec.spec.backup.encryption,
        )
        reply = await agents.backup(member.ip, token or "", spec)
        if reply.status == 201:
            meta = reply.body.get("backup") or {}
            await recorder.normal(
                raw,
                "FinalBackup",
                f"before restoring, surviving member {member.name} backed up what it holds: "
                f"{meta.get('keyCount')} keys at revision {meta.get('revision')}, "
                f"{reply.body.get('metadataKey')} (restore it with an EtcdRestore of storage + "
                "key if it is the data to keep)",
            )
        else:
            await recorder.warning(
                raw,
                "FinalBackupFailed",
                f"surviving member {member.name} could not back up what it holds before the "
                f"restore ({reply.reason}: {reply.message}); its data is replaced",
            )
        meta = raw["metadata"]
        patch = {"metadata": {"annotations": {ANN_FINAL_BACKUP: stamp_of(since)}}}
        await kube.patch(ETCDCLUSTERS, meta["name"], patch, meta.get("namespace"))

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
        alive = survivors(pods, ec)
        step = decide(ec, annotations, _backups(backups, namespace), unfinished, alive)
        match step:
            case FinalBackup(member=member, since=since):
                await final_backup(raw, ec, member, since)
                return 0.1
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
