"""EtcdClient: the operations etcdop needs from etcd, one channel per member, each call bounded.

Rules kept here so callers need not know them:
- every call has a timeout (etcd3aio has no default deadline);
- every call is made once (etcd3aio retries UNAVAILABLE, and a retried MemberAdd can add twice);
  reads fail over to the next endpoint instead, membership changes are never resent;
- calls about one member (status, health, snapshot) go to that member's own channel, and
  move_leader goes to the current leader (etcd refuses it elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc.aio
from etcd3aio import EtcdError as _ClientError
from etcd3aio.cluster import ClusterService
from etcd3aio.kv import KVService
from etcd3aio.maintenance import AlarmType, DowngradeAction, MaintenanceService

from etcdop.etcd.channel import TLSConfig, open_channel, target_of
from etcdop.etcd.errors import (
    EtcdError,
    LearnerOnly,
    RequestFailed,
    Unavailable,
    translate,
)
from etcdop.etcd.models import Health, Member, MemberAdded, Status

log = logging.getLogger(__name__)

T = TypeVar("T")

_ONCE = 1  # max_attempts for every etcd3aio call: see the module docstring
_HEALTH_KEY = "health"  # the key etcdctl's `endpoint health` reads
_ALARM_NAMES = {1: "NOSPACE", 2: "CORRUPT"}
_CLIENT_ERRORS = (grpc.aio.AioRpcError, _ClientError, TimeoutError)


@dataclass
class _Conn:
    channel: Any
    kv: KVService
    cluster: ClusterService
    maintenance: MaintenanceService


class EtcdClient:
    """Talks to one etcd cluster. ENDPOINTS (client URLs or host:port) serve cluster-wide calls.

    Use as `async with EtcdClient([...]) as etcd:` so every channel is closed. TIMEOUT bounds reads
    and health checks, CHANGE_TIMEOUT membership changes and leader moves, SNAPSHOT_TIMEOUT a whole
    snapshot stream (all in seconds).
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: TLSConfig | None = None,
        timeout: float = 5.0,
        change_timeout: float = 15.0,
        snapshot_timeout: float = 3600.0,
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdClient needs at least one endpoint (a member's client URL)")
        for endpoint in endpoints:
            target_of(endpoint)  # fail now on a malformed endpoint, not at the first call
        self._endpoints = tuple(endpoints)
        self._tls = tls
        self._timeout = timeout
        self._change_timeout = change_timeout
        self._snapshot_timeout = snapshot_timeout
        self._conns: dict[str, _Conn] = {}

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self._endpoints

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close every channel; the client may be used again afterwards (channels reopen)."""
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            await conn.channel.close()

    async def disconnect(self, endpoint: str) -> None:
        """Close the channel to one member (for example after removing it)."""
        conn = self._conns.pop(target_of(endpoint)[0], None)
        if conn is not None:
            await conn.channel.close()

    # membership ---------------------------------------------------------------------------------

    async def member_list(self, endpoint: str | None = None) -> list[Member]:
        """The membership, read linearizably from ENDPOINT, else from the first voting member
        that answers. Asking each member in turn finds one that went its own way."""

        def call(c: _Conn) -> Awaitable[Any]:
            return c.cluster.member_list(timeout=self._timeout, max_attempts=_ONCE)

        if endpoint is not None:
            resp = await self._on(endpoint, "member list", call)
        else:
            resp = await self._on_any("member list", call)
        return [Member.from_proto(m) for m in resp.members]

    async def add_learner(self, peer_urls: Sequence[str]) -> MemberAdded:
        """Add a non-voting member; start it with `added.initial_cluster(name)`, then promote it."""
        endpoint = await self._change_endpoint()
        resp = await self._on(
            endpoint,
            f"member add learner {','.join(peer_urls)}",
            lambda c: c.cluster.member_add(
                list(peer_urls), is_learner=True, timeout=self._change_timeout, max_attempts=_ONCE
            ),
        )
        added = MemberAdded(
            member=Member.from_proto(resp.member),
            members=tuple(Member.from_proto(m) for m in resp.members),
        )
        log.info(
            "etcd learner added: member=%s peer_urls=%s via=%s",
            added.member.hex_id,
            ",".join(peer_urls),
            endpoint,
        )
        return added

    async def promote(self, member_id: int) -> list[Member]:
        """Make a caught-up learner a voter; LearnerNotReady while it is behind (retry later)."""
        endpoint = await self._change_endpoint()
        resp = await self._on(
            endpoint,
            f"member promote {member_id:x}",
            lambda c: c.cluster.member_promote(
                member_id, timeout=self._change_timeout, max_attempts=_ONCE
            ),
        )
        log.info("etcd learner promoted: member=%x via=%s", member_id, endpoint)
        return [Member.from_proto(m) for m in resp.members]

    async def remove(self, member_id: int) -> list[Member]:
        """Remove a member; returns the membership without it."""
        endpoint = await self._change_endpoint()
        resp = await self._on(
            endpoint,
            f"member remove {member_id:x}",
            lambda c: c.cluster.member_remove(
                member_id, timeout=self._change_timeout, max_attempts=_ONCE
            ),
        )
        log.info("etcd member removed: member=%x via=%s", member_id, endpoint)
        return [Member.from_proto(m) for m in resp.members]

    async def move_leader(self, target_id: int) -> None:
        """Hand leadership to TARGET_ID (a voter); returns once etcd reports the transfer done."""
        leader_endpoint, leader_id = await self._leader()
        if leader_id == target_id:
            return
        await self._on(
            leader_endpoint,
            f"move leader to {target_id:x}",
            lambda c: c.maintenance.move_leader(
                target_id, timeout=self._change_timeout, max_attempts=_ONCE
            ),
        )
        log.info("etcd leader moved: from=%x to=%x", leader_id, target_id)

    async def enable_downgrade(self, version: str) -> None:
        """etcd's downgrade API (3.6+): validate, then enable a downgrade of the cluster version
        to VERSION's minor, so members of that minor may run. Enabling it twice is fine."""
        endpoint, _ = await self._leader()
        for action in (DowngradeAction.VALIDATE, DowngradeAction.ENABLE):

            def call(c: _Conn, a: DowngradeAction = action) -> Awaitable[Any]:
                return c.maintenance.downgrade(
                    a, version, timeout=self._change_timeout, max_attempts=_ONCE
                )

            try:
                await self._on(endpoint, f"downgrade {action.name.lower()} {version}", call)
            except RequestFailed as e:
                if "downgrade job in progress" not in e.detail:
                    raise
        log.info("etcd downgrade enabled: version=%s via=%s", version, endpoint)

    async def cancel_downgrade(self) -> None:
        """End a downgrade in progress: the cluster version goes back up to what every member
        runs. One that has already ended is not an error."""
        endpoint, _ = await self._leader()
        try:
            await self._on(
                endpoint,
                "downgrade cancel",
                lambda c: c.maintenance.downgrade(
                    DowngradeAction.CANCEL, "", timeout=self._change_timeout, max_attempts=_ONCE
                ),
            )
        except RequestFailed as e:
            if "no inflight downgrade job" not in e.detail:
                raise
        log.info("etcd downgrade cancelled: via=%s", endpoint)

    # space ---------------------------------------------------------------------------------------

    async def compact(self, revision: int) -> None:
        """Compact the history up to REVISION and wait until the space is free in the backend.
        A compaction already done at or past REVISION is not an error: it is what was asked."""
        endpoint, _ = await self._leader()
        try:
            await self._on(
                endpoint,
                f"compact at revision {revision}",
                lambda c: c.kv.compact(
                    revision, physical=True, timeout=self._change_timeout, max_attempts=_ONCE
                ),
            )
        except RequestFailed as e:
            if "compacted" not in e.detail:
                raise
        log.info("etcd compacted: revision=%d via=%s", revision, endpoint)

    async def defragment(self, endpoint: str) -> None:
        """Defragment ENDPOINT's backend; the member serves nothing while it runs."""
        await self._on(
            endpoint,
            "defragment",
            lambda c: c.maintenance.defragment(timeout=self._snapshot_timeout, max_attempts=_ONCE),
        )
        log.info("etcd defragmented: endpoint=%s", endpoint)

    async def disarm_nospace(self) -> None:
        """Clear the NOSPACE alarm of every member that raised it, so writes are accepted again.

        etcd deactivates only the exact (member, alarm) pairs it is given (member 0 matches
        nothing), so each raised pair is listed and disarmed; what is still raised afterwards
        is an error."""
        endpoint, _ = await self._leader()
        raised = await self._on(
            endpoint,
            "alarm list",
            lambda c: c.maintenance.alarms(timeout=self._change_timeout, max_attempts=_ONCE),
        )
        for a in raised.alarms:
            if a.alarm != AlarmType.NOSPACE:
                continue
            await self._on(
                endpoint, f"disarm NOSPACE of member {a.memberID:x}", self._disarm(int(a.memberID))
            )
        left = await self._on(
            endpoint,
            "alarm list",
            lambda c: c.maintenance.alarms(timeout=self._change_timeout, max_attempts=_ONCE),
        )
        still = [f"{a.memberID:x}" for a in left.alarms if a.alarm == AlarmType.NOSPACE]
        if still:
            raise RequestFailed(
                "disarm NOSPACE", endpoint, f"the alarm is still raised on {', '.join(still)}"
            )
        log.info("etcd NOSPACE alarm disarmed: members=%d via=%s", len(raised.alarms), endpoint)

    def _disarm(self, member: int) -> Callable[[_Conn], Awaitable[Any]]:
        def call(c: _Conn) -> Awaitable[Any]:
            return c.maintenance.alarm_deactivate(
                AlarmType.NOSPACE,
                member_id=member,
                timeout=self._change_timeout,
                max_attempts=_ONCE,
            )

        return call

    # one member ---------------------------------------------------------------------------------

    async def status(self, endpoint: str) -> Status:
        """ENDPOINT's own status (learners answer too)."""
        resp = await self._on(
            endpoint,
            "status",
            lambda c: c.maintenance.status(timeout=self._timeout, max_attempts=_ONCE),
        )
        return Status.from_proto(endpoint, resp)

    async def health(self, endpoint: str, within: float | None = None) -> Health:
        """Whether ENDPOINT serves reads now; never raises for an unhealthy member.

        Like `etcdctl endpoint health`: a linearizable read (it needs a leader and a quorum), then
        no active alarm. A learner refuses linearizable reads, so it is asked a serializable one.
        WITHIN (seconds, default TIMEOUT) bounds each of the two calls.
        """
        limit = self._timeout if within is None else within
        loop = asyncio.get_running_loop()
        start = loop.time()

        def result(healthy: bool, reason: str = "") -> Health:
            return Health(endpoint, healthy, round(loop.time() - start, 4), reason)

        try:
            try:
                await self._on(
                    endpoint,
                    "health read",
                    lambda c: c.kv.get(_HEALTH_KEY, timeout=limit, max_attempts=_ONCE),
                )
            except LearnerOnly:
                await self._on(
                    endpoint,
                    "health read",
                    lambda c: c.kv.get(
                        _HEALTH_KEY, serializable=True, timeout=limit, max_attempts=_ONCE
                    ),
                )
                return result(True)
            alarms = await self._on(
                endpoint,
                "alarm list",
                lambda c: c.maintenance.alarms(timeout=limit, max_attempts=_ONCE),
            )
        except EtcdError as e:
            return result(False, e.detail)
        active = [
            f"{_ALARM_NAMES.get(a.alarm, a.alarm)} on member {a.memberID:x}" for a in alarms.alarms
        ]
        if active:
            return result(False, "active alarm: " + ", ".join(active))
        return result(True)

    async def snapshot(
        self, endpoint: str, within: float | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Stream ENDPOINT's backend as snapshot bytes; `contextlib.aclosing` it to stop early.

        Never retried: after the first chunk a retry would repeat bytes. WITHIN (seconds, default
        SNAPSHOT_TIMEOUT) bounds the whole stream.
        """
        conn = self._conn(endpoint)
        limit = self._snapshot_timeout if within is None else within
        stream = conn.maintenance.snapshot(timeout=limit, max_attempts=_ONCE)
        try:
            async for chunk in stream:
                yield chunk
        except _CLIENT_ERRORS as exc:
            raise translate(exc, "snapshot", endpoint) from exc
        finally:
            await stream.aclose()

    # keys (tests and probes) -------------------------------------------------------------------

    async def put(self, key: str | bytes, value: str | bytes) -> int:
        """Write KEY; returns the revision of the write."""
        resp = await self._on_any(
            "put", lambda c: c.kv.put(key, value, timeout=self._timeout, max_attempts=_ONCE)
        )
        return int(resp.header.revision)

    async def get(self, key: str | bytes) -> bytes | None:
        """KEY's value read linearizably, or None when it does not exist."""
        resp = await self._on_any(
            "get", lambda c: c.kv.get(key, timeout=self._timeout, max_attempts=_ONCE)
        )
        return bytes(resp.kvs[0].value) if resp.kvs else None

    async def count_keys(self, endpoint: str, revision: int = 0) -> tuple[int, int]:
        """(store revision, number of live keys at REVISION or now) read serializably from
        ENDPOINT alone, so a backup can say what its member's snapshot holds."""
        resp = await self._on(
            endpoint,
            "count keys",
            lambda c: c.kv.get(
                b"\0",
                b"\0",
                serializable=True,
                revision=revision,
                count_only=True,
                timeout=self._timeout,
                max_attempts=_ONCE,
            ),
        )
        return int(resp.header.revision), int(resp.count)

    # internals ----------------------------------------------------------------------------------

    def _conn(self, endpoint: str) -> _Conn:
        target = target_of(endpoint)[0]
        conn = self._conns.get(target)
        if conn is None:
            channel = open_channel(endpoint, self._tls)
            conn = _Conn(
                channel=channel,
                kv=KVService(channel, max_attempts=_ONCE),
                cluster=ClusterService(channel, max_attempts=_ONCE),
                maintenance=MaintenanceService(channel, max_attempts=_ONCE),
            )
            self._conns[target] = conn
        return conn

    async def _on(self, endpoint: str, operation: str, call: Callable[[_Conn], Awaitable[T]]) -> T:
        """CALL on ENDPOINT's channel, with its errors turned into the facade's."""
        try:
            return await call(self._conn(endpoint))
        except _CLIENT_ERRORS as exc:
            raise translate(exc, operation, endpoint) from exc

    async def _on_any(self, operation: str, call: Callable[[_Conn], Awaitable[T]]) -> T:
        """CALL on the first endpoint that can serve it; only safe for idempotent calls."""
        failures: list[str] = []
        for endpoint in self._endpoints:
            try:
                return await self._on(endpoint, operation, call)
            except (Unavailable, LearnerOnly) as e:
                failures.append(f"{endpoint}: {e.detail}")
        raise Unavailable(operation, ", ".join(self._endpoints), "; ".join(failures))

    async def _change_endpoint(self) -> str:
        """The leader's endpoint: a membership change is sent once, and only to the member that
        can commit it. A partitioned or removed member may still answer and even report a
        leader it lost touch with; the leader itself is the one member that cannot be stale."""
        return (await self._leader())[0]

    async def _leader(self) -> tuple[str, int]:
        """The leader's endpoint and ID, read from the members' own status."""
        leader_id = 0
        failures: list[str] = []
        for endpoint in self._endpoints:
            try:
                status = await self.status(endpoint)
            except EtcdError as e:
                failures.append(f"{endpoint}: {e.detail}")
                continue
            if status.is_leader:
                return endpoint, status.leader_id
            leader_id = leader_id or status.leader_id
        if leader_id == 0:
            raise Unavailable(
                "find the leader",
                ", ".join(self._endpoints),
                "; ".join(failures) or "no member knows a leader",
            )
        # The leader is not among our endpoints: reach it by the client URL it advertises.
        for member in await self.member_list():
            if member.id == leader_id and member.client_urls:
                return member.client_urls[0], leader_id
        raise Unavailable(
            "find the leader",
            ", ".join(self._endpoints),
            f"leader {leader_id:x} advertises no client URL",
        )
