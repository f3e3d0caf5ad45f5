"""Status: what the EtcdCluster says about itself (conditions, phase, members) and the Events
that tell a person what was done, why, or why not."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any

from etcdop.api import EtcdCluster
from etcdop.api.backupstorage import parse_duration
from etcdop.api.etcdcluster import EtcdClusterStatus, RestoreStatus
from etcdop.kube.client import KubeClient
from etcdop.kube.events import EventRecorder
from etcdop.kube.status import patch_status
from etcdop.operator import manifests, metrics
from etcdop.operator.conditions import compute_status, rollout_progress
from etcdop.operator.etcdcluster.cache import ETCDCLUSTERS
from etcdop.operator.model import Observed
from etcdop.operator.planner import (
    Action,
    Done,
    FinishRestore,
    RemoveMember,
    RestoreSeed,
    StartTraffic,
    Wait,
    describe,
)
from etcdop.operator.restorerequest import RestoreRequest

log = logging.getLogger(__name__)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _degraded_reason(status: EtcdClusterStatus) -> str:
    return next((c.reason for c in status.conditions if c.type == "Degraded"), "")


def _degraded_message(status: EtcdClusterStatus) -> str:
    return next((c.message for c in status.conditions if c.type == "Degraded"), "")


def ec_wait_reason(status: EtcdClusterStatus) -> str:
    """The reason of the Progressing condition last written (to avoid an Event per requeue)."""
    for c in status.conditions:
        if c.type == "Progressing":
            return c.reason
    return ""


class Reporter:
    """Writes an EtcdCluster's status (only when it changed) and records its Events."""

    def __init__(self, kube: KubeClient, recorder: EventRecorder, cluster_domain: str) -> None:
        self.kube = kube
        self.recorder = recorder
        self.domain = cluster_domain

    async def write_status(
        self,
        ec: EtcdCluster,
        raw: Mapping[str, Any],
        o: Observed,
        action: Action,
        cluster_id: str,
        refused: str | None = None,
        *,
        restore: RestoreRequest | None = None,
    ) -> EtcdClusterStatus:
        endpoints = tuple(
            manifests.client_url(ec, m.name, self.domain)
            for m in sorted(o.voters, key=lambda m: m.name)
            if m.name
        )
        status = compute_status(
            o,
            action,
            generation=ec.generation,
            now=_now(),
            previous=ec.status,
            client_endpoints=endpoints,
            cluster_id=ec.status.cluster_id or cluster_id,
            refused=refused,
            quorum_loss_timeout=parse_duration(
                ec.spec.recovery.quorum_loss_timeout
            ).total_seconds(),
            restore_hint=(
                "spec.recovery.autoRestore is true: the operator restores the newest verified "
                "EtcdBackup (see the EtcdRestore it creates and its Events)"
                if ec.spec.recovery.auto_restore
                else ""
            ),
        )
        status = _with_restore(status, action, restore, cluster_id)
        if status != ec.status:
            body = status.to_dict()
            if "restore" in body:
                # a merge patch: a restore in progress must not keep the last one's end time
                body["restore"].setdefault("completionTime", None)
            if status.stalled is None and ec.status.stalled is not None:
                body["stalled"] = None  # a merge patch keeps what it does not name
            await patch_status(self.kube, ETCDCLUSTERS, raw, body)
        return status

    async def report(
        self,
        ec: EtcdCluster,
        raw: Mapping[str, Any],
        o: Observed,
        action: Action,
        refused: str | None,
        cluster_id: str,
        *,
        restore: RestoreRequest | None = None,
    ) -> None:
        """The status after ACTION, and an Event for a step taken, refused or a new wait."""
        status = await self.write_status(ec, raw, o, action, cluster_id, refused, restore=restore)
        await self._rollout(ec, raw, o, action, refused, status)
        if isinstance(action, FinishRestore) and refused is None and restore is not None:
            await self.recorder.record(
                raw,
                "Normal",
                "Restored",
                f"restored from {restore.snapshot_key} (EtcdRestore {restore.name}) at revision "
                f"{restore.revision}; seed member {action.member} serves, growing back to "
                f"{ec.spec.size} members",
            )
            return
        if refused is not None:
            log.warning(
                "step refused",
                extra={"cluster": ec.key, "step": describe(action), "error": refused},
            )
            await self.recorder.record(
                raw, "Warning", "StepRefused", f"{describe(action)}: {refused}; will retry"
            )
        elif not isinstance(action, Wait | Done):
            await self.recorder.record(raw, "Normal", action.reason, describe(action))
        elif isinstance(action, Wait) and action.reason != ec_wait_reason(ec.status):
            await self.recorder.record(raw, "Normal", action.reason, action.message)

    async def _rollout(
        self,
        ec: EtcdCluster,
        raw: Mapping[str, Any],
        o: Observed,
        action: Action,
        refused: str | None,
        status: EtcdClusterStatus,
    ) -> None:
        """Metrics and Events of a rollout: started, a member replaced, stalled, finished."""
        before = ec.status
        upgrades = metrics.UPGRADES.labels(ec.namespace, ec.name, "started")
        if status.phase == "Upgrading" and before.phase not in ("Upgrading", "Paused", ""):
            upgrades.inc()
            await self.recorder.record(
                raw, "Normal", "UpgradeStarted", f"rolling the members to {o.spec.version}"
            )
        if before.phase == "Upgrading" and status.phase == "Running":
            metrics.UPGRADES.labels(ec.namespace, ec.name, "finished").inc()
            await self.recorder.record(
                raw, "Normal", "UpgradeFinished", f"every member runs {o.spec.version}"
            )
        stalled = _degraded_reason(status) == "UpgradeStalled"
        if stalled and _degraded_reason(before) != "UpgradeStalled":
            metrics.UPGRADES.labels(ec.namespace, ec.name, "stalled").inc()
            await self.recorder.record(raw, "Warning", "UpgradeStalled", _degraded_message(status))
        if refused is not None:
            return
        now = time.time()
        if isinstance(action, RemoveMember) and action.reason == "Outdated":
            newest = max(
                (p for p in o.pods if not p.deleting and p.pod_hash == o.spec.pod_hash),
                key=lambda p: p.created,
                default=None,
            )
            old = o.pod(action.member)
            took = now - newest.created if newest is not None and newest.created else 0.0
            if took:
                metrics.MEMBER_REPLACE_SECONDS.labels("Surge").observe(took)
            by = f" by {newest.name}" if newest is not None else ""
            await self.recorder.record(
                raw,
                "Normal",
                "MemberReplaced",
                f"member {action.member} ({old.version if old else '?'}) replaced{by} "
                f"({o.spec.version}) in {took:.1f}s",
            )
        if isinstance(action, StartTraffic) and o.spec.strategy == "InPlace":
            if not (rollout_progress(o) or before.phase == "Upgrading"):
                return  # a new cluster's members, not a rollout
            for name in action.members:
                pod = o.pod(name)
                if pod is None or not pod.created:
                    continue
                took = now - pod.created
                metrics.MEMBER_REPLACE_SECONDS.labels("InPlace").observe(took)
                await self.recorder.record(
                    raw,
                    "Normal",
                    "MemberRestarted",
                    f"member {name} restarted in place at {o.spec.version} in {took:.1f}s",
                )

    async def invalid(self, raw: Mapping[str, Any], message: str) -> None:
        """Phase Invalid, with the reason in an Event (once, not on every look)."""
        meta = raw.get("metadata") or {}
        log.warning(
            "invalid EtcdCluster",
            extra={"cluster": f"{meta.get('namespace')}/{meta.get('name')}", "error": message},
        )
        previous = EtcdClusterStatus.from_dict(raw.get("status"))
        if previous.phase != "Invalid":
            await self.recorder.record(raw, "Warning", "InvalidSpec", message)
        status = previous.to_dict()
        status["phase"] = "Invalid"
        status["observedGeneration"] = int(meta.get("generation", 0))
        await patch_status(self.kube, ETCDCLUSTERS, raw, status)


def _with_restore(
    status: EtcdClusterStatus,
    action: Action,
    restore: RestoreRequest | None,
    cluster_id: str,
) -> EtcdClusterStatus:
    """A restore's marks on the status: before its seed exists, the old membership and cluster
    ID are forgotten (the seed founds a new cluster, which a remembered quorum of old voters
    would never confirm) and the restore is recorded as Restoring; once the seed serves, as
    Restored with the new cluster ID."""
    if restore is None:
        return status
    if isinstance(action, RestoreSeed) and action.restore == restore.uid:
        return dataclasses.replace(
            status,
            cluster_id="",
            members=(),
            ready_members=0,
            current_version="",
            restore=RestoreStatus(
                uid=restore.uid,
                name=restore.name,
                phase="Restoring",
                snapshot_key=restore.snapshot_key,
                revision=restore.revision,
                seed=action.member,
            ),
        )
    if isinstance(action, FinishRestore) and action.restore == restore.uid:
        return dataclasses.replace(
            status,
            cluster_id=cluster_id or status.cluster_id,
            restore=RestoreStatus(
                uid=restore.uid,
                name=restore.name,
                phase="Restored",
                snapshot_key=restore.snapshot_key,
                revision=restore.revision,
                seed=action.member,
                completion_time=_now(),
            ),
        )
    return status
