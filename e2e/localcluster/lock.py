"""The machine lock: the local nodes are machine-wide (one pod bridge, cluster DNS on port 53,
one host firewall), so one set of them runs at a time. Whoever starts nodes (a test session,
`up`) holds this flock for as long as they run; another waits for it or is refused."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from pathlib import Path

MACHINE_LOCK = Path("/run/etcdop/local-node.lock")
POLL = 2.0  # seconds between tries: flock has no timeout of its own


class MachineBusy(TimeoutError):
    """Another session's nodes hold the machine; the message says how to free it."""


def try_take() -> int | None:
    """The locked descriptor, or None when another process holds the lock."""
    MACHINE_LOCK.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(MACHINE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


def _busy(within: float) -> MachineBusy:
    return MachineBusy(
        f"another local cluster's nodes (a test session, or `make cluster-up`) hold "
        f"{MACHINE_LOCK} after {within:.0f}s of waiting: wait for it, or run "
        "`python -m e2e.localcluster down` for the cluster that started them"
    )


def take(within: float) -> int:
    """Wait up to WITHIN seconds for the lock; the caller closes the descriptor to release it."""
    deadline = time.monotonic() + within
    while (fd := try_take()) is None:
        if time.monotonic() >= deadline:
            raise _busy(within)
        time.sleep(POLL)
    return fd


async def take_async(within: float) -> int:
    deadline = time.monotonic() + within
    while (fd := try_take()) is None:
        if time.monotonic() >= deadline:
            raise _busy(within)
        await asyncio.sleep(POLL)
    return fd
