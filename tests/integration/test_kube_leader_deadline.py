"""Leader election when renewals go wrong, against the real API server: a leader whose lease
writes are slow, hang or fail stops its work (in-flight reconciles cancelled) within the renew
deadline counted from when its last good renewal was *sent*, before anyone could take over.

The faults are injected by a wrapper of our own client around the real API: the renewal reaches
(or does not reach) the real server; only its timing or its answer is changed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Literal

import kr8s.asyncio
import pytest

from etcdop.kube.client import LEASES, NAMESPACES, KubeClient, Obj, Resource, TransportError
from etcdop.kube.leader import LeaderElector
from etcdop.kube.workqueue import WorkQueue, run_workers

pytestmark = pytest.mark.cluster

LEASE = 3.0
RENEW = 2.0
SLOW = 1.2  # how late the answer to a slow renewal comes; RENEW + SLOW > LEASE
MARGIN = 0.3  # event-loop latency allowed past the renew deadline

Fault = Literal["ok", "slow", "hang", "fail"]


class FaultyLeases(KubeClient):
    """Our client on the real API server, whose lease writes behave as ``plan`` says (then as
    ``then``): "slow" lands but answers SLOW seconds late, "hang" is never sent and never
    answers, "fail" is refused at once. Everything else passes through."""

    def __init__(self, api: kr8s.asyncio.Api) -> None:
        super().__init__(api, timeout=15.0, field_manager="etcdop-test")
        self.plan: deque[Fault] = deque()
        self.then: Fault = "ok"
        self.landed: list[tuple[Fault, float]] = []  # (fault, loop time sent) of good writes
        self.wrote = asyncio.Event()  # set on each good write

    async def replace(
        self, res: Resource, body: Obj, namespace: str | None = None, subresource: str | None = None
    ) -> Obj:
        if res != LEASES:
            return await super().replace(res, body, namespace, subresource)
        fault = self.plan.popleft() if self.plan else self.then
        sent = asyncio.get_running_loop().time()
        if fault == "hang":
            await asyncio.Future()  # cancelled by the elector's deadline
        if fault == "fail":
            raise TransportError("PUT leases: connection refused (injected)")
        out = await super().replace(res, body, namespace, subresource)
        if fault == "slow":
            await asyncio.sleep(SLOW)  # the injected fault: the answer is late, the write landed
        self.landed.append((fault, sent))
        self.wrote.set()
        return out


class Guarded:
    """The leader's work as the operator runs it: workers over a queue, one reconcile in flight
    that only cancellation ends. Records when it was cancelled."""

    def __init__(self) -> None:
        self.reconciling = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.cancelled_at = 0.0

    async def reconcile(self, key: str) -> float | None:
        self.reconciling.set()
        try:
            await asyncio.Future()  # e.g. an etcd member add in flight
        except asyncio.CancelledError:
            self.cancelled_at = asyncio.get_running_loop().time()
            self.cancelled.set()
            raise
        return None

    async def work(self) -> None:
        queue: WorkQueue[str] = WorkQueue(name="guarded")
        queue.add("ns/demo")
        await run_workers(queue, 2, self.reconcile)


@pytest.fixture
async def namespace(kube_api: kr8s.asyncio.Api) -> AsyncIterator[str]:
    kube = KubeClient(kube_api, timeout=15.0)
    name = f"lead-{uuid.uuid4().hex[:8]}"
    await kube.create(NAMESPACES, {"metadata": {"name": name}})
    yield name
    await kube.delete(NAMESPACES, name)


def elector(client: KubeClient, namespace: str, identity: str, **kw: Any) -> LeaderElector:
    kw.setdefault("retry_period", 0.4)
    return LeaderElector(
        client, "etcdop-test", namespace, identity, lease_duration=LEASE, renew_deadline=RENEW, **kw
    )


async def stop(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_late_renewal_answer_does_not_extend_the_leaders_time(
    kube_api: kr8s.asyncio.Api, namespace: str
) -> None:
    """The renewal lands at once but its answer comes SLOW seconds later, then renewals hang:
    the hold counts from the send, so the work stops at send + RENEW, not answer + RENEW
    (which is past LEASE, when the other candidate may take over)."""
    loop = asyncio.get_running_loop()
    faulty = FaultyLeases(kube_api)
    marks: dict[str, float] = {}
    guarded = Guarded()
    one = elector(
        faulty, namespace, "one", on_stopped=lambda: marks.setdefault("one-", loop.time())
    )
    two = elector(
        KubeClient(kube_api, timeout=15.0),
        namespace,
        "two",
        on_started=lambda: marks.setdefault("two+", loop.time()),
    )
    l1 = asyncio.create_task(one.lead(guarded.work))
    await asyncio.wait_for(guarded.reconciling.wait(), 15)
    t2 = asyncio.create_task(two.run())
    try:
        faulty.plan.append("slow")
        faulty.then = "hang"
        await asyncio.wait_for(guarded.cancelled.wait(), RENEW + SLOW + 2)
        fault, last_sent = faulty.landed[-1]
        assert fault == "slow", f"the last renewal that landed was {fault!r}"
        stopped_after = guarded.cancelled_at - last_sent
        assert stopped_after <= RENEW + MARGIN, (
            f"the reconcile was cancelled {stopped_after:.2f}s after the last renewal was sent; "
            f"the renew deadline is {RENEW}s"
        )
        assert marks["one-"] <= guarded.cancelled_at, "on_stopped comes with the cancellation"
        assert not one.is_leader.is_set()
        await asyncio.wait_for(two.is_leader.wait(), LEASE + 3)
        assert marks["two+"] - last_sent >= LEASE, "two never takes over before the lease ran out"
        assert guarded.cancelled_at < marks["two+"], "the old leader stopped before two started"
    finally:
        await stop(l1, t2)


async def test_failing_renewals_step_down_at_the_deadline_not_a_sleep_later(
    kube_api: kr8s.asyncio.Api, namespace: str
) -> None:
    """Renewals refused at once every RETRY: with RETRY = 0.9 the attempts fall at 0.9 and 1.8;
    the leader must step down at RENEW = 2.0, not after sleeping to 2.7."""
    faulty = FaultyLeases(kube_api)
    guarded = Guarded()
    stopped = asyncio.Event()
    one = elector(faulty, namespace, "one", retry_period=0.9, on_stopped=stopped.set)
    l1 = asyncio.create_task(one.lead(guarded.work))
    try:
        await asyncio.wait_for(guarded.reconciling.wait(), 15)
        await asyncio.wait_for(faulty.wrote.wait(), RENEW)  # a renewal landed (not the create)
        faulty.then = "fail"
        await asyncio.wait_for(guarded.cancelled.wait(), RENEW + 2)
        assert stopped.is_set()
        _, last_sent = faulty.landed[-1]
        stopped_after = guarded.cancelled_at - last_sent
        assert stopped_after <= RENEW + MARGIN, (
            f"stepped down {stopped_after:.2f}s after the last renewal was sent, "
            f"past the {RENEW}s renew deadline"
        )
        # the API recovers: the lease is still ours, so we lead and work again
        faulty.then = "ok"
        guarded.reconciling.clear()
        await asyncio.wait_for(guarded.reconciling.wait(), LEASE + 2)
        assert one.is_leader.is_set()
    finally:
        await stop(l1)
