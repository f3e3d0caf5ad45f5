"""When a scheduled backup is due (pure). Like CronJob: a schedule missed while the operator was
down runs once, for the latest missed time, not once per missed time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from croniter import croniter


@dataclass(frozen=True)
class Due:
    slot: dt.datetime | None
    """The schedule time to back up for now (the latest one after LAST), or None."""
    next: dt.datetime
    """The first schedule time after NOW: when to look again."""


def due(schedule: str, last: dt.datetime, now: dt.datetime) -> Due:
    """LAST is the schedule time of the newest scheduled backup (or when the schedule began)."""
    following = croniter(schedule, now).get_next(dt.datetime)
    latest = croniter(schedule, now + dt.timedelta(microseconds=1)).get_prev(dt.datetime)
    return Due(latest if latest > last else None, following)


def previous_slot(schedule: str, at: dt.datetime) -> dt.datetime:
    """The schedule time before AT (AT itself excluded)."""
    result: dt.datetime = croniter(schedule, at).get_prev(dt.datetime)
    return result


def backup_name(cluster: str, slot: dt.datetime) -> str:
    """Named by time, so a second operator (or a restarted one) makes the same object, not two."""
    return f"{cluster}-{slot.astimezone(dt.UTC):%Y%m%d-%H%M}"
