"""Scheduled backups: when one is due, which ones retention deletes, and BackupReady."""

from __future__ import annotations

import dataclasses
import datetime as dt

from etcdop.operator.backupschedule.readiness import Finished, backup_ready
from etcdop.operator.backupschedule.retention import Scheduled, to_prune
from etcdop.operator.backupschedule.schedule import backup_name, due

UTC = dt.UTC


def t(h: int, m: int, s: int = 0) -> dt.datetime:
    return dt.datetime(2026, 12, 1, h, m, s, tzinfo=UTC)


def test_nothing_is_due_between_schedule_times() -> None:
    d = due("0 * * * *", last=t(3, 0), now=t(3, 30))
    assert d.slot is None and d.next == t(4, 0)


def test_the_schedule_time_just_reached_is_due() -> None:
    d = due("0 * * * *", last=t(3, 0), now=t(4, 0))
    assert d.slot == t(4, 0) and d.next == t(5, 0)


def test_missed_schedule_times_run_once_for_the_latest() -> None:
    d = due("*/5 * * * *", last=t(1, 0), now=t(3, 7, 30))  # 25 missed times
    assert d.slot == t(3, 5) and d.next == t(3, 10)
    again = due("*/5 * * * *", last=d.slot, now=t(3, 8))  # after it was made: nothing more
    assert again.slot is None


def test_a_new_schedule_starts_from_its_cluster_not_from_the_past() -> None:
    assert due("0 3 * * *", last=t(2, 0), now=t(2, 59)).slot is None
    assert due("0 3 * * *", last=t(2, 0), now=t(3, 0, 1)).slot == t(3, 0)


def test_backups_are_named_by_their_schedule_time() -> None:
    assert backup_name("demo", t(3, 5)) == "demo-20261201-0305"


def sched(name: str, minute: int, phase: str = "Succeeded") -> Scheduled:
    return Scheduled(name, t(3, minute), phase)


def test_keep_last_keeps_the_newest_successful_ones() -> None:
    backups = [sched("a", 1), sched("b", 2), sched("c", 3), sched("d", 4, "Running")]
    assert to_prune(backups, keep_last=2, max_age=None, now=t(3, 5)) == ["a"]


def test_running_backups_are_never_pruned_nor_counted() -> None:
    backups = [sched("a", 1, "Running"), sched("b", 2, "Pending")]
    assert to_prune(backups, keep_last=1, max_age=None, now=t(3, 5)) == []


def test_max_age_never_deletes_the_newest_good_backup() -> None:
    backups = [sched("a", 1), sched("b", 2)]
    assert to_prune(backups, None, dt.timedelta(minutes=1), now=t(4, 0)) == ["a"]


def test_failures_go_once_something_newer_finished_but_good_ones_stay() -> None:
    backups = [sched("a", 1), sched("f1", 2, "Failed"), sched("f2", 3, "Failed")]
    assert to_prune(backups, keep_last=1, max_age=None, now=t(3, 5)) == ["f1"]


def finished(name: str, minute: int, phase: str = "Succeeded", **kw: object) -> Finished:
    plain = Finished(name, t(3, minute), phase, reason="", message="", verified=True, verify=True)
    return dataclasses.replace(plain, **kw)


def test_backup_ready_when_the_last_is_recent_good_and_verified() -> None:
    c = backup_ready("* * * * *", [finished("a", 4)], now=t(3, 5, 10))
    assert (c.status, c.reason) == ("True", "BackupSucceeded")
    assert "verified" in c.message


def test_backup_not_ready_after_a_failure_or_a_failed_drill() -> None:
    failed = finished("b", 4, "Failed", reason="BucketMissing", message="gone")
    c = backup_ready("* * * * *", [finished("a", 3), failed], now=t(3, 4, 30))
    assert (c.status, c.reason) == ("False", "BackupFailed") and "BucketMissing" in c.message
    c = backup_ready("* * * * *", [finished("a", 4, verified=False)], now=t(3, 4, 30))
    assert (c.status, c.reason) == ("False", "VerificationFailed")


def test_backup_not_ready_when_stale() -> None:
    c = backup_ready("* * * * *", [finished("a", 1)], now=t(3, 10))
    assert (c.status, c.reason) == ("False", "BackupStale")


def test_backup_ready_unknown_before_the_first() -> None:
    assert backup_ready("* * * * *", [], now=t(3, 0)).status == "Unknown"
