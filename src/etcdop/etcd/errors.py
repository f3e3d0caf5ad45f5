"""The facade's own errors: callers branch on these classes, never on gRPC codes or etcd strings.

etcd reports most refusals as FAILED_PRECONDITION with a fixed "etcdserver: ..." text, and the same
condition can carry different codes across versions (a learner refusing a linearizable read is
UNAVAILABLE on 3.5 and FAILED_PRECONDITION on 3.6), so the text decides and the code is a fallback.
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
from etcd3aio import EtcdError as _ClientError


class EtcdError(Exception):
    """Base of every error the facade raises; names the endpoint, the operation and etcd's words."""

    hint = ""

    def __init__(self, operation: str, endpoint: str, detail: str) -> None:
        self.operation = operation
        self.endpoint = endpoint
        self.detail = detail
        hint = f"; {self.hint}" if self.hint else ""
        super().__init__(f"{operation} on {endpoint}: {detail}{hint}")


class Unavailable(EtcdError):
    """The member cannot serve now (not reachable, stopped, no leader, timed out inside etcd)."""

    hint = "check that the member runs and has a leader, then retry"


class DeadlineExceeded(Unavailable):
    """No answer within the facade's timeout; a membership change may or may not have happened."""

    hint = "no answer in time: if this was a membership change, list the members before retrying"


class NotLeader(EtcdError):
    """move_leader reached a member that is no longer the leader (leadership moved meanwhile)."""

    hint = "read the leader again and send the request to it"


class MemberNotFound(EtcdError):
    """The member ID is not in the membership (already removed, or never added)."""

    hint = "list the members and use an ID from that list"


class LearnerOnly(EtcdError):
    """A learner refused a request only voting members serve (linearizable reads, member list)."""

    hint = "send it to a voting member"


class MembershipChangeRefused(EtcdError):
    """etcd refused a membership change or leader move before making it; nothing changed."""

    hint = "nothing changed; fix the cause named above and retry"


class LearnerNotReady(MembershipChangeRefused):
    """Promote refused: the learner has not caught up with the leader's log yet."""

    hint = "the learner is still catching up; retry the promote later"


class NotALearner(MembershipChangeRefused):
    """Promote of a member that already votes (for example a promote retried after success)."""

    hint = "the member already votes; nothing to do"


class RequestFailed(EtcdError):
    """Any other refusal, with etcd's code and words."""


# etcd's fixed texts (api/v3rpc/rpctypes/error.go, same in 3.5 and 3.6) mapped to our classes.
_BY_TEXT: tuple[tuple[str, type[EtcdError]], ...] = (
    ("can only promote a learner member which is in sync with leader", LearnerNotReady),
    ("can only promote a learner member", NotALearner),
    ("rpc not supported for learner", LearnerOnly),
    ("etcdserver: not leader", NotLeader),
    ("member not found", MemberNotFound),
    ("unhealthy cluster", MembershipChangeRefused),
    ("not enough started members", MembershipChangeRefused),
    ("too many learner members", MembershipChangeRefused),
    ("member ID already exist", MembershipChangeRefused),
    ("Peer URLs already exists", MembershipChangeRefused),
    ("bad leader transferee", MembershipChangeRefused),
    ("given member URLs are invalid", MembershipChangeRefused),
    # raft's ErrProposalDropped (code UNKNOWN): a leadership transfer was in progress or the
    # member had no leader; the proposal never reached the log, so a retry cannot apply twice.
    ("raft proposal dropped", Unavailable),
)


def _rpc_error(exc: BaseException) -> Any:
    """The gRPC error behind EXC: etcd3aio raises it bare or wraps it as the __cause__."""
    for candidate in (exc, exc.__cause__):
        if isinstance(candidate, grpc.aio.AioRpcError):
            return candidate
    return None


def translate(exc: BaseException, operation: str, endpoint: str) -> EtcdError:
    """Turn an etcd3aio, gRPC or timeout error into the facade's error for OPERATION on ENDPOINT."""
    if isinstance(exc, EtcdError):
        return exc
    if isinstance(exc, TimeoutError):
        return DeadlineExceeded(operation, endpoint, "no answer before the timeout")
    rpc = _rpc_error(exc)
    if rpc is None:
        if isinstance(exc, _ClientError):
            return RequestFailed(operation, endpoint, str(exc))
        raise TypeError(f"not an etcd client error: {exc!r}") from exc
    code = rpc.code()
    text = rpc.details() or code.name
    for fragment, cls in _BY_TEXT:
        if fragment in text:
            return cls(operation, endpoint, text)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(operation, endpoint, text)
    if code == grpc.StatusCode.UNAVAILABLE:
        return Unavailable(operation, endpoint, text)
    return RequestFailed(operation, endpoint, f"{code.name}: {text}")
