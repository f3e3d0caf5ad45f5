"""The EtcdBackup reconciler: read the caches, decide one step (steps.py), take it, report.

The only long step is the backup call itself: the Manager never runs two reconciles of one
key at once, so a Running status seen here means the call that wrote it is gone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any

from etcdop.api import EtcdCluster, InvalidObject
from etcdop.api.etcdbackup import FINALIZER, EtcdBackup, EtcdBackupStatus
from etcdop.kube.client import KubeClient
from etcdop.kube.events import EventRecorder
from etcdop.kube.status import add_finalizer, patch_status, remove_finalizer
from etcdop.kube.store import Store
from etcdop.operator import manifests, metrics
from etcdop.operator.etcdbackup import results
from etcdop.operator.etcdbackup.agentclient import AgentClient
from etcdop.operator.etcdbackup.cache import ETCDBACKUPS
from etcdop.operator.etcdbackup.steps import (
    AddFinalizer,
    DeleteObjects,
    Fail,
    Nothing,
    ReleaseFinalizer,
    TakeBackup,
    Verify,
    Wait,
    decide,
)
from etcdop.operator.etcdcluster.token import cluster_token

log = logging.getLogger(__name__)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class BackupReconciler:
    def __init__(
        self,
        backups: Store,
        clusters: Store,
        pods: Store,
        secrets: Store,
        kube: KubeClient,
        recorder: EventRecorder,
        agent: AgentClient | None = None,
    ) -> None:
        self.backups = backups
        self.clusters = clusters
        self.pods = pods
        self.secrets = secrets
        self.kube = kube
        self.recorder = recorder
        self.agent = agent or AgentClient()

    def _cluster(self, namespace: str, name: str) -> EtcdCluster | None:
        raw = self.clusters.get_by(namespace, name)
        if raw is None:
            return None
        try:
            return EtcdCluster.from_dict(raw)
        except InvalidObject:
            return None

    def _pods(self, namespace: str, cluster: str) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        for pod in self.pods.list(namespace, {manifests.LABEL_CLUSTER: cluster}):
            out[str(pod["metadata"]["name"])] = pod
        return out

    async def _status(self, raw: Mapping[str, Any], st: EtcdBackupStatus) -> None:
        await patch_status(self.kube, ETCDBACKUPS, raw, st.to_dict())

    async def reconcile(self, key: str) -> float | None:
        namespace, _, name = key.partition("/")
        raw = self.backups.get_by(namespace, name)
        if raw is None:
            return None
        try:
            b = EtcdBackup.from_dict(raw)
        except InvalidObject as e:
            st = EtcdBackupStatus.from_dict(raw.get("status"))
            if st.phase != "Failed":
                await self._status(raw, results.failed(st, "InvalidSpec", str(e), now()))
                await self.recorder.warning(raw, "InvalidSpec", str(e))
            return None
        cluster = self._cluster(namespace, b.spec.cluster_name)
        pods = self._pods(namespace, b.spec.cluster_name)
        token = cluster_token(self.secrets, namespace, b.spec.cluster_name)
        step = decide(b, cluster, pods, token)
        log.info("reconcile", extra={"backup": key, "step": type(step).__name__})
        match step:
            case Nothing():
                return None
            case AddFinalizer():
                await add_finalizer(self.kube, ETCDBACKUPS, raw, FINALIZER)
                return 0.1
            case ReleaseFinalizer(message=message):
                await self.recorder.normal(raw, "FinalizerReleased", message)
                await remove_finalizer(self.kube, ETCDBACKUPS, raw, FINALIZER)
                return None
            case DeleteObjects(member=m):
                return await self._delete_objects(raw, b, m.ip, token or "")
            case Fail(reason=reason, message=message):
                await self._fail(raw, b, b.status, reason, message)
                return None
            case Wait(reason=reason, message=message, seconds=seconds):
                if b.status.reason != reason:
                    phase = b.status.phase or "Pending"
                    st = dataclasses.replace(b.status, phase=phase, reason=reason, message=message)
                    await self._status(raw, st)
                    await self.recorder.normal(raw, reason, message)
                return seconds
            case TakeBackup(member=m):
                return await self._take(raw, b, m.name, m.ip, token or "")
            case Verify(member=m):
                return await self._verify(raw, b, m.name, m.ip, token or "")
        return None  # pragma: no cover - every step is matched above

    async def _fail(
        self, raw: Mapping[str, Any], b: EtcdBackup, st: EtcdBackupStatus, reason: str, msg: str
    ) -> None:
        await self._status(raw, results.failed(st, reason, msg, now()))
        await self.recorder.warning(raw, "BackupFailed", f"{reason}: {msg}")
        metrics.BACKUP_FAILURES.labels(b.namespace, b.spec.cluster_name, reason).inc()
        log.warning("backup failed", extra={"backup": b.key, "reason": reason, "error": msg})

    async def _take(
        self, raw: Mapping[str, Any], b: EtcdBackup, member: str, ip: str, token: str
    ) -> float | None:
        running = dataclasses.replace(
            b.status,
            phase="Running",
            reason="",
            message=f"member {member}'s agent is taking the backup",
            member=member,
            attempts=b.status.attempts + 1,
            start_time=b.status.start_time or now(),
        )
        await self._status(raw, running)
        await self.recorder.normal(raw, "BackupStarted", f"backup started on member {member}")
        started = time.monotonic()
        reply = await self.agent.backup(ip, token, b.spec)
        if reply.status == 201:
            st = results.succeeded(running, reply.body, now())
            await self._status(raw, st)
            await self.recorder.normal(raw, "BackupSucceeded", f"{st.message} at {st.snapshot_key}")
            labels = (b.namespace, b.spec.cluster_name)
            metrics.BACKUP_DURATION.labels(*labels).observe(time.monotonic() - started)
            metrics.BACKUP_SIZE.labels(*labels).set(st.size)
            metrics.BACKUP_LAST_SUCCESS.labels(*labels).set(time.time())
            log.info("backup succeeded", extra={"backup": b.key, "key": st.snapshot_key})
            return 0.1 if b.spec.verify else None
        if reply.status == 409:  # the agent is busy with another job: not an attempt
            waiting = dataclasses.replace(
                running,
                phase="Pending",
                attempts=b.status.attempts,
                reason="AgentBusy",
                message=f"member {member}'s agent is busy; retrying",
            )
            await self._status(raw, waiting)
            return 5.0
        if reply.status == 0:  # no answer: the attempt counts, the next look decides
            waiting = dataclasses.replace(running, reason=reply.reason, message=reply.message)
            await self._status(raw, waiting)
            await self.recorder.warning(raw, reply.reason, reply.message)
            return 5.0 * running.attempts
        await self._fail(raw, b, running, reply.reason, reply.message)
        return None

    async def _verify(
        self, raw: Mapping[str, Any], b: EtcdBackup, member: str, ip: str, token: str
    ) -> float | None:
        await self.recorder.normal(raw, "DrillStarted", f"restore drill on member {member}")
        reply = await self.agent.verify(ip, token, b.spec, b.status.metadata_key)
        st = results.drilled(b.status, reply, now())
        await self._status(raw, st)
        labels = (b.namespace, b.spec.cluster_name)
        if st.verified is None:
            metrics.BACKUP_DRILLS.labels(*labels, "error").inc()
            await self.recorder.warning(raw, "DrillNotRun", reply.message)
            return 15.0
        verdict = next(c for c in st.conditions if c.type == "Verified")
        if st.verified:
            metrics.BACKUP_DRILLS.labels(*labels, "verified").inc()
            await self.recorder.normal(raw, "BackupVerified", verdict.message)
        else:
            metrics.BACKUP_DRILLS.labels(*labels, "failed").inc()
            await self.recorder.warning(
                raw, "VerificationFailed", f"{verdict.reason}: {verdict.message}"
            )
        return None

    async def _delete_objects(
        self, raw: Mapping[str, Any], b: EtcdBackup, ip: str, token: str
    ) -> float | None:
        reply = await self.agent.delete(ip, token, b.spec, b.status.metadata_key)
        if reply.status != 200:
            await self.recorder.warning(
                raw, "DeleteFailed", f"backup objects not deleted: {reply.reason}: {reply.message}"
            )
            return 15.0
        where = b.status.metadata_key.rsplit("/", 1)[0]
        await self.recorder.normal(
            raw, "BackupObjectsDeleted", f"{reply.body.get('deleted')} objects under {where}/"
        )
        await remove_finalizer(self.kube, ETCDBACKUPS, raw, FINALIZER)
        return None
