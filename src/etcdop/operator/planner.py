"""The pure planner: one observed snapshot in, the one next action out.

Safety lives here, not in the I/O shell, so that it can be tested exhaustively:

- one membership change at a time: no add while a learner exists, an added member has no
  running pod, or a voter is unhealthy; no voter removed while a learner exists;
- every membership change needs a quorum of healthy voters and a leader now, and never leaves
  fewer than a quorum of healthy voters after it;
- new members join as learners and are promoted only once caught up with the leader;
- leadership moves away before the leader is removed;
- scale-down removes unhealthy members first, then outdated ones, then followers;
- a member's data is only given up when it is already gone (pod gone with emptyDir, claim gone,
  data reported lost): with a claim, a deleted pod is re-created on the same claim.

Nothing is remembered between plans: an operator killed between any two actions finds the
world in a state this function handles (an added member without a pod gets its pod next).

How the shell carries out each action (all must be idempotent: they may be repeated):

- `Bootstrap(member)`: create the seed pod `member` (and its claim) with
  `initial-cluster-state=new` and an initial cluster of itself alone (pod annotation
  `initial-cluster-state: new`); record status.clusterID once the member list is readable.
- `AddLearner(member)`: MemberAddAsLearner with the member's peer URL
  (`http://<member>.<cluster>-peer.<ns>.svc:2380`); the pod comes with the next plan.
- `CreatePod(member, state)`: create the member's pod (and claim, when storage uses claims) with
  `initial-cluster-state=<state>`; the initial cluster is the current member list. 409 = done.
- `PromoteLearner(member_id)`: MemberPromote; etcd refuses while not in sync (retry later).
- `RemoveMember(member_id)`: MemberRemove; the pod and claim are cleaned by later plans.
- `DeletePod(member)` / `DeleteClaim(member)`: delete; 404 = done.
- `MoveLeader(from_id, to_id)`: MoveLeader called on the current leader.
- `Wait(reason, message)`: nothing to do now; requeue (the reason goes to status and events).
- `Done`: the world is as asked; requeue at the resync period only.

What the shell must guarantee about the snapshot:

- the pod cache has seen the shell's own previous writes (or is a fresh list), so that a pod it
  just created is not taken for a missing one;
- the member list is a linearizable read (MemberList with linearizable=true, etcd >= 3.5), so
  that a lagging member that has not applied an add yet cannot make a new pod look orphaned;
- `Member.name` comes from the peer URL, not from etcd's name field (empty until started).
"""

from __future__ import annotations

from dataclasses import dataclass

from etcdop.api.semver import EtcdVersion, change_refusal, parse_version
from etcdop.operator.model import (
    InitialClusterState,
    Member,
    MemberPod,
    Observed,
    caught_up,
    quorum,
)

# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Bootstrap:
    member: str
    reason: str = "Bootstrap"


@dataclass(frozen=True)
class AddLearner:
    member: str
    reason: str = "ScaleUp"


@dataclass(frozen=True)
class CreatePod:
    member: str
    initial_cluster_state: InitialClusterState
    reason: str = "PodMissing"


@dataclass(frozen=True)
class PromoteLearner:
    member_id: int
    member: str
    reason: str = "LearnerCaughtUp"


@dataclass(frozen=True)
class RemoveMember:
    member_id: int
    member: str
    reason: str
    detail: str = ""
    """For people (status, the Event): what was seen, e.g. why an upgrade stalled."""


@dataclass(frozen=True)
class DeletePod:
    member: str
    reason: str
    force: bool = False
    """Delete at once (grace period 0): only for a pod whose node is lost and whose member is
    already out of the cluster, so no process of it can still be serving."""


@dataclass(frozen=True)
class MarkFormed:
    """Switch the seed pod's annotation to `existing`: a container restart reads it (through
    the downward API) as etcd's --initial-cluster-state, so a restarted seed resumes on its data
    or, on an empty data directory, fails instead of founding a second cluster."""

    member: str
    reason: str = "ClusterFormed"


@dataclass(frozen=True)
class DeleteClaim:
    member: str
    reason: str = "NotAMember"


@dataclass(frozen=True)
class MoveLeader:
    from_id: int
    to_id: int
    reason: str = "LeaderToBeRemoved"


@dataclass(frozen=True)
class Compact:
    """Compact the history at REVISION: the first step out of a NOSPACE alarm."""

    revision: int
    reason: str = "NoSpaceCompact"


@dataclass(frozen=True)
class Defragment:
    """Give the space compaction freed back to the file system, one member at a time."""

    member_id: int
    member: str
    reason: str = "NoSpaceDefragment"


@dataclass(frozen=True)
class DisarmAlarm:
    reason: str = "NoSpaceDisarm"


@dataclass(frozen=True)
class RestoreSeed:
    """Create the seed of a restore: a pod labelled with the restore's uid whose first init
    container restores the snapshot into its data directory before etcd starts (as a new
    cluster of itself). The shell records the restore in status, and forgets the old
    membership, before it creates the pod."""

    member: str
    restore: str
    reason: str = "RestoreSeed"


@dataclass(frozen=True)
class FinishRestore:
    """The seed serves the restored data: record the restore as done (status.restore), so the
    cluster grows back to its size by the ordinary path."""

    member: str
    restore: str
    reason: str = "Restored"


@dataclass(frozen=True)
class StopTraffic:
    """Take a member out of the client Service before it is removed or restarted, so clients
    of the Service do not land on a member in the middle of leaving."""

    member: str
    reason: str = "MemberLeaving"


@dataclass(frozen=True)
class StartTraffic:
    """Put healthy, current voters in the client Service (new members start outside it)."""

    members: tuple[str, ...]
    reason: str = "MemberServing"


@dataclass(frozen=True)
class EnableDowngrade:
    """etcd's downgrade API (3.6+): lowers the cluster version to VERSION's minor so members of
    that minor may join; then members are replaced as in an upgrade."""

    version: str
    reason: str = "DowngradeEnabled"


@dataclass(frozen=True)
class CancelDowngrade:
    """End etcd's downgrade to VERSION: the spec went back up before any member went down."""

    version: str
    reason: str = "DowngradeCancelled"


@dataclass(frozen=True)
class TakeBackup:
    """Create the EtcdBackup of the cluster as it is, before members of VERSION replace it."""

    version: str
    reason: str = "BackupBeforeUpgrade"


@dataclass(frozen=True)
class Wait:
    reason: str
    message: str


@dataclass(frozen=True)
class Done:
    reason: str = "Reconciled"


Action = (
    Bootstrap
    | AddLearner
    | CreatePod
    | PromoteLearner
    | RemoveMember
    | DeletePod
    | MarkFormed
    | DeleteClaim
    | MoveLeader
    | Compact
    | Defragment
    | DisarmAlarm
    | RestoreSeed
    | FinishRestore
    | StopTraffic
    | StartTraffic
    | EnableDowngrade
    | CancelDowngrade
    | TakeBackup
    | Wait
    | Done
)
MembershipChange = AddLearner | PromoteLearner | RemoveMember


def describe(action: Action) -> str:
    """One line for logs and events."""
    match action:
        case Bootstrap(member=m):
            return f"bootstrap a new cluster with seed member {m}"
        case AddLearner(member=m):
            return f"add member {m} as a learner"
        case CreatePod(member=m, initial_cluster_state=s):
            return f"create the pod of member {m} (initial-cluster-state={s})"
        case PromoteLearner(member=m, member_id=i):
            return f"promote learner {m} ({i:x}) to a voting member"
        case RemoveMember(member=m, member_id=i, reason=r):
            return f"remove member {m or '?'} ({i:x}) from the cluster: {r}"
        case DeletePod(member=m, reason=r, force=f):
            return f"{'force-' if f else ''}delete pod {m}: {r}"
        case MarkFormed(member=m):
            return f"mark seed {m} as a member of a formed cluster (initial-cluster-state=existing)"
        case DeleteClaim(member=m, reason=r):
            return f"delete the data claim of {m}: {r}"
        case MoveLeader(from_id=f, to_id=t):
            return f"move leadership from {f:x} to {t:x}"
        case Compact(revision=r):
            return f"compact the history at revision {r} (NOSPACE alarm)"
        case Defragment(member=m, member_id=i):
            return f"defragment member {m} ({i:x}) (NOSPACE alarm)"
        case DisarmAlarm():
            return "disarm the NOSPACE alarm: the database fits its quota again"
        case RestoreSeed(member=m):
            return f"create seed member {m}, which restores the snapshot before etcd starts"
        case FinishRestore(member=m):
            return f"seed member {m} serves the restored data; growing back to the spec's size"
        case StopTraffic(member=m, reason=r):
            return f"take member {m} out of the client Service: {r}"
        case StartTraffic(members=ms):
            return f"put member {', '.join(ms)} in the client Service"
        case EnableDowngrade(version=v):
            return f"enable etcd's downgrade of the cluster version to {v}"
        case CancelDowngrade(version=v):
            return f"cancel etcd's downgrade to {v}: spec.version no longer asks for it"
        case TakeBackup(version=v):
            return f"take a backup of the cluster before upgrading to {v}"
        case Wait(message=msg):
            return msg
        case Done():
            return "nothing to do"


# ---------------------------------------------------------------- the plan


def plan(o: Observed) -> Action:
    """The one next action that moves the world toward `o.spec` safely."""
    if o.spec.paused:
        return Wait("Paused", "spec.paused is true; set it to false to resume reconciling")
    if o.restore:
        return _restore(o, o.restore)
    terminating = sorted(p.name for p in o.pods if p.deleting and not p.stuck)
    if terminating:
        return Wait("PodTerminating", f"waiting for pod {terminating[0]} to terminate")
    if o.members is None:
        return _without_membership(o)
    return _with_membership(o, o.members)


def _without_membership(o: Observed) -> Action:
    """No member answered: create the cluster, wait for it, or restart members on their data."""
    if not o.formed:
        if not o.pods:
            if o.bootstrap_blocked:
                return Wait("BootstrapSourceNotReady", o.bootstrap_blocked)
            return _fresh_name(o) or Bootstrap(o.next_member_name)
        seeds = sorted(o.pods, key=lambda p: p.name)
        if len(seeds) > 1:
            # Two seeds would be two clusters: keep the first by name.
            return DeletePod(seeds[-1].name, "DuplicateSeed")
        if seeds[0].finished:
            return DeletePod(seeds[0].name, "SeedFailed")
        return Wait("SeedStarting", f"waiting for the first member {seeds[0].name} to start")
    if (not o.pods and not o.claims) or o.all_data_lost:
        return Wait("ClusterLost", CLUSTER_LOST)
    if o.spec.uses_claims:
        for p in sorted(o.pods, key=lambda p: p.name):
            if p.finished and p.name in o.claims and not p.data_lost:
                return DeletePod(p.name, "PodFailed")  # re-created on its claim next
        names = {p.name for p in o.pods}
        for c in sorted(o.claims - names):
            return CreatePod(c, "existing", reason="PodMissing")
    if o.unconfirmed:
        return Wait(
            "MembershipUnconfirmed",
            f"{o.unconfirmed}; no member is added, removed or deleted until they do",
        )
    return Wait("EtcdUnreachable", "no etcd member answers; waiting for the member pods")


def _restore(o: Observed, uid: str) -> Action:
    """Restore in place: every pod of the old cluster goes (and its claim), then one seed made
    for this restore starts from the snapshot; done once it serves. Decided from the pods' restore
    labels alone, so a restarted operator neither makes a second seed nor keeps an old member."""
    old = sorted((p for p in o.pods if p.restore != uid), key=lambda p: p.name)
    for p in old:
        if not p.deleting:
            return DeletePod(p.name, "Restore")
    for p in old:
        if p.stuck:
            return DeletePod(p.name, "Restore", force=True)
    if old:
        return Wait("RestoreStopping", f"waiting for pod {old[0].name} of the old cluster to stop")
    seeds = sorted((p for p in o.pods if p.restore == uid), key=lambda p: p.name)
    for c in sorted(o.claims - {p.name for p in seeds}):
        return DeleteClaim(c, reason="Restore")
    if not seeds:
        return _fresh_name(o) or RestoreSeed(o.next_member_name, uid)
    if len(seeds) > 1:
        return DeletePod(seeds[-1].name, "DuplicateSeed")
    seed = seeds[0]
    if seed.deleting:
        return Wait("RestoreStopping", f"waiting for seed pod {seed.name} to stop")
    member = next((m for m in o.members or () if m.name == seed.name), None)
    if member is not None and member.healthy and not member.is_learner:
        return FinishRestore(seed.name, uid)
    if seed.finished:
        return DeletePod(seed.name, "SeedFailed")
    why = f": {seed.waiting}" if seed.waiting else ""
    seen = f" (last exit: {seed.last_error})" if seed.last_error else ""
    return Wait(
        "Restoring",
        f"seed member {seed.name} is restoring the snapshot and starting{why}{seen}",
    )


CLUSTER_LOST = (
    "every member's data is gone; restore from a backup (EtcdRestore) or delete and re-create "
    "this EtcdCluster"
)


def _with_membership(o: Observed, members: tuple[Member, ...]) -> Action:
    by_name = {m.name: m for m in members if m.name}
    pods = {p.name: p for p in o.pods}
    ordered = sorted(members, key=lambda m: (m.name, m.id))

    # The seed of a formed cluster must never found another one on an emptied data dir.
    for p in sorted(o.pods, key=lambda p: p.name):
        if p.initial_cluster_state == "new" and p.name in by_name and not p.deleting:
            return MarkFormed(p.name)

    # Restore members that need no membership change: no quorum needed for these.
    for m in ordered:
        if not m.name or m.name in pods:
            continue
        if not m.started:
            return CreatePod(m.name, "existing", reason="MemberAdded")
        if o.spec.uses_claims and m.name in o.claims:
            return CreatePod(m.name, "existing", reason="PodMissing")
    if o.spec.uses_claims:
        for m in ordered:
            pod = pods.get(m.name)
            if pod is not None and pod.finished and m.name in o.claims and not pod.data_lost:
                return DeletePod(m.name, "PodFailed")  # re-created on its claim next

    voters = o.voters
    healthy = [v for v in voters if v.healthy]
    if not voters or len(healthy) < quorum(len(voters)):
        return Wait(
            "QuorumLost",
            f"only {len(healthy)} of {len(voters)} voting members are healthy; a quorum of "
            f"{quorum(len(voters))} is needed before membership can change",
        )
    leader = o.leader
    if leader is None:
        return Wait("NoLeader", "waiting for the members to elect a leader")

    space = _recover_space(o, leader)
    if space is not None:
        return space

    # Clean what is not a member. The member list came with a quorum, so it is current.
    for p in sorted(o.pods, key=lambda p: p.name):
        if p.name not in by_name and not (p.deleting and not p.stuck):
            return DeletePod(p.name, "NotAMember", force=p.stuck)
    for c in sorted(o.claims):
        if c not in by_name and c not in pods:
            return DeleteClaim(c)

    lost = {m.id: reason for m in members if (reason := _lost(o, m, pods.get(m.name)))}

    serve = _to_serve(o, pods)
    if serve:
        return StartTraffic(serve)

    # A learner is dealt with before anything else changes membership.
    for learner in sorted(o.learners, key=lambda m: (m.name, m.id)):
        pod = pods.get(learner.name)
        if learner.id in lost:
            return RemoveMember(learner.id, learner.name, lost[learner.id])
        if pod is None:  # not reached: such a learner is lost or got its pod above
            return Wait("PodStarting", f"waiting for the pod of learner {learner.name}")
        if o.outdated(learner):
            return RemoveMember(learner.id, learner.name, "LearnerOutdated")
        if not _want_more_voters(o):
            return RemoveMember(learner.id, learner.name, "LearnerNotNeeded")
        ready = pod.running and caught_up(learner, leader)
        if not ready and _rolling(o) and _past_gate(o, pod):
            return RemoveMember(
                learner.id, learner.name, "UpgradeStalled", _stalled_learner(o, learner, leader)
            )
        if not pod.running:
            if any(v.id in lost for v in o.voters):
                # It holds nothing yet: it yields to the voter that must be replaced first.
                return RemoveMember(learner.id, learner.name, "LearnerYieldsToLostVoter")
            why = f": {pod.waiting}" if pod.waiting else ""
            return Wait("PodStarting", f"waiting for the pod of learner {learner.name} to run{why}")
        if not caught_up(learner, leader):
            return Wait("LearnerCatchingUp", f"learner {learner.name} is catching up")
        # A promotion raises the quorum: only with every voter healthy, but for voters that
        # are gone for good (removed right after, as no voter leaves while a learner waits).
        sick = unhealthy_member(o, tuple(v for v in voters if v.id not in lost))
        if sick is not None:
            return sick
        return PromoteLearner(learner.id, learner.name)

    # Voters whose data is gone are removed (and replaced by the scale-up below).
    for v in sorted(voters, key=lambda m: (m.name, m.id)):
        if v.id in lost:
            return _remove_voter(o, v, lost[v.id])

    cancel = downgrade_to_cancel(o)
    if cancel is not None:
        return cancel
    outdated = [v for v in voters if o.outdated(v)]
    if outdated:
        refused = version_refusal(o, leader)
        if refused is not None:
            return refused
        held = backup_first(o, outdated)
        if held is not None:
            return held
    if len(voters) > o.spec.size:
        victim = min(
            voters,
            key=lambda v: (v.healthy, v not in outdated, v.is_leader, v.name, v.id),
        )
        return _remove_voter(o, victim, "Outdated" if victim in outdated else "ScaleDown")
    if outdated and len(voters) == o.spec.size:
        stall = o.stall
        if stall is not None:
            return Wait("UpgradeStalled", stall.message)
        if _restarts_in_place(o):
            return _in_place(o, leader, outdated, pods)
        # InPlace on one or two members would stop the quorum: those surge instead.
    if len(voters) < o.spec.size or outdated:
        blocker = _add_blocker(o, voters, pods)
        if blocker is not None:
            return blocker
        reason = "ScaleUp" if len(voters) < o.spec.size else "Upgrade"
        return _fresh_name(o) or AddLearner(o.next_member_name, reason=reason)
    for p in sorted(o.pods, key=lambda p: p.name):
        if not p.serving and p.running and not p.node_lost and not p.kubelet_synced:
            return Wait(
                "KubeletSyncing",
                f"pod {p.name} serves clients once its kubelet has its latest spec "
                "(a restart before would not see initial-cluster-state=existing)",
            )
    return Done()


def _lost(o: Observed, m: Member, pod: MemberPod | None) -> str | None:
    """Why a member can never serve again with its data, or None."""
    if not m.name:
        return "UnknownMember"
    if pod is None:
        if not m.started:
            return None
        if o.spec.uses_claims:
            return None if m.name in o.claims else "DataGone"
        return "PodGone"
    if m.healthy:
        return None  # whatever its pod says, etcd answers for this member
    if pod.data_lost and m.started:
        return "DataLost"  # a member that never ran had no data to lose (it may just retry)
    if o.spec.uses_claims:
        return None  # its data outlives the pod: restarted on its claim, never given up on a guess
    if pod.finished:
        return "PodFailed"
    if pod.stuck:
        return "NodeLost"
    return None


NOSPACE_HEADROOM = 0.9
"""The alarm is disarmed only when every member's backend file takes at most this share of the
quota: etcd raises NOSPACE on the file's size, not on the data in use."""


def _recover_space(o: Observed, leader: Member) -> Action | None:
    """Out of a NOSPACE alarm: compact once, defragment each member once (the leader last, one
    at a time, only while every member answers), and disarm when every file fits; None when
    there is no alarm."""
    members = o.members or ()
    if not any(m.health.nospace for m in members):
        return None
    if not o.compacted_revision:
        # Once per alarm (status clears the mark when the alarm is gone): deletes and lease
        # expiries still move the revision under NOSPACE, and compacting again each time would
        # never let defragmentation start.
        return Compact(leader.health.revision)
    away = sorted(m.name or f"{m.id:x}" for m in members if not m.healthy)
    if away:
        # A defragmenting member serves nothing: never while another one is already out (a
        # defragmentation still running after an operator restart looks exactly like that).
        return Wait(
            "NoSpace",
            f"waiting for {', '.join(away)} to answer before defragmenting (NOSPACE alarm)",
        )
    for m in sorted(members, key=lambda m: (m.is_leader, m.name, m.id)):
        if m.id not in o.defragmented:
            # Every member, once: a follower's "in use" figure does not drop after a
            # compaction while writes are refused (bbolt frees pages at the next write), so
            # only a defragmentation shows what its data really takes.
            return Defragment(m.id, m.name)
    largest = max(m.health.db_size for m in members)
    if o.spec.quota_bytes and largest > NOSPACE_HEADROOM * o.spec.quota_bytes:
        return Wait(
            "NoSpace",
            f"the database takes {largest} bytes of the {o.spec.quota_bytes}-byte quota even "
            "after compaction and defragmentation; raise spec.backendQuota or delete keys. etcd "
            "refuses writes until then",
        )
    return DisarmAlarm()


def _want_more_voters(o: Observed) -> bool:
    voters = o.voters
    return len(voters) < o.spec.size or any(o.member_version(v) != o.spec.version for v in voters)


def _remove_voter(o: Observed, victim: Member, reason: str) -> Action:
    voters = o.voters
    pod = o.pod(victim.name)
    leaving = reason in ("Outdated", "ScaleDown") and victim.healthy and not victim.is_leader
    if leaving and pod is not None and pod.serving:
        return StopTraffic(victim.name)  # an unhealthy member is not Ready: out already
    if victim.is_leader:
        others = [v for v in voters if v.id != victim.id and v.healthy]
        if not others:
            return Wait("NoLeaderCandidate", f"no healthy member to take over from {victim.name}")
        target = min(others, key=lambda v: (o.member_version(v) != o.spec.version, v.name, v.id))
        return MoveLeader(victim.id, target.id)
    healthy_after = sum(1 for v in voters if v.healthy and v.id != victim.id)
    if healthy_after < quorum(len(voters) - 1):
        return Wait(
            "QuorumGuard",
            f"removing {victim.name} would leave {healthy_after} healthy of "
            f"{len(voters) - 1} voting members, fewer than a quorum",
        )
    return RemoveMember(victim.id, victim.name, reason)


def _add_blocker(
    o: Observed, voters: tuple[Member, ...], pods: dict[str, MemberPod]
) -> Wait | None:
    """Why a member cannot be added now (the previous change has not settled), or None."""
    for m in sorted(o.members or (), key=lambda m: m.name):
        pod = pods.get(m.name)
        if pod is not None and pod.stuck:
            continue  # not starting: it is lost with its node (said below)
        if pod is None or not pod.running or not m.started:
            return Wait("PodStarting", f"waiting for member {m.name} to start")
    return unhealthy_member(o, voters)


def unhealthy_member(o: Observed, voters: tuple[Member, ...]) -> Wait | None:
    """A Wait naming the first unhealthy voter and what a person can do about it, or None."""
    for v in sorted(voters, key=lambda m: m.name):
        if v.healthy:
            continue
        pod = o.pod(v.name)
        if pod is not None and pod.stuck:
            return Wait(
                "NodeLost",
                f"member {v.name} is stuck Terminating on node {pod.node or '?'}, which is not "
                f"Ready; its data is on claim {v.name}. Bring the node back, or, if it is gone "
                f"for good, delete the Node object (kubectl delete node {pod.node or '<node>'}) "
                "so the pod is re-created on its claim elsewhere",
            )
        seen = f" (last exit: {pod.last_error})" if pod is not None and pod.last_error else ""
        hint = (
            "it restarts in place on its claim; check its logs"
            if o.spec.uses_claims
            else "delete its pod to have it replaced"
        )
        return Wait("MemberUnhealthy", f"member {v.name} is unhealthy{seen}; {hint}")
    return None


def _fresh_name(o: Observed) -> Wait | None:
    """A Wait when the shell's proposed member name is unusable (empty or taken)."""
    taken = {p.name for p in o.pods} | {m.name for m in o.members or ()} | set(o.claims)
    if not o.next_member_name or o.next_member_name in taken:
        return Wait("NameTaken", f"member name {o.next_member_name!r} is taken; retrying")
    return None


# ---------------------------------------------------------------- upgrades


def _rolling(o: Observed) -> bool:
    """Some voter's pod is not what the spec renders: a rollout is under way."""
    return any(o.outdated(v) for v in o.voters)


def _past_gate(o: Observed, pod: MemberPod) -> bool:
    """The pod has had spec.upgrade.memberReadyTimeout to become ready, and did not."""
    return bool(pod.created and o.now and o.now - pod.created > o.spec.member_ready_timeout)


def _seen(o: Observed, m: Member, leader: Member) -> str:
    """What a person needs to judge a member that does not come up: pod, etcd, last exit."""
    pod = o.pod(m.name)
    parts = [f"pod {pod.phase.value if pod else 'missing'}"]
    if pod is not None and pod.waiting:
        parts.append(f"waiting: {pod.waiting}")
    if not m.health.reachable:
        parts.append("etcd does not answer")
    elif m.is_learner:
        parts.append(f"raft index {m.health.raft_index} of the leader's {leader.health.raft_index}")
    else:
        parts.append("etcd answers but is not healthy")
    if pod is not None and pod.last_error:
        parts.append(f"last exit: {pod.last_error}")
    return "; ".join(parts)


def _timeout(o: Observed) -> str:
    return f"{o.spec.member_ready_timeout:g}s (spec.upgrade.memberReadyTimeout)"


def _old_versions(o: Observed) -> str:
    return ", ".join(sorted({o.member_version(v) for v in o.voters if o.outdated(v)})) or "?"


def _stalled_learner(o: Observed, learner: Member, leader: Member) -> str:
    voters = len(o.voters)
    return (
        f"new member {learner.name} (etcd {o.spec.version}) was not healthy and caught up "
        f"within {_timeout(o)}: {_seen(o, learner, leader)}. It was removed again; the cluster "
        f"stays at {voters} members on {_old_versions(o)}. Fix the cause (image, resources, "
        f"pod template) and change the spec, or set spec.version back to roll back"
    )


def _to_serve(o: Observed, pods: dict[str, MemberPod]) -> tuple[str, ...]:
    """Healthy current voters outside the client Service, unless the cluster is too big (one of
    them may be about to leave)."""
    if len(o.voters) > o.spec.size:
        return ()
    out = []
    for v in sorted(o.voters, key=lambda m: m.name):
        pod = pods.get(v.name)
        if (
            pod is not None
            and not pod.serving
            and pod.running
            and pod.kubelet_synced
            and v.healthy
            and not o.outdated(v)
        ):
            out.append(v.name)
    return tuple(out)


def version_refusal(o: Observed, leader: Member) -> Action | None:
    """etcd's version policy against what the members run: a Wait saying why not, the
    downgrade API when going back a minor after a completed upgrade, or None."""
    target = o.spec.version
    for v in sorted(o.voters, key=lambda m: m.name):
        running = o.member_version(v)
        refused = change_refusal(running, target) if running else None
        if refused is not None:
            return Wait(
                "VersionRefused",
                f"spec.version {target}: member {v.name} runs {running}; {refused}",
            )
    try:
        want = parse_version(target)
        speaks = parse_version(o.cluster_version) if o.cluster_version else None
    except ValueError:
        return None
    if speaks is None or (speaks.major, speaks.minor) <= (want.major, want.minor):
        return _storage_downgrade(o, want)
    if (speaks.major, speaks.minor) < (3, 6):
        return Wait(
            "VersionRefused",
            f"spec.version {target}: the cluster speaks {speaks.major}.{speaks.minor} (every "
            f"member ran it), and etcd before 3.6 has no downgrade API to go back; restore a "
            f"backup taken before the upgrade into a new cluster, or set spec.version back",
        )
    if not _restarts_in_place(o):
        # Measured on 3.5.35: while a downgrade is enabled a member of the older minor refuses to
        # join as a new member ("incompatible with current running cluster"), so only members
        # restarted on their own data can go back.
        return Wait(
            "VersionRefused",
            f"spec.version {target}: going back from {speaks.major}.{speaks.minor} to "
            f"{want.major}.{want.minor} needs each member restarted on its own data (etcd "
            f"{want.major}.{want.minor} does not join a downgrading cluster as a new member); "
            f"use spec.upgrade.strategy InPlace with persistentVolumeClaim storage and at least "
            f"3 members, set spec.version back, or restore a backup taken before the upgrade "
            f"into a new cluster",
        )
    sick = unhealthy_member(o, o.voters)
    if sick is not None:
        return sick
    return EnableDowngrade(f"{want.major}.{want.minor}")


def _restarts_in_place(o: Observed) -> bool:
    """Members are re-created on their claims, one at a time: InPlace, and a member may stop
    without stopping the quorum (with one or two members, InPlace surges instead)."""
    n = len(o.voters)
    return o.spec.strategy == "InPlace" and o.spec.uses_claims and n > quorum(n)


def downgrade_to_cancel(o: Observed) -> CancelDowngrade | None:
    """A downgrade etcd still runs while spec.version is back at a newer minor (set back before
    the downgrade finished): cancelled, or etcd would keep the cluster at the lower version."""
    target = next((v.health.downgrade_target for v in o.voters if v.health.downgrade_target), "")
    if not target:
        return None
    try:
        down, want = parse_version(target), parse_version(o.spec.version)
    except ValueError:
        return None
    if (want.major, want.minor) > (down.major, down.minor):
        return CancelDowngrade(target)
    return None


def backup_first(o: Observed, outdated: list[Member]) -> Action | None:
    """Before the first member of a newer version: a backup of the cluster as it is, and a
    failed one holds the upgrade. Never for a rollback or a downgrade (the way back does not
    wait on the backup storage), nor while the cluster is short a voter (healing first)."""
    if not o.spec.backup_before_upgrade or len(o.voters) < o.spec.size:
        return None
    try:
        want = parse_version(o.spec.version)
        running = [parse_version(v) for m in o.members or () if (v := o.member_version(m))]
    except ValueError:
        return None
    if not running or max(running) >= want:
        return None  # a member runs it already (begun, or going back), or nothing to compare
    b = o.upgrade_backup
    if b is None:
        return TakeBackup(o.spec.version)
    if b.phase == "Succeeded":
        return None
    if b.phase == "Failed":
        return Wait(
            "UpgradeBackupFailed",
            f"EtcdBackup {b.name}, taken before upgrading to {o.spec.version}, failed: "
            f"{b.message or 'no reason given'}. The upgrade waits: fix the backup storage and "
            f"delete {b.name} to take it again, or set spec.upgrade.backupBeforeUpgrade to "
            f"false",
        )
    return Wait(
        "BackupBeforeUpgrade",
        f"waiting for EtcdBackup {b.name} before upgrading to {o.spec.version}",
    )


def _storage_downgrade(o: Observed, want: EtcdVersion) -> Wait | None:
    """After a downgrade is enabled etcd rewrites each member's data format to the older minor
    (a few seconds); a member of that minor joins or restarts only on data it can read."""
    for m in sorted(o.members or (), key=lambda m: m.name):
        try:
            stored = parse_version(m.health.storage_version) if m.health.storage_version else None
        except ValueError:
            continue
        if stored is not None and (stored.major, stored.minor) > (want.major, want.minor):
            return Wait(
                "DowngradeStorage",
                f"waiting for etcd to downgrade the storage version of member {m.name} "
                f"({stored} to {want.major}.{want.minor}) before members of {want} join",
            )
    return None


def _in_place(
    o: Observed, leader: Member, outdated: list[Member], pods: dict[str, MemberPod]
) -> Action:
    """Re-create one outdated member's pod on its claim at a time, the leader last, once the
    previous one is healthy and caught up again."""
    voters = o.voters
    for v in sorted(voters, key=lambda m: m.name):
        pod = pods.get(v.name)
        if pod is None or o.outdated(v):
            continue
        if v.healthy and pod.running and caught_up(v, leader):
            continue
        if _past_gate(o, pod):
            return Wait(
                "UpgradeStalled",
                f"member {v.name}, re-created at etcd {o.spec.version} on its claim, was not "
                f"healthy and caught up within {_timeout(o)}: {_seen(o, v, leader)}. Check its "
                f"logs (kubectl logs {v.name} -c etcd); fix the cause and change the spec, or "
                f"set spec.version back to roll back",
            )
        return Wait("MemberStarting", f"waiting for member {v.name} to be healthy and caught up")
    # A member that is down already costs nothing to restart: it goes first.
    down = [v for v in outdated if not v.healthy]
    victim = min(down or outdated, key=lambda v: (v.is_leader, v.name, v.id))
    if victim.is_leader:
        others = [v for v in voters if v.id != victim.id and v.healthy]
        if not others:
            return Wait("NoLeaderCandidate", f"no healthy member to take over from {victim.name}")
        target = min(others, key=lambda v: (o.outdated(v), v.name, v.id))
        return MoveLeader(victim.id, target.id, reason="LeaderToBeRestarted")
    if victim.healthy:
        healthy_after = sum(1 for v in voters if v.healthy and v.id != victim.id)
        if healthy_after < quorum(len(voters)):
            return Wait(
                "QuorumGuard",
                f"restarting {victim.name} would leave {healthy_after} healthy of "
                f"{len(voters)} voting members, fewer than a quorum",
            )
    pod = pods.get(victim.name)
    if pod is not None and pod.serving:
        return StopTraffic(victim.name)
    return DeletePod(victim.name, "UpgradeInPlace")
