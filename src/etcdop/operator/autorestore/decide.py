"""Whether to restore a cluster by itself, and from what (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from etcdop.api import EtcdCluster
from etcdop.api.etcdbackup import EtcdBackup
from etcdop.operator.conditions import QUORUM_LOST
from etcdop.operator.restorerequest import pending_restore

LABEL_AUTO = "etcdop.io/auto-restore"
ANN_FINAL_BACKUP = "etcdop.io/final-backup"
"""On the cluster: the quorum-loss time whose final backup from a survivor was attempted."""


@dataclass(frozen=True)
class Survivor:
    """A member pod still running whose agent mounts the cluster's storage Secret."""

    name: str
    ip: str


@dataclass(frozen=True)
class FinalBackup:
    """Before an automatic restore replaces it: a backup of what a survivor still holds."""

    member: Survivor
    since: str


@dataclass(frozen=True)
class CreateRestore:
    name: str
    backup: EtcdBackup
    since: str


@dataclass(frozen=True)
class NoBackup:
    message: str


@dataclass(frozen=True)
class Idle:
    pass


Decision = CreateRestore | FinalBackup | NoBackup | Idle


def newest_verified(backups: Iterable[EtcdBackup], cluster: str) -> EtcdBackup | None:
    """The cluster's newest backup whose restore drill passed (by its revision, then time)."""
    good = [
        b
        for b in backups
        if b.spec.cluster_name == cluster and b.status.phase == "Succeeded" and b.status.verified
    ]
    return max(
        good, key=lambda b: (b.status.revision, b.status.completion_time or ""), default=None
    )


def decide(
    ec: EtcdCluster,
    annotations: Mapping[str, Any] | None,
    backups: Iterable[EtcdBackup],
    unfinished_restores: int,
    survivors: Iterable[Survivor] = (),
) -> Decision:
    """What to do about a lost quorum: nothing, say there is no backup, first back up a
    survivor's data (once per loss, whatever comes of it), or create the EtcdRestore."""
    if not ec.spec.recovery.auto_restore or ec.being_deleted:
        return Idle()
    lost = next((c for c in ec.status.conditions if c.type == QUORUM_LOST), None)
    if lost is None or lost.status != "True":
        return Idle()
    if pending_restore(annotations, ec.status) is not None or unfinished_restores:
        return Idle()
    backup = newest_verified(backups, ec.name)
    since = lost.last_transition_time or ""
    if backup is None:
        return NoBackup(
            f"quorum lost since {since} and spec.recovery.autoRestore is true, but EtcdCluster "
            f"{ec.name} has no verified EtcdBackup (phase Succeeded, verified true) to restore; "
            "take one with verify: true, or restore by hand with an EtcdRestore"
        )
    stamp = stamp_of(since)
    alive = sorted(survivors, key=lambda s: s.name)
    if alive and ec.spec.backup is not None and (annotations or {}).get(ANN_FINAL_BACKUP) != stamp:
        return FinalBackup(alive[0], since)
    return CreateRestore(f"{ec.name}-auto-{stamp}"[:253], backup, since)


def stamp_of(since: str) -> str:
    return "".join(ch for ch in since if ch.isdigit())[:14]
