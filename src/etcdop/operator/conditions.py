"""The EtcdCluster status, computed purely from a snapshot and the action planned for it.

Conditions say what a person can act on: Degraded names the unhealthy member, Progressing names
what the operator is doing or why it is stuck.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import replace

from etcdop.api.etcdcluster import Condition, EtcdClusterStatus, MemberStatus, UpgradeStall
from etcdop.api.semver import parse_version
from etcdop.operator.model import Member, Observed, quorum
from etcdop.operator.planner import (
    CLUSTER_LOST,
    Action,
    Compact,
    CreatePod,
    Defragment,
    DeletePod,
    Done,
    FinishRestore,
    RemoveMember,
    Wait,
    describe,
    unhealthy_member,
)

AVAILABLE = "Available"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
EVEN_SIZE = "EvenSize"

STUCK_REASONS = frozenset(
    {
        "QuorumLost",
        "ClusterLost",
        "QuorumGuard",
        "MemberUnhealthy",
        "NoLeaderCandidate",
        "EtcdUnreachable",
        "MembershipUnconfirmed",
        "NodeLost",
        "NoSpace",
        "UpgradeStalled",
        "VersionRefused",
        "UpgradeBackupFailed",
    }
)
"""Wait reasons that will not clear by themselves soon: Progressing is False with that reason."""

HOLD_REASONS = frozenset({"UpgradeStalled", "VersionRefused", "UpgradeBackupFailed"})
"""Wait reasons that hold a rollout until a person acts: Degraded is True with that reason."""

HEAL_REASONS = frozenset({"PodGone", "DataLost", "DataGone", "PodFailed", "PodMissing"})


def compute_status(
    o: Observed,
    action: Action,
    *,
    generation: int,
    now: str,
    previous: EtcdClusterStatus,
    client_endpoints: tuple[str, ...] = (),
    cluster_id: str = "",
    refused: str | None = None,
    quorum_loss_timeout: float = 300.0,
    restore_hint: str = "",
) -> EtcdClusterStatus:
    """The status to write after planning `action` for `o`; `now` is an RFC 3339 time.
    REFUSED is why the action was not carried out (etcd or the API server said no).
    QUORUM_LOSS_TIMEOUT (seconds) is how long Available may be False for a lost quorum before
    QuorumLost is set; RESTORE_HINT is what the QuorumLost message tells to do."""
    stalled = _stalled(o, action, refused, previous)
    first: tuple[Condition, ...] = (
        _available(o),
        _progressing(o, action, refused),
        _degraded(o, action, stalled),
        _even_size(o.spec.size),
    )
    stamped = tuple(_stamp(c, previous, generation=generation, now=now) for c in first)
    lost = _quorum_lost(o, stamped[0], now, quorum_loss_timeout, restore_hint)
    stamped += (_stamp(lost, previous, generation=generation, now=now),)
    conditions = (*first, lost)
    # Conditions other controllers own (BackupReady, from the backup schedule) are kept as is.
    computed = {c.type for c in conditions}
    stamped += tuple(c for c in previous.conditions if c.type not in computed)
    members = _members(o, previous)
    if isinstance(action, RemoveMember):
        # The status records the membership the removal leaves behind, even when its answer was
        # lost (the removal may have committed): a list that still holds the member is agreed
        # on by more members and corrects this at the next look, one without it is trusted.
        members = tuple(m for m in members if m.id != f"{action.member_id:x}")
    return EtcdClusterStatus(
        phase=phase(o, action, previous.phase),
        observed_generation=generation,
        cluster_id=cluster_id or previous.cluster_id,
        members=members,
        ready_members=sum(1 for m in members if m.ready and not m.is_learner),
        current_version=_lowest_version(m.version for m in members),
        target_version=o.spec.version,
        cluster_version=o.cluster_version or previous.cluster_version,
        stalled=stalled,
        client_endpoints=client_endpoints,
        compacted_revision=_compacted(o, action, refused, previous.compacted_revision),
        defragmented_members=_defragmented(o, action, refused, previous.defragmented_members),
        conditions=stamped,
        restore=previous.restore,
    )


def phase(o: Observed, action: Action, previous: str) -> str:
    """One word for the printer column; Creating and Healing last until the size is reached."""
    if o.spec.paused:
        return "Paused"
    if o.restore or isinstance(action, FinishRestore):
        return "Restoring"
    if o.members is None:
        return "Degraded" if o.formed else "Creating"
    voters = o.voters
    if sum(v.healthy for v in voters) < quorum(len(voters)):
        return "Degraded"
    if isinstance(action, RemoveMember | CreatePod | DeletePod) and action.reason in HEAL_REASONS:
        return "Healing"
    if isinstance(action, Wait) and action.reason in HOLD_REASONS:
        return "Degraded"  # a held rollout waits for a person: not "Upgrading"
    if any(o.member_version(m) and o.outdated(m) for m in o.members):
        return "Upgrading"
    if len(voters) != o.spec.size or o.learners:
        if len(voters) < o.spec.size and previous in ("Creating", "Healing"):
            return previous
        return "Scaling"
    stuck = isinstance(action, Wait) and action.reason in STUCK_REASONS
    if stuck or not all(v.healthy for v in voters):
        return "Degraded"
    return "Running"


def _available(o: Observed) -> Condition:
    if o.members is None:
        if not o.formed:
            return _cond(AVAILABLE, False, "Creating", "the first member is starting")
        if (not o.pods and not o.claims) or o.all_data_lost:
            return _cond(AVAILABLE, False, "ClusterLost", CLUSTER_LOST)
        return _cond(AVAILABLE, False, "EtcdUnreachable", "no etcd member answers")
    voters = o.voters
    healthy = sum(1 for v in voters if v.healthy)
    need = quorum(len(voters))
    if healthy < need:
        return _cond(
            AVAILABLE,
            False,
            "QuorumLost",
            f"{healthy} of {len(voters)} voting members are healthy; {need} are needed to serve "
            f"writes. {_unhealthy_names(o)} must come back (or be restored from a backup)",
        )
    return _cond(
        AVAILABLE,
        True,
        "QuorumHealthy",
        f"{healthy} of {len(voters)} voting members are healthy (quorum {need})",
    )


QUORUM_LOST = "QuorumLost"
LOSS_REASONS = frozenset({"QuorumLost", "EtcdUnreachable", "ClusterLost"})
"""Reasons of Available=False that mean the cluster had a quorum and lost it."""


def _quorum_lost(
    o: Observed, available: Condition, now: str, timeout: float, hint: str
) -> Condition:
    """True once Available has been False for a lost quorum for TIMEOUT seconds (counted from
    its lastTransitionTime, so a restarted operator counts on). Never during a restore."""
    if o.restore:
        return _cond(QUORUM_LOST, False, "Restoring", "the cluster is being restored in place")
    if available.status == "True" or available.reason not in LOSS_REASONS:
        return _cond(QUORUM_LOST, False, "QuorumPresent", "no quorum loss seen")
    since = available.last_transition_time or now
    gone = (_parse_time(now) - _parse_time(since)).total_seconds()
    if gone < timeout:
        return _cond(
            QUORUM_LOST,
            False,
            "QuorumMissing",
            f"no quorum since {since}; QuorumLost is set after spec.recovery.quorumLossTimeout",
        )
    todo = hint or (
        "create an EtcdRestore naming this cluster and a verified EtcdBackup, or set "
        "spec.recovery.autoRestore: true to have the operator restore the newest verified backup"
    )
    return _cond(
        QUORUM_LOST,
        True,
        available.reason,
        f"no quorum since {since} ({available.message}); nothing is deleted by the operator "
        f"until a restore is asked for: {todo}",
    )


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def _stalled(
    o: Observed, action: Action, refused: str | None, previous: EtcdClusterStatus
) -> UpgradeStall | None:
    """The health gate's record: made when it removes a stalled member, kept while the spec
    asks for that same rollout and some member still lags behind it."""
    if isinstance(action, RemoveMember) and action.reason == "UpgradeStalled" and not refused:
        return UpgradeStall(rollout=o.spec.rollout, member=action.member, message=action.detail)
    before = previous.stalled
    rolling = o.members is None or any(o.outdated(v) for v in o.voters)
    if before is not None and before.rollout == o.spec.rollout and rolling:
        return before
    return None


def rollout_progress(o: Observed) -> str:
    """ "2 of 3 members at 3.6.16" during a rollout, else ""."""
    if o.members is None or not any(o.outdated(v) for v in o.voters):
        return ""
    current = sum(1 for v in o.voters if not o.outdated(v))
    return f"{current} of {o.spec.size} members at {o.spec.version}"


def _progressing(o: Observed, action: Action, refused: str | None) -> Condition:
    progress = rollout_progress(o)
    if progress:
        cond = _progressing_step(action, refused)
        return replace(cond, message=f"{progress}: {cond.message}")
    return _progressing_step(action, refused)


def _progressing_step(action: Action, refused: str | None) -> Condition:
    if refused is not None:
        return _cond(PROGRESSING, False, "StepRefused", f"{describe(action)}: {refused}")
    match action:
        case Done():
            return _cond(PROGRESSING, False, "Reconciled", "the cluster matches its spec")
        case Wait(reason="Paused", message=msg):
            return _cond(PROGRESSING, False, "Paused", msg)
        case Wait(reason=r, message=msg) if r in STUCK_REASONS:
            return _cond(PROGRESSING, False, r, msg)
        case _:
            return _cond(PROGRESSING, True, action.reason, describe(action))


def _degraded(o: Observed, action: Action, stalled: UpgradeStall | None) -> Condition:
    members = _degraded_members(o)
    if members.reason in ("QuorumLost", "EtcdUnreachable"):
        return members  # the worst news first: a held rollout matters less than the quorum
    if stalled is not None:
        return _cond(DEGRADED, True, "UpgradeStalled", stalled.message)
    if isinstance(action, Wait) and action.reason in HOLD_REASONS:
        return _cond(DEGRADED, True, action.reason, action.message)
    return members


def _degraded_members(o: Observed) -> Condition:
    if o.members is None:
        if not o.formed:
            return _cond(DEGRADED, False, "Creating", "the first member is starting")
        return _cond(DEGRADED, True, "EtcdUnreachable", "no etcd member answers")
    voters = o.voters
    healthy = sum(1 for v in voters if v.healthy)
    if healthy < quorum(len(voters)):
        return _cond(
            DEGRADED,
            True,
            "QuorumLost",
            f"{healthy} of {len(voters)} voting members are healthy: {_unhealthy_names(o)} are not",
        )
    full = sorted(m.name for m in o.members if m.health.nospace)
    if full:
        return _cond(
            DEGRADED,
            True,
            "NoSpace",
            f"the NOSPACE alarm is raised on {', '.join(full)}: etcd refuses writes until the "
            "operator has compacted, defragmented and disarmed it (Events say each step)",
        )
    sick = [v for v in sorted(voters, key=lambda m: m.name) if not v.healthy]
    if sick:
        names = ", ".join(_member_label(v) for v in sick)
        what = "is" if len(sick) == 1 else "are"
        first = unhealthy_member(o, voters)
        detail = f"; {first.message}" if first is not None else ""
        reason = first.reason if first is not None else "MemberUnhealthy"
        return _cond(DEGRADED, True, reason, f"member {names} {what} unhealthy{detail}")
    return _cond(DEGRADED, False, "AllMembersHealthy", "every voting member is healthy")


def _even_size(size: int) -> Condition:
    if size % 2 == 0:
        return _cond(
            EVEN_SIZE,
            True,
            "EvenSize",
            f"size {size} tolerates {(size - 1) // 2} failed member(s), no more than size "
            f"{size - 1}, and needs a larger quorum; use an odd size ({size - 1} or {size + 1})",
        )
    return _cond(EVEN_SIZE, False, "OddSize", f"size {size} tolerates {(size - 1) // 2} failures")


def _compacted(o: Observed, action: Action, refused: str | None, previous: int) -> int:
    """The revision compacted at during the current NOSPACE alarm; 0 once no member reports
    the alarm, so the next alarm compacts again."""
    if isinstance(action, Compact) and refused is None:
        return action.revision
    if o.members is not None and not any(m.health.nospace for m in o.members):
        return 0
    return previous


def _defragmented(
    o: Observed, action: Action, refused: str | None, previous: tuple[str, ...]
) -> tuple[str, ...]:
    """The members defragmented during the current NOSPACE alarm; none once it is gone."""
    if o.members is not None and not any(m.health.nospace for m in o.members):
        return ()
    if isinstance(action, Defragment) and refused is None:
        return tuple(sorted({*previous, f"{action.member_id:x}"}))
    return previous


def _members(o: Observed, previous: EtcdClusterStatus) -> tuple[MemberStatus, ...]:
    if o.members is None:
        if any(m.id for m in previous.members):
            # Keep the last membership etcd confirmed (not ready now): it is what a member list
            # answered later must be measured against (observe.agreed_membership).
            return tuple(
                MemberStatus(name=m.name, id=m.id, version=m.version, is_learner=m.is_learner)
                for m in previous.members
            )
        return tuple(
            MemberStatus(name=p.name, version=p.version)
            for p in sorted(o.pods, key=lambda p: p.name)
        )
    return tuple(
        MemberStatus(
            name=m.name,
            id=f"{m.id:x}",
            version=o.member_version(m),
            ready=_ready(o, m),
            is_leader=m.is_leader,
            is_learner=m.is_learner,
        )
        for m in sorted(o.members, key=lambda m: (m.name, m.id))
    )


def _ready(o: Observed, m: Member) -> bool:
    pod = o.pod(m.name)
    alive = m.health.reachable if m.is_learner else m.healthy
    return pod is not None and pod.ready and pod.running and alive


def _lowest_version(versions: Iterable[str]) -> str:
    parsed = []
    for v in versions:
        try:
            parsed.append(parse_version(v))
        except ValueError:
            continue
    return str(min(parsed)) if parsed else ""


def _unhealthy_names(o: Observed) -> str:
    sick = [_member_label(v) for v in sorted(o.voters, key=lambda m: m.name) if not v.healthy]
    return ", ".join(sick) or "no member"


def _member_label(m: Member) -> str:
    why = "unreachable" if not m.health.reachable else "failing health checks"
    return f"{m.name or format(m.id, 'x')} ({why})"


def _cond(type_: str, status: bool, reason: str, message: str) -> Condition:
    return Condition(
        type=type_, status="True" if status else "False", reason=reason, message=message
    )


def _stamp(c: Condition, previous: EtcdClusterStatus, *, generation: int, now: str) -> Condition:
    """Keep lastTransitionTime when the status did not change (the Kubernetes convention)."""
    before = next((p for p in previous.conditions if p.type == c.type), None)
    since = before.last_transition_time if before and before.status == c.status else None
    return Condition(
        type=c.type,
        status=c.status,
        reason=c.reason,
        message=c.message,
        last_transition_time=since or now,
        observed_generation=generation,
    )
