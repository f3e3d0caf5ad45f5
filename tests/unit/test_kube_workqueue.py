"""The work queue: one entry per key, never two workers on one key, backoff per key."""

from __future__ import annotations

import asyncio

import pytest

from etcdop.kube.workqueue import RateLimiter, ShutDown, WorkQueue, process_one, run_workers


async def take(queue: WorkQueue[str], within: float = 2.0) -> str:
    return await asyncio.wait_for(queue.get(), within)


async def test_a_key_added_twice_is_queued_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a", "c", "b"):
        q.add(key)
    assert q.depth == 3
    assert [await take(q) for _ in range(3)] == ["a", "b", "c"]
    assert q.depth == 0


async def test_a_key_readded_while_processing_comes_back_only_when_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert await take(q) == "a"
    q.add("a")
    q.add("a")
    assert q.depth == 0, "a key in a worker's hands must not be handed to another"
    assert q.processing == 1
    q.done("a")
    assert q.depth == 1
    assert await take(q) == "a"
    q.done("a")
    assert q.depth == 0 and q.processing == 0


async def test_done_without_readd_does_not_requeue() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    await take(q)
    q.done("a")
    assert q.depth == 0
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(q.get(), 0.05)


async def test_workers_never_reconcile_one_key_concurrently_and_see_every_readd() -> None:
    q: WorkQueue[str] = WorkQueue()
    active: set[str] = set()
    overlaps: list[str] = []
    runs: dict[str, int] = {}
    all_done = asyncio.Event()
    readds_left = {"a": 3, "b": 3}

    async def reconcile(key: str) -> float | None:
        if key in active:
            overlaps.append(key)
        active.add(key)
        runs[key] = runs.get(key, 0) + 1
        if readds_left[key] > 0:
            readds_left[key] -= 1
            q.add(key)  # a change arrives while we work on this key
        await asyncio.sleep(0)  # let other workers run meanwhile
        active.discard(key)
        if all(v == 0 for v in readds_left.values()) and not active and q.depth == 0:
            all_done.set()
        return None

    workers = asyncio.create_task(run_workers(q, 4, reconcile))
    q.add("a")
    q.add("b")
    await asyncio.wait_for(all_done.wait(), 5)
    q.shutdown()
    await asyncio.wait_for(workers, 5)
    assert overlaps == []
    assert runs == {"a": 4, "b": 4}


async def test_add_after_holds_the_key_back_for_its_delay() -> None:
    q: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_after("a", 0.2)
    assert q.depth == 0 and q.delayed == 1
    assert await take(q) == "a"
    assert loop.time() - start >= 0.2
    assert q.delayed == 0


async def test_the_earlier_of_two_delays_wins() -> None:
    q: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    q.add_after("a", 60)
    q.add_after("a", 0.05)
    q.add_after("a", 30)
    assert await take(q) == "a"
    assert loop.time() - start < 10
    assert q.delayed == 0


async def test_add_after_zero_adds_at_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add_after("a", 0)
    assert q.depth == 1


def test_rate_limiter_doubles_per_key_up_to_the_cap_and_forgets() -> None:
    rl: RateLimiter[str] = RateLimiter(base=0.1, cap=1.0)
    assert [rl.when("a") for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert rl.when("b") == 0.1, "keys back off independently"
    assert rl.failures("a") == 6
    rl.forget("a")
    assert rl.failures("a") == 0
    assert rl.when("a") == 0.1


def test_rate_limiter_survives_very_many_failures() -> None:
    rl: RateLimiter[str] = RateLimiter(base=0.1, cap=5.0)
    for _ in range(2000):
        delay = rl.when("a")
    assert delay == 5.0


def test_rate_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="base"):
        RateLimiter(base=0, cap=1)
    with pytest.raises(ValueError, match="cap"):
        RateLimiter(base=2, cap=1)


async def test_a_failing_reconcile_is_retried_with_growing_backoff_then_forgotten() -> None:
    q: WorkQueue[str] = WorkQueue(RateLimiter(base=0.01, cap=0.05))
    outcomes = iter([RuntimeError("etcd unreachable"), RuntimeError("still"), None])
    seen: list[tuple[str, BaseException | None]] = []

    async def reconcile(key: str) -> float | None:
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome
        return None

    def observe(key: str, seconds: float, error: BaseException | None) -> None:
        assert seconds >= 0
        seen.append((key, error))

    q.add("a")
    await asyncio.wait_for(process_one(q, reconcile, observe), 2)
    assert q.num_requeues("a") == 1 and q.delayed == 1
    await asyncio.wait_for(process_one(q, reconcile, observe), 2)
    assert q.num_requeues("a") == 2
    await asyncio.wait_for(process_one(q, reconcile, observe), 2)
    assert q.num_requeues("a") == 0, "success forgets the failures"
    assert q.depth == 0 and q.delayed == 0
    assert [str(e) if e else None for _, e in seen] == ["etcd unreachable", "still", None]


async def test_a_reconcile_asking_to_look_again_is_requeued_after_that_delay() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")

    async def reconcile(key: str) -> float | None:
        return 0.05

    await asyncio.wait_for(process_one(q, reconcile), 2)
    assert q.delayed == 1 and q.depth == 0
    assert await take(q) == "a"


async def test_shutdown_wakes_waiting_workers_and_drops_delayed_keys() -> None:
    q: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0)  # let the waiter block (ordering only; no timing relied on)
    q.add_after("later", 60)
    q.shutdown()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiter, 2)
    assert q.delayed == 0
    q.add("a")
    assert q.depth == 0, "a queue that shut down takes no new keys"
    with pytest.raises(ShutDown):
        await q.get()


async def test_run_workers_returns_when_the_queue_shuts_down() -> None:
    q: WorkQueue[str] = WorkQueue(name="clusters")
    handled: list[str] = []

    async def reconcile(key: str) -> float | None:
        handled.append(key)
        if key == "last":
            q.shutdown()
        return None

    for key in ("x", "y", "last"):
        q.add(key)
    await asyncio.wait_for(run_workers(q, 1, reconcile), 5)
    assert handled == ["x", "y", "last"]


async def test_run_workers_needs_a_worker() -> None:
    q: WorkQueue[str] = WorkQueue()

    async def reconcile(key: str) -> float | None:
        return None

    with pytest.raises(ValueError, match="at least one worker"):
        await run_workers(q, 0, reconcile)


async def test_oldest_wait_reports_time_a_ready_key_has_waited() -> None:
    q: WorkQueue[str] = WorkQueue()
    assert q.oldest_wait() == 0.0
    q.add("a")
    assert q.oldest_wait() >= 0.0
    await take(q)
    assert q.oldest_wait() == 0.0


async def test_a_cancelled_reconcile_leaves_its_key_queued_for_the_next_leader() -> None:
    q: WorkQueue[str] = WorkQueue()
    started = asyncio.Event()

    async def reconcile(key: str) -> float | None:
        started.set()
        await asyncio.Future()  # an etcd call in flight when leadership is lost
        return None

    q.add("ns/demo")
    workers = asyncio.create_task(run_workers(q, 2, reconcile))
    await asyncio.wait_for(started.wait(), 2)
    assert q.depth == 0 and q.processing == 1
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers
    assert q.processing == 0
    assert q.depth == 1, "the interrupted key is queued again, not lost"
    assert await take(q) == "ns/demo"
