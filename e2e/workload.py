"""Background load and measurement for the EtcdCluster scenarios.

- `MemberWatch` polls etcd's member list (and the pods' IPs) ten times a second and keeps every
  view, so a test can tell which member IDs ever existed and what was in flight at a given time.
- `QuorumMonitor` probes every voting member 20 times a second, each probe a task of its own
  with a short deadline, and keeps every probe: a claim such as "never lost quorum" is then
  checked sample by sample, and the achieved sampling rate is checked too (a starved monitor
  would otherwise pass by seeing nothing).
- `Writer` puts keys one after another and keeps every operation (start, end, ok/error).

Every etcd call is bounded and goes to a pod IP of the local cluster (or loopback), never to a
name a member advertises.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import itertools
import math
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from e2e.localcluster.config import POD_CIDR
from e2e.localcluster.kubeapi import ApiError, KubeClient
from e2e.operator import member_endpoints
from etcdop.etcd import EtcdClient, EtcdError, Member
from etcdop.etcd.errors import Unavailable

WRITE_PACE = 0.02  # seconds between writes: a throttle for a 2-core machine, not a sync
WRITE_DEADLINE = 5.0  # one write, failing over across the voters, must end within this
WRITE_CALL_TIMEOUT = 2.0  # one put to one member
PROBE_EVERY = 0.05  # a probe of each voter every 50 ms (20 Hz; at least 10 Hz is asserted)
# A probe must answer within this: shorter than etcd's election timeout (1 s), so a leader that
# is gone (no leader for >= 1 s) always shows, while a planned leader move (milliseconds) does not.
PROBE_DEADLINE = 0.5
PROBE_RETRY_PACE = 0.01  # between retries of a refused read inside one probe's deadline
MEMBERS_EVERY = 0.1  # member list (and leader) polls
PODS_EVERY = 0.5  # pod IP re-reads from the Kubernetes API
KUBE_CALL_DEADLINE = 5.0
# Seconds: the largest gap allowed between two probes of one voter. A probe fails only when
# its whole PROBE_DEADLINE lies inside a window without quorum, so every window of
# PROBE_DEADLINE + MAX_SAMPLE_GAP (1.0 s) or more is caught. A lost leader leaves none for
# etcd's randomized election timeout (1-2 s) less the time since its last heartbeat (<= 0.1 s),
# then the vote: 0.9 s at the very least, so a window in (0.9, 1.0) s could slip through. The
# bound was 0.4 s; it failed in CI at 408 ms on a starved 2-core machine with 0 quorum loss.
MAX_SAMPLE_GAP = 0.5
MIN_SAMPLE_RATE = 10.0  # probes per second per voter, at least
assert PROBE_DEADLINE + MAX_SAMPLE_GAP <= 1.0, "would miss a window of one election timeout"
_HEALTH_KEY = "health"  # the key etcdctl's `endpoint health` reads

_LOCAL_NETS = (ipaddress.ip_network(POD_CIDR), ipaddress.ip_network("127.0.0.0/8"))


def local_endpoint(url: str) -> str:
    """URL itself, after checking that it is an IP address of the pod network or loopback:
    the monitors must never dial a name or an address outside the local cluster."""
    host = urlsplit(url).hostname or ""
    ip = ipaddress.ip_address(host)  # a name raises ValueError
    if not any(ip in net for net in _LOCAL_NETS):
        raise ValueError(f"{url} is not a pod or loopback address")
    return url


def member_name(m: Member) -> str:
    """The member's name: etcd's own name field stays empty until the member has started, so
    until then it is read from the peer URL (`http://<name>.<cluster>-peer...`), as the operator
    names members."""
    if m.name:
        return m.name
    host = urlsplit(m.peer_urls[0]).hostname or "" if m.peer_urls else ""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return m.hex_id  # an address names no member
    return host.split(".", 1)[0] or m.hex_id


def quorum(voters: int) -> int:
    return voters // 2 + 1


def in_flight(members: Iterable[Member]) -> list[str]:
    """What in MEMBERS shows a membership change not finished: a learner, or a member added whose
    etcd never started (no name yet)."""
    out = []
    for m in members:
        if not m.name:
            out.append(f"{member_name(m)} ({m.hex_id}) added, not started")
        elif m.is_learner:
            out.append(f"{m.name} ({m.hex_id}) learner")
    return out


def _now() -> float:
    """The event loop's clock: every time the monitors keep is on it."""
    return asyncio.get_running_loop().time()


# ------------------------------------------------------------------------------ member watch


@dataclass(frozen=True)
class Membership:
    """One member list, read at T (loop time), with the leader and term one voter reported."""

    t: float
    members: tuple[Member, ...]
    leader_id: int = 0
    term: int = 0

    @property
    def voters(self) -> frozenset[str]:
        return frozenset(member_name(m) for m in self.members if not m.is_learner)


@dataclass
class MemberWatch:
    """Polls the member list (every MEMBERS_EVERY) and the pod IPs (every PODS_EVERY).

    Each etcd client is for one pod IP and bounded by PROBE_DEADLINE; pods come from the
    Kubernetes API. `history` keeps every member list read; failures are counted, not fatal.
    """

    kube: KubeClient
    name: str
    ns: str
    history: list[Membership] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)  # pod name -> client URL by pod IP
    member_list_failures: int = 0
    pod_list_failures: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _clients: dict[str, EtcdClient] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _reread: asyncio.Event = field(default_factory=asyncio.Event)

    def reread_pods(self) -> None:
        """Ask for the pod IPs now: a probe could not connect, maybe to a pod that is gone."""
        self._reread.set()

    def client(self, endpoint: str) -> EtcdClient:
        """One client (one channel) per member endpoint, kept for the watch's life."""
        c = self._clients.get(endpoint)
        if c is None:
            c = EtcdClient([local_endpoint(endpoint)], timeout=PROBE_DEADLINE)
            self._clients[endpoint] = c
        return c

    @property
    def latest(self) -> Membership | None:
        return self.history[-1] if self.history else None

    def voter_endpoints(self) -> list[str]:
        """Client URLs of the voters of the latest member list, the leader's first."""
        latest = self.latest
        if latest is None:
            return []
        voters = [m for m in latest.members if not m.is_learner]
        voters.sort(key=lambda m: (m.id != latest.leader_id, member_name(m)))
        return [self.endpoints[n] for m in voters if (n := member_name(m)) in self.endpoints]

    def ids_by_name(self) -> dict[str, set[int]]:
        """Every member ID etcd ever reported under each member name."""
        out: dict[str, set[int]] = {}
        for view in self.history:
            for m in view.members:
                out.setdefault(member_name(m), set()).add(m.id)
        return out

    async def read_pods(self) -> None:
        try:
            async with asyncio.timeout(KUBE_CALL_DEADLINE):
                found = await member_endpoints(self.kube, self.name, self.ns)
        except (ApiError, httpx.HTTPError, TimeoutError):
            self.pod_list_failures += 1
            return
        self.endpoints = {n: local_endpoint(u) for n, u in found.items()}

    async def read_members(self) -> Membership | None:
        """A fresh member list (voters asked first) and one voter's leader; None if none
        answered. The view is also appended to `history`."""
        latest = self.latest
        known_voters = latest.voters if latest else frozenset()
        order = sorted(self.endpoints.items(), key=lambda kv: (kv[0] not in known_voters, kv[0]))
        for _, endpoint in order:
            try:
                members = await self.client(endpoint).member_list()
            except EtcdError:
                continue
            view = Membership(_now(), tuple(members))
            for n in sorted(view.voters):
                ep = self.endpoints.get(n)
                if ep is None:
                    continue
                try:
                    status = await self.client(ep).status(ep)
                except EtcdError:
                    continue
                view = Membership(view.t, view.members, status.leader_id, status.raft_term)
                break
            self.history.append(view)
            return view
        self.member_list_failures += 1
        return None

    async def _pods_loop(self) -> None:
        while not self._stop.is_set():
            self._reread.clear()
            await self.read_pods()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first_set(self._stop, self._reread), PODS_EVERY)

    async def _members_loop(self) -> None:
        while not self._stop.is_set():
            start = _now()
            view = await self.read_members()
            if view is None or any(member_name(m) not in self.endpoints for m in view.members):
                # a member whose pod IP is unknown (a new one) or no answer: re-read the pods
                # now, so that a voter is never counted down for want of its address
                await self.read_pods()
            if view is not None:
                self.ready.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._stop.wait(), max(0.0, MEMBERS_EVERY - (_now() - start))
                )

    async def run(self) -> None:
        await self.read_pods()
        try:
            await asyncio.gather(self._pods_loop(), self._members_loop())
        finally:
            await self.close()

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for c in clients.values():
            await c.close()

    def stop(self) -> None:
        self._stop.set()

    def leader_changes(self, since: float = 0.0) -> list[tuple[float, int, int]]:
        """(time, from, to) each time the reported leader changed (unknown leaders skipped)."""
        out = []
        last = 0
        for view in self.history:
            if view.leader_id == 0:
                continue
            if last and view.leader_id != last and view.t >= since:
                out.append((view.t, last, view.leader_id))
            last = view.leader_id
        return out


# ---------------------------------------------------------------------------- quorum monitor


@dataclass(frozen=True)
class Probe:
    """One health probe of one voter: a linearizable read through its own pod IP."""

    voter: str
    start: float
    end: float
    ok: bool
    reason: str = ""


@dataclass
class Round:
    """The probes of one sample time: one per voter of the member list known at time T."""

    t: float
    voters: frozenset[str]
    probes: dict[str, Probe] = field(default_factory=dict)

    def healthy(self, among: Iterable[str]) -> int:
        return sum(1 for v in among if (p := self.probes.get(v)) is not None and p.ok)

    def describe(self) -> str:
        return ", ".join(
            f"{v}={'ok' if (p := self.probes.get(v)) and p.ok else 'DOWN'}"
            + (f"({p.reason[:80]})" if p and not p.ok else "")
            for v in sorted(self.voters)
        )


@dataclass(frozen=True)
class LossWindow:
    """Consecutive sample times at which fewer than a quorum of voters answered healthy."""

    start: float
    end: float
    rounds: int
    label: str
    seen: str

    def __str__(self) -> str:
        return (
            f"[{self.label}] {self.end - self.start:.3f}s from t={self.start:.3f} "
            f"({self.rounds} samples): {self.seen}"
        )


@dataclass(frozen=True)
class Stall:
    """A tick of the monitor that came late, and what the process did meanwhile (CPU of all its
    threads, so a rough sign): CPU time near the lateness means this process was busy (its own
    code, a collection); near zero means it
    was not running (descheduled by the machine, or blocked in a call that holds the loop)."""

    at: float
    late: float
    cpu: float
    gc: float

    def __str__(self) -> str:
        return (
            f"t={self.at:.3f} late {self.late * 1000:.0f} ms (process CPU "
            f"{self.cpu * 1000:.0f} ms, GC {self.gc * 1000:.0f} ms)"
        )


class GcClock:
    """Total time spent in the collector while installed (gc.callbacks)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self.total += time.perf_counter() - self._started
            self._started = 0.0


STALL_REPORTED = 0.1  # seconds late before a tick is kept as a stall


@dataclass
class QuorumMonitor:
    """Probes each voter of the latest member list every PROBE_EVERY, each probe a task bounded
    by PROBE_DEADLINE (a read refused at once, as during a leader move, is retried inside it).

    A sample time counts as a quorum loss when fewer than a quorum of the voters answered
    healthy. The member list is itself polled (every MEMBERS_EVERY), so around a membership
    change a sample may be judged against the list just before it: such a sample counts as a
    loss only if it is one under the next list read too (it is then kept in `membership_edges`).
    """

    kube: KubeClient
    name: str
    ns: str
    watch: MemberWatch = field(init=False)
    rounds: list[Round] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)
    started: float = 0.0
    stopped: float = 0.0
    stalls: list[Stall] = field(default_factory=list)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.watch = MemberWatch(self.kube, self.name, self.ns)

    def mark(self, label: str) -> None:
        """Label what the test does from now on (losses and failures name their step)."""
        self.marks.append((_now(), label))

    def label_at(self, t: float) -> str:
        label = "before the first step"
        for at, what in self.marks:
            if at <= t:
                label = what
        return label

    async def _probe(self, rnd: Round, voter: str, endpoint: str) -> None:
        start = _now()
        ok, reason = False, ""
        try:
            async with asyncio.timeout(PROBE_DEADLINE):
                while True:
                    # A member re-created in place has a new pod IP: each retry asks the
                    # current one, so a stale address never counts the member down.
                    endpoint = self.watch.endpoints.get(voter, endpoint)
                    try:
                        await self.watch.client(endpoint).get(_HEALTH_KEY)
                        ok = True
                        break
                    except Unavailable as e:  # no leader yet, leader changed, connecting
                        reason = e.detail
                        self.watch.reread_pods()
                    except EtcdError as e:
                        reason = e.detail
                        break
                    await asyncio.sleep(PROBE_RETRY_PACE)  # paces the retries, waits for nothing
        except TimeoutError:
            last = f" (last: {reason})" if reason else ""
            reason = f"no answer within {PROBE_DEADLINE}s{last}"
        rnd.probes[voter] = Probe(voter, start, _now(), ok, reason)

    def _tick(self) -> None:
        latest = self.watch.latest
        if latest is None:
            return
        now = _now()
        rnd = Round(now, latest.voters)
        self.rounds.append(rnd)
        for voter in sorted(rnd.voters):
            endpoint = self.watch.endpoints.get(voter)
            if endpoint is None:
                rnd.probes[voter] = Probe(voter, now, now, False, "no pod IP known")
                continue
            task = asyncio.create_task(self._probe(rnd, voter, endpoint), name=f"probe-{voter}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        watcher = asyncio.create_task(self.watch.run(), name="member-watch")
        try:
            async with asyncio.timeout(60):
                await self.watch.ready.wait()
            self.started = _now()
            due = self.started
            gc_clock = GcClock()
            gc.callbacks.append(gc_clock)
            # The session's long-lived objects (collected tests, fixtures, boto3's and kr8s's
            # models) out of the collector while the monitor samples: a full collection that
            # scanned them all paused this process 697 ms in CI and starved every probe.
            gc.freeze()
            try:
                while not self._stop.is_set():
                    self._tick()
                    due += PROBE_EVERY
                    now, cpu, in_gc = _now(), time.process_time(), gc_clock.total
                    if due < now:  # late (starved): no burst to catch up, the gaps will show it
                        due = now
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), due - now)
                    late = _now() - due
                    if late >= STALL_REPORTED:
                        self.stalls.append(
                            Stall(
                                due - self.started,
                                late,
                                time.process_time() - cpu,
                                gc_clock.total - in_gc,
                            )
                        )
            finally:
                gc.unfreeze()
                gc.callbacks.remove(gc_clock)
            self.stopped = _now()
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=PROBE_DEADLINE * 4)
        finally:
            self.watch.stop()
            await watcher

    def stop(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------- what was measured

    def _next_membership(self, t: float) -> Membership | None:
        return next((v for v in self.watch.history if v.t > t), None)

    def margins(self) -> list[tuple[Round, int, bool]]:
        """(sample, healthy voters above quorum, judged on the next member list) per finished
        sample: against the list known at the sample time, or, when that leaves it below
        quorum and the next list read differs, against that next list if it does better."""
        out: list[tuple[Round, int, bool]] = []
        for rnd in self.rounds:
            if len(rnd.probes) < len(rnd.voters):
                continue  # still running when stopped
            margin = rnd.healthy(rnd.voters) - quorum(len(rnd.voters))
            after = self._next_membership(rnd.t)
            if margin < 0 and after is not None and after.voters != rnd.voters:
                then = rnd.healthy(after.voters & rnd.voters) - quorum(len(after.voters))
                if then >= 0:
                    out.append((rnd, then, True))
                    continue
            out.append((rnd, margin, False))
        return out

    def judged(self) -> tuple[list[Round], list[Round]]:
        """(samples without a healthy quorum, samples saved only by the next member list)."""
        margins = self.margins()
        return [r for r, m, _ in margins if m < 0], [r for r, _, edge in margins if edge]

    def quorum_losses(self) -> list[LossWindow]:
        lost, _ = self.judged()
        lost_ids = {id(r) for r in lost}
        windows: list[LossWindow] = []
        run: list[Round] = []
        for rnd in [*self.rounds, None]:
            if rnd is not None and id(rnd) in lost_ids:
                run.append(rnd)
                continue
            if run:
                last_end = max(p.end for p in run[-1].probes.values())
                windows.append(LossWindow(
                    run[0].t, last_end, len(run), self.label_at(run[0].t),
                    f"{run[0].describe()}; quorum {quorum(len(run[0].voters))}",
                ))
                run = []
        return windows

    def sample_gaps(self) -> dict[str, tuple[int, float, float]]:
        """Voter -> (samples, largest gap between two consecutive samples, samples per second),
        over the stretches in which it was a voter without a break."""
        out: dict[str, tuple[int, float, float]] = {}
        times: dict[str, list[list[float]]] = {}
        previous: frozenset[str] = frozenset()
        for rnd in self.rounds:
            for v in rnd.voters:
                p = rnd.probes.get(v)
                if p is None:
                    continue
                stretches = times.setdefault(v, [])
                if v not in previous or not stretches:
                    stretches.append([])
                stretches[-1].append(p.start)
            previous = rnd.voters
        for v, stretches in times.items():
            n = sum(len(s) for s in stretches)
            gaps = [b - a for s in stretches for a, b in itertools.pairwise(s)]
            span = sum(s[-1] - s[0] for s in stretches if len(s) > 1)
            rate = (sum(len(s) - 1 for s in stretches) / span) if span > 0 else math.inf
            out[v] = (n, max(gaps, default=0.0), rate)
        return out

    def min_margin(self) -> int | None:
        """Fewest healthy voters above quorum at any sample time (negative: quorum lost)."""
        return min((m for _, m, _ in self.margins()), default=None)

    def report(self) -> str:
        """The figures the scenarios assert (see `diagnostics` for the others)."""
        gaps = self.sample_gaps()
        worst = max((g for _, g, _ in gaps.values()), default=0.0)
        slowest = min((r for _, _, r in gaps.values()), default=0.0)
        return (
            f"{len(gaps)} voters probed, largest gap {worst * 1000:.0f} ms, slowest rate "
            f"{slowest:.1f}/s; {len(self.quorum_losses())} windows without quorum; min margin "
            f"above quorum {self.min_margin()}; {self.watch.member_list_failures} member list "
            f"reads failed; {len(self.watch.leader_changes())} leader changes"
        )

    def largest_gap(self) -> str:
        """Where the largest gap between two probes of one voter was (which step starved)."""
        worst = (0.0, 0.0, "")
        last: dict[str, float] = {}
        for rnd in self.rounds:
            for v, p in rnd.probes.items():
                if v in last and p.start - last[v] > worst[0]:
                    worst = (p.start - last[v], last[v], v)
                last[v] = p.start
            last = {v: t for v, t in last.items() if v in rnd.voters}
        gap, at, voter = worst
        return f"{gap * 1000:.0f} ms for {voter} at t={at:.3f} [{self.label_at(at)}]"

    def diagnostics(self) -> str:
        """Figures no scenario asserts, for failure messages only."""
        _, edges = self.judged()
        probes = sum(len(r.probes) for r in self.rounds)
        failed = sum(1 for r in self.rounds for p in r.probes.values() if not p.ok)
        return (
            f"{len(self.rounds)} sample times over {self.stopped - self.started:.1f}s, "
            f"{probes} probes ({failed} unhealthy); {len(edges)} samples judged on the next "
            f"member list; {len(self.watch.history)} member lists; largest gap "
            f"{self.largest_gap()}; late ticks {[str(s) for s in self.stalls[-5:]]} of "
            f"{len(self.stalls)}; steps {self.marks}"
        )


# ----------------------------------------------------------------------------------- writer


async def _first_set(*events: asyncio.Event) -> None:
    """Return when any of EVENTS is set."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


def assert_quorum_kept(monitor: QuorumMonitor, details: str) -> None:
    """The monitor sampled every voter often enough, and no window lacked a healthy quorum."""
    gaps = monitor.sample_gaps()
    assert gaps, f"no voter was ever probed: {details}"
    slow = {v: g for v, g in gaps.items() if g[1] >= MAX_SAMPLE_GAP or g[2] < MIN_SAMPLE_RATE}
    assert not slow, (
        f"the monitor was starved (voter: samples, largest gap s, samples/s): {slow}; {details}"
    )
    losses = monitor.quorum_losses()
    assert not losses, (
        f"{len(losses)} windows without a healthy quorum: {[str(w) for w in losses[:5]]}; "
        f"{details}"
    )
    margin = monitor.min_margin()
    assert margin is not None and margin >= 0, details


@dataclass
class WriteOp:
    """One put: when it started and ended (loop time), and whether etcd acknowledged it."""

    key: str
    start: float
    end: float
    ok: bool
    error: str = ""


@dataclass
class Writer:
    """Puts `PREFIX/<n>` = n for n = 0, 1, ... to the voters the monitor's member list names
    (the leader first, failing over to the others); every operation is kept in `ops`.

    A failed put is retried with the same key and value, so an unacknowledged write may or may
    not exist: only acknowledged ones (`acked`) are promised.
    """

    monitor: QuorumMonitor
    prefix: str = "writer"
    ops: list[WriteOp] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    _client: EtcdClient | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def key(self, n: int) -> str:
        return f"{self.prefix}/{n:08d}"

    async def _put(self, endpoints: Sequence[str], key: str, value: str) -> None:
        """One put, failing over from the first endpoint to the next on Unavailable."""
        wanted = tuple(local_endpoint(e) for e in endpoints)
        if self._client is None or self._client.endpoints != wanted:
            if self._client is not None:
                await self._client.close()
            self._client = EtcdClient(wanted, timeout=WRITE_CALL_TIMEOUT)
        async with asyncio.timeout(WRITE_DEADLINE):
            await self._client.put(key, value)

    async def run(self) -> None:
        async with asyncio.timeout(60):
            await self.monitor.watch.ready.wait()
        n = 0
        try:
            while not self._stop.is_set():
                n = await self._write(n)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), WRITE_PACE)
        finally:
            if self._client is not None:
                await self._client.close()

    async def _write(self, n: int) -> int:
        """Put key N once; the next N to write."""
        key = self.key(n)
        endpoints = self.monitor.watch.voter_endpoints()
        start = _now()
        try:
            if not endpoints:
                raise RuntimeError("no voter with a pod IP in the latest member list")
            await self._put(endpoints, key, str(n))
        except (EtcdError, TimeoutError, RuntimeError) as e:
            self.ops.append(WriteOp(key, start, _now(), False, str(e) or repr(e)))
        else:
            self.ops.append(WriteOp(key, start, _now(), True))
            self.acked.append(key)
            n += 1
        return n

    def stop(self) -> None:
        self._stop.set()

    def failures(self) -> list[WriteOp]:
        return [op for op in self.ops if not op.ok]

    def acked_between(self, start: float, end: float) -> int:
        return sum(1 for op in self.ops if op.ok and start <= op.end <= end)

    def report(self) -> str:
        """The figures the scenarios assert (see `diagnostics` for the others)."""
        return f"{len(self.acked)} puts acknowledged, {len(self.failures())} failed"

    def diagnostics(self) -> str:
        """Figures no scenario asserts, for failure messages only."""
        took = sorted(op.end - op.start for op in self.ops if op.ok)
        p99 = took[int(len(took) * 0.99)] if took else 0.0
        failed = [
            f"{op.key} at t={op.start:.3f} after {op.end - op.start:.3f}s: {op.error[:160]}"
            for op in self.failures()[:3]
        ]
        return (
            f"{len(self.ops)} puts; latency p99 {p99 * 1000:.0f} ms, "
            f"max {max(took, default=0.0) * 1000:.0f} ms"
            + (f"; failed: {failed}" if failed else "")
        )


async def write_keys(kube: KubeClient, name: str, ns: str, prefix: str, count: int) -> list[str]:
    """Write COUNT keys `<prefix>/<n>` holding n (what `unreadable` checks) through the pod
    IPs of cluster NAME; every one is acknowledged when this returns."""
    keys = [f"{prefix}/{n:06d}" for n in range(count)]
    endpoints = await member_endpoints(kube, name, ns)
    async with EtcdClient(sorted(endpoints.values()), timeout=5.0) as client:
        for k in keys:
            await client.put(k, str(int(k.rsplit("/", 1)[1])))
    return keys


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


class _Job(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


@contextlib.asynccontextmanager
async def running(*jobs: _Job) -> AsyncIterator[None]:
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
