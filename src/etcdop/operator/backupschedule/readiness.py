"""The EtcdCluster's BackupReady condition (pure): the last scheduled backup succeeded, passed
its drill when one was asked for, and is recent (for the latest or the previous schedule time)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from etcdop.api.etcdcluster import Condition
from etcdop.operator.backupschedule.schedule import previous_slot


@dataclass(frozen=True)
class Finished:
    name: str
    slot: dt.datetime
    phase: str
    reason: str
    message: str
    verified: bool | None
    verify: bool


def backup_ready(schedule: str, finished: Sequence[Finished], now: dt.datetime) -> Condition:
    def cond(status: str, reason: str, message: str) -> Condition:
        return Condition(type="BackupReady", status=status, reason=reason, message=message)

    if not finished:
        return cond("Unknown", "NoBackupYet", "no scheduled backup has finished yet")
    last = max(finished, key=lambda b: b.slot)
    if last.phase == "Failed":
        return cond("False", "BackupFailed", f"{last.name} failed: {last.reason}: {last.message}")
    if last.verify and last.verified is False:
        return cond("False", "VerificationFailed", f"{last.name} failed its restore drill")
    latest_slot = previous_slot(schedule, now + dt.timedelta(microseconds=1))
    if last.slot < previous_slot(schedule, latest_slot):
        return cond(
            "False",
            "BackupStale",
            f"the last successful scheduled backup, {last.name}, is for "
            f"{last.slot:%Y-%m-%dT%H:%M}Z; later schedule times have no backup",
        )
    if last.verify and last.verified is None:
        return cond("True", "BackupSucceeded", f"{last.name} succeeded; its drill is pending")
    drill = ", verified by a restore drill" if last.verified else ""
    return cond("True", "BackupSucceeded", f"{last.name} succeeded{drill}")
