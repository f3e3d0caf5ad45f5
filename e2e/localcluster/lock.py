"""The machine lock: the local nodes are machine-wide (one pod bridge, cluster DNS on port 53,
one host firewall, cgroup roots and sockets named by node), so one set of them runs at a time.
Whoever starts nodes (a test session, `up`) holds this flock for as long as they run; another
waits for it or is refused."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import Callable
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
    except BaseException:
        os.close(fd)
        raise


def take(within: float, on_wait: Callable[[float], None] | None = None) -> int:
    """Wait up to WITHIN seconds for the lock, telling ON_WAIT the seconds waited at each try;
    the caller closes the descriptor to release it."""
    t0 = time.monotonic()
    while (fd := try_take()) is None:
        waited = time.monotonic() - t0
        if waited >= within:
            waits = f" after {within:.0f}s of waiting" if within > 0 else ""
            raise MachineBusy(
                f"another local cluster's nodes (a test session, or `make cluster-up`) hold "
                f"{MACHINE_LOCK}{waits}: wait for them to stop, or run `python -m "
                "e2e.localcluster down` with the state dir of the cluster that started them"
            )
        if on_wait is not None:
            on_wait(waited)
        time.sleep(POLL)
    return fd


async def take_async(within: float) -> int:
    return await asyncio.to_thread(take, within)
