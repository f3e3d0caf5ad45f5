"""A work queue of keys, as controllers need it: a key is queued at most once, is never handed
to two workers at a time (re-added while processing, it comes back once it is done), and a
failing key is retried with per-key exponential backoff."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger("etcdop.kube.workqueue")

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down: workers should return."""


class RateLimiter(Generic[K]):
    """Per-key exponential backoff: BASE, 2*BASE, 4*BASE, ... up to CAP, until ``forget``."""

    def __init__(self, base: float = 0.05, cap: float = 300.0) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"RateLimiter(base={base}, cap={cap}): need 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._failures: dict[K, int] = {}

    def when(self, key: K) -> float:
        """The delay before KEY's next try; counts one more failure of KEY."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay: float = self.base * 2.0 ** min(n, 64)
        return min(self.cap, delay)

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)


class WorkQueue(Generic[K]):
    """De-duplicating FIFO of keys with delayed and rate-limited adds. Not thread-safe: use it
    from one event loop (handlers and workers all run there)."""

    def __init__(self, rate_limiter: RateLimiter[K] | None = None, name: str = "") -> None:
        self.name = name
        self.rate_limiter: RateLimiter[K] = rate_limiter or RateLimiter()
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()  # waiting to be processed (queued, or re-added while busy)
        self._processing: set[K] = set()
        self._delayed: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._added_at: dict[K, float] = {}
        self._wakeup = asyncio.Event()
        self._shutting_down = False

    # -- adding -----------------------------------------------------------------------------

    def add(self, key: K) -> None:
        """Queue KEY unless it already waits; if a worker has it now, it comes back after."""
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        self._added_at.setdefault(key, time.monotonic())
        if key not in self._processing:
            self._queue.append(key)
            self._wakeup.set()

    def add_after(self, key: K, delay: float) -> None:
        """Queue KEY in DELAY seconds; an earlier pending time for KEY wins over a later one."""
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._delayed.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._delayed[key] = (due, loop.call_at(due, self._fire, key))

    def _fire(self, key: K) -> None:
        self._delayed.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: K) -> None:
        """Queue KEY after its backoff, which doubles with each call until ``forget``."""
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: K) -> None:
        """KEY succeeded: its next failure starts again from the base delay."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.rate_limiter.failures(key)

    # -- taking -----------------------------------------------------------------------------

    async def get(self) -> K:
        """The next key; the caller owns it until ``done(key)``. Raises ShutDown."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._shutting_down:
            raise ShutDown(self.name)
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        self._added_at.pop(key, None)
        return key

    def done(self, key: K) -> None:
        """The worker finished KEY; if it was added again meanwhile, queue it now."""
        self._processing.discard(key)
        if key in self._dirty:
            self._added_at.setdefault(key, time.monotonic())
            self._queue.append(key)
            self._wakeup.set()

    # -- state ------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Keys ready and waiting for a worker (the work-queue depth metric)."""
        return len(self._queue)

    @property
    def delayed(self) -> int:
        """Keys waiting for their delay or backoff to pass."""
        return len(self._delayed)

    @property
    def processing(self) -> int:
        return len(self._processing)

    def oldest_wait(self) -> float:
        """Seconds the longest-waiting ready key has waited (0 when none waits)."""
        if not self._added_at:
            return 0.0
        return time.monotonic() - min(self._added_at.values())

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def shutdown(self) -> None:
        """Stop handing out keys (workers get ShutDown) and drop every delayed add."""
        self._shutting_down = True
        for _, timer in self._delayed.values():
            timer.cancel()
        self._delayed.clear()
        self._wakeup.set()


Reconcile = Callable[[K], Awaitable[float | None]]
Observer = Callable[[K, float, BaseException | None], None]


async def process_one(
    queue: WorkQueue[K], reconcile: Reconcile[K], observe: Observer[K] | None = None
) -> None:
    """Take one key and reconcile it. RECONCILE returns None (done until the next change) or
    seconds after which to look again; an exception retries the key with backoff. A reconcile
    cancelled midway (leadership lost) leaves its key queued: its work is not done."""
    key = await queue.get()
    started = time.monotonic()
    error: BaseException | None = None
    try:
        requeue_after = await reconcile(key)
    except asyncio.CancelledError:
        queue.add(key)  # comes back on done(): for whoever runs this queue next
        queue.done(key)
        raise
    except Exception as e:
        error = e
        log.exception(
            "reconcile %s failed (%d failures before); retrying with backoff",
            key,
            queue.num_requeues(key),
        )
        queue.add_rate_limited(key)
    else:
        queue.forget(key)
        if requeue_after is not None:
            queue.add_after(key, requeue_after)
    queue.done(key)
    if observe is not None:
        try:
            observe(key, time.monotonic() - started, error)
        except Exception:
            log.exception("observer of reconcile %s failed", key)


async def run_workers(
    queue: WorkQueue[K], n: int, reconcile: Reconcile[K], observe: Observer[K] | None = None
) -> None:
    """Run N workers over QUEUE until it shuts down (or this is cancelled). OBSERVE, if given,
    hears of each reconcile's key, duration and error (for metrics)."""
    if n < 1:
        raise ValueError(f"run_workers: n={n}; need at least one worker")

    async def worker() -> None:
        while True:
            try:
                await process_one(queue, reconcile, observe)
            except ShutDown:
                return

    async with asyncio.TaskGroup() as group:
        for i in range(n):
            group.create_task(worker(), name=f"{queue.name or 'queue'}-worker-{i}")
