"""The EtcdRestore reconciler: read the caches, decide one step (steps.py), take it, report."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from etcdop.api import EtcdCluster, InvalidObject
from etcdop.api.etcdbackup import EtcdBackup, EtcdBackupSpec
from etcdop.api.etcdcluster import Condition
from etcdop.api.etcdrestore import EtcdRestore, EtcdRestoreStatus
from etcdop.kube.client import KubeClient
from etcdop.kube.events import EventRecorder
from etcdop.kube.status import patch_status
from etcdop.kube.store import Store
from etcdop.operator import manifests
from etcdop.operator.etcdbackup.agentclient import AgentClient
from etcdop.operator.etcdcluster.cache import ETCDCLUSTERS
from etcdop.operator.etcdcluster.token import cluster_token
from etcdop.operator.etcdrestore.cache import ETCDRESTORES
from etcdop.operator.etcdrestore.steps import (
    Check,
    Fail,
    Nothing,
    Source,
    Start,
    Succeed,
    Verdict,
    Wait,
    decide,
    version_refusal,
)
from etcdop.operator.restorerequest import ANN_RESTORE, RestoreRequest

log = logging.getLogger(__name__)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def with_condition(st: EtcdRestoreStatus, c: Condition, at: str) -> EtcdRestoreStatus:
    before = next((p for p in st.conditions if p.type == c.type), None)
    when = before.last_transition_time if before and before.status == c.status else at
    c = dataclasses.replace(c, last_transition_time=when)
    rest = tuple(p for p in st.conditions if p.type != c.type)
    return dataclasses.replace(st, conditions=(*rest, c))


class RestoreReconciler:
    def __init__(
        self,
        restores: Store,
        clusters: Store,
        backups: Store,
        pods: Store,
        secrets: Store,
        kube: KubeClient,
        recorder: EventRecorder,
        agent: AgentClient | None = None,
    ) -> None:
        self.restores = restores
        self.clusters = clusters
        self.backups = backups
        self.pods = pods
        self.secrets = secrets
        self.kube = kube
        self.recorder = recorder
        self.agent = agent or AgentClient()

    def _pods(self, namespace: str, cluster: str) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        for pod in self.pods.list(namespace, {manifests.LABEL_CLUSTER: cluster}):
            out[str(pod["metadata"]["name"])] = pod
        return out

    async def _status(self, raw: Mapping[str, Any], st: EtcdRestoreStatus) -> None:
        await patch_status(self.kube, ETCDRESTORES, raw, st.to_dict())

    async def reconcile(self, key: str) -> float | None:
        namespace, _, name = key.partition("/")
        raw = self.restores.get_by(namespace, name)
        if raw is None:
            return None
        try:
            r = EtcdRestore.from_dict(raw)
        except InvalidObject as e:
            st = EtcdRestoreStatus.from_dict(raw.get("status"))
            if st.phase != "Failed":
                await self._fail(raw, st, "InvalidSpec", str(e))
            return None
        cluster_raw = self.clusters.get_by(namespace, r.spec.cluster_name)
        cluster = None
        if cluster_raw is not None:
            try:
                cluster = EtcdCluster.from_dict(cluster_raw)
            except InvalidObject:
                cluster = None
        backup = None
        if r.spec.source.backup_name:
            braw = self.backups.get_by(namespace, r.spec.source.backup_name)
            if braw is not None:
                try:
                    backup = EtcdBackup.from_dict(braw)
                except InvalidObject:
                    backup = None
        annotations = ((cluster_raw or {}).get("metadata") or {}).get("annotations")
        pods = self._pods(namespace, r.spec.cluster_name)
        token = cluster_token(self.secrets, namespace, r.spec.cluster_name)
        step = decide(r, cluster, annotations, backup, pods, token)
        log.info("reconcile", extra={"restore": key, "step": type(step).__name__})
        match step:
            case Nothing():
                return None
            case Fail(reason=reason, message=message):
                await self._fail(raw, r.status, reason, message)
                return None
            case Wait(reason=reason, message=message, seconds=seconds, phase=phase):
                want = phase or r.status.phase or "Pending"
                if (r.status.reason, r.status.message, r.status.phase) != (reason, message, want):
                    st = dataclasses.replace(r.status, phase=want, reason=reason, message=message)
                    await self._status(raw, st)
                    if r.status.reason != reason:
                        await self.recorder.normal(raw, reason, message)
                return seconds
            case Check(member=m, source=source):
                assert cluster is not None
                return await self._check(raw, r, cluster, source, m.name, m.ip, token or "")
            case Start(source=source, verdict=verdict):
                assert cluster_raw is not None
                return await self._start(raw, r, cluster_raw, source, verdict)
            case Succeed(message=message):
                st = dataclasses.replace(
                    r.status, phase="Succeeded", reason="", message=message, completion_time=now()
                )
                st = with_condition(
                    st,
                    Condition(type="Complete", status="True", reason="Restored", message=message),
                    now(),
                )
                await self._status(raw, st)
                await self.recorder.normal(raw, "Restored", message)
                log.info("restore succeeded", extra={"restore": key, "detail": message})
                return None
        return None  # pragma: no cover - every step is matched above

    async def _fail(
        self, raw: Mapping[str, Any], st: EtcdRestoreStatus, reason: str, message: str
    ) -> None:
        st = dataclasses.replace(
            st, phase="Failed", reason=reason, message=message, completion_time=now()
        )
        st = with_condition(
            st, Condition(type="Complete", status="False", reason=reason, message=message), now()
        )
        await self._status(raw, st)
        await self.recorder.warning(raw, "RestoreFailed", f"{reason}: {message}")
        meta = raw.get("metadata") or {}
        where = f"{meta.get('namespace')}/{meta.get('name')}"
        log.warning("restore failed", extra={"restore": where, "reason": reason, "error": message})

    async def _check(
        self,
        raw: Mapping[str, Any],
        r: EtcdRestore,
        cluster: EtcdCluster,
        source: Source,
        member: str,
        ip: str,
        token: str,
    ) -> float | None:
        checking = dataclasses.replace(
            r.status,
            phase="Checking",
            reason="",
            message=f"member {member}'s agent is checking {source.metadata_key}",
            metadata_key=source.metadata_key,
        )
        if r.status.phase != "Checking":
            await self._status(raw, checking)
            await self.recorder.normal(raw, "CheckStarted", checking.message)
        spec = EtcdBackupSpec(
            cluster_name=cluster.name, storage=source.storage, encryption=source.encryption
        )
        reply = await self.agent.verify(ip, token, spec, source.metadata_key)
        if reply.status in (0, 409):  # unreachable or busy: look again, nothing was touched
            st = dataclasses.replace(checking, reason=reply.reason, message=reply.message)
            await self._status(raw, st)
            return 10.0
        body = reply.body
        if reply.status != 200 or not body.get("verified"):
            reason = reply.reason if reply.status != 200 else str(body.get("reason") or "Invalid")
            message = reply.message if reply.status != 200 else str(body.get("message") or "")
            await self._fail(
                raw,
                checking,
                reason,
                f"{source.metadata_key} refused, cluster {cluster.name} left untouched: {message}",
            )
            return None
        version = str(body.get("etcdVersion") or "")
        st = dataclasses.replace(
            checking,
            message=f"{source.metadata_key} checked by member {member}",
            snapshot_key=str(body.get("snapshotKey") or ""),
            sha256=str(body.get("sha256") or ""),
            etcd_version=version,
            revision=int(body.get("revision") or 0),
            key_count=int(body.get("keyCount") or 0),
            checked_by=member,
        )
        refusal = version_refusal(version, cluster.spec.version) if version else None
        if refusal is not None:
            await self._fail(raw, st, "VersionMismatch", f"cluster left untouched: {refusal}")
            return None
        msg = (
            f"sha256, etcd's digest and a restore drill passed: revision {st.revision}, "
            f"{st.key_count} keys, etcd {version}"
        )
        st = with_condition(
            st, Condition(type="Checked", status="True", reason="DrillPassed", message=msg), now()
        )
        await self._status(raw, st)
        await self.recorder.normal(raw, "SourceChecked", msg)
        return 0.1

    async def _start(
        self,
        raw: Mapping[str, Any],
        r: EtcdRestore,
        cluster_raw: Mapping[str, Any],
        source: Source,
        verdict: Verdict,
    ) -> float | None:
        s = source.storage
        req = RestoreRequest(
            uid=r.uid,
            name=r.name,
            metadata_key=source.metadata_key,
            snapshot_key=verdict.snapshot_key,
            sha256=verdict.sha256,
            revision=verdict.revision,
            bucket=s.bucket,
            endpoint=s.endpoint,
            region=s.region,
            force_path_style=s.force_path_style,
            credentials_secret=s.credentials_secret,
            encryption=source.encryption,
        )
        meta = cluster_raw["metadata"]
        patch = {
            "metadata": {
                "resourceVersion": meta["resourceVersion"],
                "annotations": {ANN_RESTORE: req.to_annotation()},
            }
        }
        await self.kube.patch(ETCDCLUSTERS, meta["name"], patch, meta.get("namespace"))
        message = (
            f"restoring EtcdCluster {meta['name']} in place from {req.snapshot_key} "
            f"(revision {req.revision}): its members are replaced by a seed started from it"
        )
        st = dataclasses.replace(
            r.status,
            phase="Restoring",
            reason="",
            message=message,
            start_time=now(),
            metadata_key=source.metadata_key,
            snapshot_key=verdict.snapshot_key,
            sha256=verdict.sha256,
            revision=verdict.revision,
            key_count=verdict.key_count,
            etcd_version=verdict.etcd_version,
            checked_by=verdict.by,
        )
        await self._status(raw, st)
        await self.recorder.normal(raw, "RestoreStarted", message)
        await self.recorder.normal(
            cluster_raw, "RestoreStarted", f"EtcdRestore {r.name}: {message}"
        )
        return 1.0
