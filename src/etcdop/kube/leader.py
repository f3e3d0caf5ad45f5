"""Leader election on a coordination.k8s.io/v1 Lease, so that of several operator replicas only
one reconciles, and another takes over within one lease period when it dies.

As in client-go, a lease counts as expired when its record has not changed for
leaseDurationSeconds of *our* clock since we first saw it, never by comparing the holder's
renewTime with our wall clock: clocks of two machines may disagree, durations measured locally
do not. Every write carries the resourceVersion it was based on, so of two candidates racing for
a free lease one wins and the other gets a 409.

Our own hold is measured from the moment a successful renewal was *sent*: a candidate cannot have
seen that write before we sent it, so it cannot take over before send time + leaseDuration of its
clock. We step down once send time + renewDeadline passes without a newer renewal, checked
before every sleep, and cancel the work run under the lease at that moment: the gap
leaseDuration - renewDeadline is what the work has to stop in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from etcdop.kube.client import LEASES, ConflictError, KubeClient, KubeError, Obj, micro_time

log = logging.getLogger("etcdop.kube.leader")


async def _first(*aws: Awaitable[object]) -> None:
    """Wait until the first of AWS is done; the others are left alone (helpers cancelled)."""
    tasks = [a if isinstance(a, asyncio.Future) else asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t, a in zip(tasks, aws, strict=True):
            if t is not a:
                t.cancel()


class LeaderElector:
    """Campaigns for the Lease NAMESPACE/NAME as IDENTITY (unique per process: a pod name plus a
    random suffix). ``is_leader`` is set while we hold it; ON_STARTED/ON_STOPPED are called as
    that changes. A leader whose renewals fail for RENEW_DEADLINE seconds from the last good one's
    send time steps down, which is before LEASE_DURATION lets another replica take over."""

    def __init__(
        self,
        client: KubeClient,
        name: str,
        namespace: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started: Callable[[], None] | None = None,
        on_stopped: Callable[[], None] | None = None,
        release_on_cancel: bool = True,
    ) -> None:
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError(
                f"leader election for lease {namespace}/{name}: need lease_duration "
                f"({lease_duration}) > renew_deadline ({renew_deadline}) > retry_period "
                f"({retry_period}) > 0"
            )
        if not identity:
            raise ValueError(f"leader election for lease {namespace}/{name}: identity is empty")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.release_on_cancel = release_on_cancel
        self.is_leader = asyncio.Event()
        self._follower = asyncio.Event()
        self._follower.set()
        self.holder: str | None = None  # the holder as last seen (for logs and status)
        self._lease: Obj | None = None
        self._observed_rv: str | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0  # loop time the last successful acquire or renewal was sent
        self._work: asyncio.Task[None] | None = None  # what ``lead`` runs; cancelled on loss

    def __str__(self) -> str:
        return f"lease {self.namespace}/{self.name} ({self.identity})"

    async def run(self) -> None:
        """Campaign, lead, and campaign again after losing, until cancelled; on cancellation a
        leader hands the lease back so that a successor need not wait for it to expire."""
        try:
            while True:
                await self._acquire()
                self._set_leader(True)
                await self._renew_until_lost()
                self._set_leader(False)
        finally:
            if self.is_leader.is_set():
                self._set_leader(False)
                if self.release_on_cancel:
                    with contextlib.suppress(KubeError, TimeoutError):
                        async with asyncio.timeout(self.retry_period):
                            await asyncio.shield(self.release())

    async def lead(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Campaign, and run WORK (the controllers) only while leading: it is cancelled the
        moment leadership is lost (in the same step that clears ``is_leader``), and started
        afresh when it is won again. Returns (or raises) when WORK does by itself; cancelling
        this releases the lease."""
        election = asyncio.create_task(self.run(), name=f"election {self}")
        try:
            while True:
                await _first(self.is_leader.wait(), election)
                if election.done():
                    election.result()
                if not self.is_leader.is_set():
                    continue  # lost again before the work could start
                worker = asyncio.create_task(work(), name=f"leading {self}")
                self._work = worker
                try:
                    await _first(self._follower.wait(), election, worker)
                finally:
                    self._work = None
                    worker.cancel()
                    await self._wait_stopped(worker)
                if worker.cancelled() or not self.is_leader.is_set() or election.done():
                    self._log_stopped(worker)
                    continue
                worker.result()  # WORK ended by itself, or failed, while leading: so do we
                return
        finally:
            election.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await election

    async def _wait_stopped(self, worker: asyncio.Task[None]) -> None:
        """Wait for the cancelled WORKER; complain if it outlives the lease, which another
        replica may then hold while this one still acts."""
        grace = self.lease_duration - self.renew_deadline
        await asyncio.wait([worker], timeout=grace)
        if not worker.done():
            log.error(
                "%s: the work has not stopped %.1fs after leadership was lost; another replica "
                "may be acting too: make it honour cancellation",
                self,
                grace,
                extra={"lease": f"{self.namespace}/{self.name}", "grace": grace},
            )
            await asyncio.wait([worker])

    def _log_stopped(self, worker: asyncio.Task[None]) -> None:
        error = None if worker.cancelled() else worker.exception()
        if error is not None:
            log.warning("%s: the work failed while stopping: %r", self, error)
        log.warning("%s: stopped the work of the leader", self)

    async def release(self) -> None:
        """Hand the lease back: an empty holder that any candidate may take at once."""
        lease = self._lease
        for _ in range(2):  # our last renewal may have landed unseen (cancelled mid-request)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = dict(
                lease["spec"], holderIdentity="", leaseDurationSeconds=1, renewTime=micro_time()
            )
            try:
                self._lease = await self.client.replace(
                    LEASES, dict(lease, spec=spec), self.namespace
                )
            except ConflictError:
                lease = await self.client.get(LEASES, self.name, self.namespace)
                continue
            log.info("%s: released", self)
            return

    def _set_leader(self, leading: bool) -> None:
        if leading == self.is_leader.is_set():
            return
        callback = self.on_started if leading else self.on_stopped
        if leading:
            self.is_leader.set()
            self._follower.clear()
            log.info("%s: became leader", self)
        else:
            self.is_leader.clear()
            self._follower.set()
            if self._work is not None:
                self._work.cancel()  # now, not when the lead task next runs
            log.warning("%s: lost leadership", self)
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("%s: leadership callback failed", self)

    async def _acquire(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.renew_deadline):
                    if await self.try_acquire_or_renew():
                        return
            except (KubeError, TimeoutError) as e:
                log.warning("%s: could not read or write the lease: %s", self, e)
            await asyncio.sleep(self.retry_period * (1 + 0.2 * random.random()))

    async def _renew_until_lost(self) -> None:
        """Renew every retry_period until the lease is taken, or until renew_deadline has
        passed since the last successful renewal was sent: the deadline is checked before each
        attempt and no sleep or attempt runs past it."""
        loop = asyncio.get_running_loop()
        while True:
            deadline = self._renewed_at + self.renew_deadline
            pause = min(self.retry_period, deadline - loop.time())
            if pause > 0:
                await asyncio.sleep(pause)
            left = deadline - loop.time()
            if left <= 0:
                log.warning(
                    "%s: not renewed within the renew deadline (%.1fs); stepping down",
                    self,
                    self.renew_deadline,
                    extra={"lease": f"{self.namespace}/{self.name}"},
                )
                return
            try:
                async with asyncio.timeout(left):
                    if not await self.try_acquire_or_renew():
                        return  # someone else holds it now
            except (KubeError, TimeoutError) as e:
                log.warning("%s: renewal failed: %s", self, e)

    async def try_acquire_or_renew(self) -> bool:
        """One round: take the lease if it is free, expired or already ours; False if another
        holder is live (or won the race for it). On success our hold counts from the time
        this round started, before any request of it was sent."""
        sent = asyncio.get_running_loop().time()
        held = await self._try_acquire_or_renew()
        if held:
            self._renewed_at = sent
        return held

    async def _try_acquire_or_renew(self) -> bool:
        now = micro_time()
        if self._lease is not None and self.is_leader.is_set():
            try:  # the common case: renew from what we wrote last, one request
                return self._observe(await self._write(self._lease, now))
            except ConflictError:
                pass  # someone else wrote it: read it and judge afresh
        lease = await self.client.get(LEASES, self.name, self.namespace)
        if lease is None:
            body: Obj = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec({}, now),
            }
            try:
                return self._observe(await self.client.create(LEASES, body, self.namespace))
            except ConflictError:
                return False  # another candidate created it first
        self._observe(lease)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        loop = asyncio.get_running_loop()
        if holder and holder != self.identity and loop.time() < self._observed_at + duration:
            return False
        if holder and holder != self.identity:
            log.info("%s: lease of %s expired, taking over", self, holder)
        try:
            return self._observe(await self._write(lease, now))
        except ConflictError:
            return False

    async def _write(self, lease: Obj, now: str) -> Obj:
        body = dict(lease, spec=self._spec(lease.get("spec") or {}, now))
        return await self.client.replace(LEASES, body, self.namespace)

    def _spec(self, old: Obj, now: str) -> Obj:
        spec = dict(old)
        if old.get("holderIdentity") != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + (1 if old else 0)
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = math.ceil(self.lease_duration)
        spec["renewTime"] = now
        return spec

    def _observe(self, lease: Obj) -> bool:
        """Remember LEASE and when its record last changed; True when we hold it."""
        rv = (lease.get("metadata") or {}).get("resourceVersion")
        if rv != self._observed_rv:
            self._observed_rv = rv
            self._observed_at = asyncio.get_running_loop().time()
        self._lease = lease
        self.holder = (lease.get("spec") or {}).get("holderIdentity") or None
        return self.holder == self.identity
