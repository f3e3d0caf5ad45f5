"""Background load for the EtcdCluster scenarios: a writer that remembers every acknowledged write,
and a monitor that samples whether a quorum of the voting members is healthy.

Both reach the members by pod IP and re-read the pods as members come and go.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx

from e2e.operator import ApiError, KubeClient, MemberView, member_endpoints, observe_members
from etcdop.etcd import EtcdClient, EtcdError

WRITE_PACE = 0.02  # seconds between writes: a throttle for a 2-core machine, not a sync
SAMPLE_PACE = 0.5  # seconds between monitor samples
REFRESH_EVERY = 2.0  # seconds between re-reads of the pods by the writer


@dataclass
class Writer:
    """Puts `PREFIX/<n>` = n for n = 0, 1, ...; a key counts once etcd acknowledged its put.

    A failed put (timeout, member gone, no leader) is retried with the same key and value after
    re-reading the pods, so an unacknowledged write may or may not exist: only acknowledged ones
    are promised.
    """

    kube: KubeClient
    name: str
    ns: str
    prefix: str = "writer"
    acked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def key(self, n: int) -> str:
        return f"{self.prefix}/{n:08d}"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        n = 0
        client: EtcdClient | None = None
        refreshed = 0.0
        try:
            while not self._stop.is_set():
                if client is None or loop.time() - refreshed > REFRESH_EVERY:
                    endpoints = await member_endpoints(self.kube, self.name, self.ns)
                    if client is None or set(client.endpoints) != set(endpoints.values()):
                        if client is not None:
                            await client.close()
                        client = (
                            EtcdClient(sorted(endpoints.values()), timeout=5.0)
                            if endpoints else None
                        )
                    refreshed = loop.time()
                    if client is None:
                        await asyncio.sleep(SAMPLE_PACE)
                        continue
                key = self.key(n)
                try:
                    await client.put(key, str(n))
                except EtcdError as e:
                    self.errors.append(f"{key}: {e}")
                    refreshed = 0.0  # re-read the pods before the retry
                    await asyncio.sleep(WRITE_PACE)
                    continue
                self.acked.append(key)
                n += 1
                await asyncio.sleep(WRITE_PACE)
        finally:
            if client is not None:
                await client.close()

    def stop(self) -> None:
        self._stop.set()


async def unreadable(kube: KubeClient, name: str, ns: str, keys: list[str]) -> list[str]:
    """The keys of KEYS that a linearizable read does not return with their written value
    (`<prefix>/<n>` holds n); reads go in parallel batches."""
    missing: list[str] = []
    endpoints = await member_endpoints(kube, name, ns)
    async with EtcdClient(sorted(endpoints.values()), timeout=10.0) as client:
        for start in range(0, len(keys), 100):
            batch = keys[start:start + 100]
            values = await asyncio.gather(*(client.get(k) for k in batch))
            for k, v in zip(batch, values, strict=True):
                if v != str(int(k.rsplit("/", 1)[1])).encode():
                    missing.append(f"{k}={v!r}")
    return missing


@dataclass
class QuorumMonitor:
    """Samples the membership and the health of each voting member, continuously.

    A leader change makes linearizable reads fail for a moment even with every member up, so a
    sample without a healthy quorum counts as a violation only when the next sample, taken at
    once, confirms it. Every confirmed violation is kept with what was seen.
    """

    kube: KubeClient
    name: str
    ns: str
    samples: int = 0
    min_healthy_margin: int | None = None  # fewest healthy voters above quorum ever seen
    violations: list[str] = field(default_factory=list)
    unconfirmed: list[str] = field(default_factory=list)
    unobserved: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def sample(self) -> tuple[bool, str]:
        while True:
            try:
                view: MemberView = await observe_members(self.kube, self.name, self.ns)
                break
            except (EtcdError, AssertionError) as e:
                return False, f"no member list: {e}"
            except (ApiError, httpx.HTTPError, TimeoutError) as e:
                # the Kubernetes API, not etcd, failed to answer: this sample saw nothing
                self.unobserved.append(str(e))
                if self._stop.is_set():
                    return True, "stopped"
                await asyncio.sleep(SAMPLE_PACE)
        self.samples += 1
        margin = view.healthy_voters - view.quorum
        if self.min_healthy_margin is None or margin < self.min_healthy_margin:
            self.min_healthy_margin = margin
        return view.has_quorum(), view.describe()

    async def run(self) -> None:
        while not self._stop.is_set():
            ok, seen = await self.sample()
            if not ok:
                ok_again, seen_again = await self.sample()
                if ok_again:
                    self.unconfirmed.append(seen)
                else:
                    self.violations.append(f"{seen} | then {seen_again}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), SAMPLE_PACE)

    def stop(self) -> None:
        self._stop.set()


@contextlib.asynccontextmanager
async def running(*jobs: Writer | QuorumMonitor) -> AsyncIterator[None]:
    """Run JOBS in the background for the body of the `async with`; their errors surface."""
    tasks = [asyncio.create_task(job.run(), name=type(job).__name__) for job in jobs]
    try:
        yield
    finally:
        for job in jobs:
            job.stop()
        done, pending = await asyncio.wait(tasks, timeout=30)
        for t in pending:
            t.cancel()
        for t in done:
            error = None if t.cancelled() else t.exception()
            if error is not None:
                raise error
