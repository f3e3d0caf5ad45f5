"""The schedule reconciler: for an EtcdCluster with spec.backup.schedule, make the EtcdBackup
that is due, prune old ones, and report BackupReady. Everything it remembers is in the world:
the schedule time of each scheduled backup is an annotation on it."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from etcdop.api import EtcdCluster, InvalidObject
from etcdop.api.backupstorage import ClusterBackup, parse_duration
from etcdop.api.etcdcluster import Condition
from etcdop.api.schema import encode
from etcdop.kube.client import ConflictError, KubeClient, Obj
from etcdop.kube.events import EventRecorder
from etcdop.kube.store import Store
from etcdop.operator.backupschedule.readiness import Finished, backup_ready
from etcdop.operator.backupschedule.retention import Scheduled, to_prune
from etcdop.operator.backupschedule.schedule import backup_name, due
from etcdop.operator.etcdbackup.cache import (
    ANN_SCHEDULED_AT,
    ETCDBACKUPS,
    LABEL_SCHEDULED,
    cluster_backup,
)
from etcdop.operator.etcdcluster.cache import ETCDCLUSTERS

log = logging.getLogger(__name__)

MAX_SLEEP = 300.0
"""Look at least this often (seconds), whatever the schedule: the condition ages."""


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def scheduled_backup(ec: EtcdCluster, backup: ClusterBackup, slot: dt.datetime) -> Obj:
    return cluster_backup(
        ec,
        backup,
        backup_name(ec.name, slot),
        labels={LABEL_SCHEDULED: "true"},
        annotations={ANN_SCHEDULED_AT: rfc3339(slot)},
        deletion_policy="Delete",  # pruned with its objects, as CronJob prunes Jobs
    )


class ScheduleReconciler:
    def __init__(
        self, clusters: Store, backups: Store, kube: KubeClient, recorder: EventRecorder
    ) -> None:
        self.clusters = clusters
        self.backups = backups
        self.kube = kube
        self.recorder = recorder

    def _owned(self, ec: EtcdCluster) -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = []
        for b in self.backups:
            meta = b.get("metadata") or {}
            refs = meta.get("ownerReferences") or []
            if (
                meta.get("namespace") == ec.namespace
                and (meta.get("labels") or {}).get(LABEL_SCHEDULED) == "true"
                and any(r.get("uid") == ec.uid for r in refs)
                and (meta.get("annotations") or {}).get(ANN_SCHEDULED_AT)
            ):
                out.append(b)
        return out

    async def reconcile(self, key: str, now: dt.datetime | None = None) -> float | None:
        namespace, _, name = key.partition("/")
        raw = self.clusters.get_by(namespace, name)
        if raw is None:
            return None
        try:
            ec = EtcdCluster.from_dict(raw)
        except InvalidObject:
            return None  # the cluster controller reports it
        backup = ec.spec.backup
        if ec.being_deleted or backup is None or not backup.schedule or ec.validate():
            return None
        now = now or dt.datetime.now(dt.UTC)
        owned = self._owned(ec)
        slots = {
            str(b["metadata"]["name"]): parse_time(b["metadata"]["annotations"][ANN_SCHEDULED_AT])
            for b in owned
        }
        created = str((raw.get("metadata") or {}).get("creationTimestamp") or rfc3339(now))
        last = max(slots.values(), default=parse_time(created))
        when = due(backup.schedule, last, now)
        unfinished = [
            b for b in owned if (b.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        if when.slot is not None:
            if unfinished:
                log.info(
                    "scheduled backup waits for the previous one",
                    extra={"cluster": key, "running": unfinished[0]["metadata"]["name"]},
                )
            else:
                await self._create(raw, ec, backup, when.slot)
        await self._prune(raw, ec, backup, owned, slots, now)
        try:
            await self._report(raw, ec, backup.schedule, owned, slots, now)
        except ConflictError:
            return 1.0  # the cluster changed since it was read: look again with the new one
        if when.slot is not None and unfinished:
            return 5.0
        return min(max((when.next - now).total_seconds(), 0.0) + 0.5, MAX_SLEEP)

    async def _create(
        self, raw: Mapping[str, Any], ec: EtcdCluster, backup: ClusterBackup, slot: dt.datetime
    ) -> None:
        obj = scheduled_backup(ec, backup, slot)
        try:
            await self.kube.create(ETCDBACKUPS, obj)
        except ConflictError:
            return  # made already (by us before a restart): one object per schedule time
        name = obj["metadata"]["name"]
        log.info("scheduled backup created", extra={"cluster": ec.key, "backup": name})
        await self.recorder.normal(raw, "BackupScheduled", f"EtcdBackup {name} for {rfc3339(slot)}")

    async def _prune(
        self,
        raw: Mapping[str, Any],
        ec: EtcdCluster,
        backup: ClusterBackup,
        owned: list[Mapping[str, Any]],
        slots: dict[str, dt.datetime],
        now: dt.datetime,
    ) -> None:
        listed = [
            Scheduled(n, slots[n], str((b.get("status") or {}).get("phase", "")))
            for b in owned
            if not (b.get("metadata") or {}).get("deletionTimestamp")
            for n in [str(b["metadata"]["name"])]
        ]
        max_age = parse_duration(backup.retention.max_age) if backup.retention.max_age else None
        for name in to_prune(listed, backup.retention.keep_last, max_age, now):
            await self.kube.delete(ETCDBACKUPS, name, ec.namespace)
            log.info("scheduled backup pruned", extra={"cluster": ec.key, "backup": name})
            await self.recorder.normal(
                raw, "BackupPruned", f"EtcdBackup {name} deleted by retention"
            )

    async def _report(
        self,
        raw: Mapping[str, Any],
        ec: EtcdCluster,
        schedule: str,
        owned: list[Mapping[str, Any]],
        slots: dict[str, dt.datetime],
        now: dt.datetime,
    ) -> None:
        finished = []
        for b in owned:
            st, name = b.get("status") or {}, str(b["metadata"]["name"])
            if st.get("phase") in ("Succeeded", "Failed"):
                finished.append(
                    Finished(
                        name,
                        slots[name],
                        str(st["phase"]),
                        str(st.get("reason", "")),
                        str(st.get("message", "")),
                        st.get("verified"),
                        bool((b.get("spec") or {}).get("verify")),
                    )
                )
        cond = backup_ready(schedule, finished, now)
        await write_condition(self.kube, raw, ec, cond, rfc3339(now))


async def write_condition(
    kube: KubeClient, raw: Mapping[str, Any], ec: EtcdCluster, c: Condition, now: str
) -> None:
    """Replace one condition in the EtcdCluster's status, conditional on the version read, and
    only when it changed (the cluster controller keeps conditions it does not compute)."""
    before = next((p for p in ec.status.conditions if p.type == c.type), None)
    if before and (before.status, before.reason, before.message) == (c.status, c.reason, c.message):
        return
    when = before.last_transition_time if before and before.status == c.status else now
    mine = encode(
        Condition(
            type=c.type,
            status=c.status,
            reason=c.reason,
            message=c.message,
            last_transition_time=when,
            observed_generation=ec.generation,
        )
    )
    others = [encode(p) for p in ec.status.conditions if p.type != c.type]
    meta = raw["metadata"]
    body = {
        "metadata": {"resourceVersion": meta["resourceVersion"]},
        "status": {"conditions": [*others, mine]},
    }
    await kube.patch(ETCDCLUSTERS, meta["name"], body, meta["namespace"], subresource="status")
