"""Which scheduled backups to delete (pure): as CronJob keeps a history of Jobs.

Only finished backups are candidates. Successful ones beyond keepLast (newest first) or older
than maxAge go, but never the newest successful one; failed ones go once a newer backup
finished, so the last failure stays visible until something replaces it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Scheduled:
    name: str
    slot: dt.datetime
    phase: str


def to_prune(
    backups: Sequence[Scheduled],
    keep_last: int | None,
    max_age: dt.timedelta | None,
    now: dt.datetime,
) -> list[str]:
    newest_first = sorted(backups, key=lambda b: b.slot, reverse=True)
    good = [b for b in newest_first if b.phase == "Succeeded"]
    prune: list[str] = []
    for i, b in enumerate(good):
        if i == 0:
            continue  # the newest good backup is never pruned
        if (keep_last is not None and i >= keep_last) or (
            max_age is not None and now - b.slot > max_age
        ):
            prune.append(b.name)
    finished = [b for b in newest_first if b.phase in ("Succeeded", "Failed")]
    for i, b in enumerate(finished):
        if b.phase == "Failed" and i > 0:
            prune.append(b.name)
    return sorted(prune)
