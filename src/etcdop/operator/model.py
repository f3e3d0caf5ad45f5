"""What the planner sees: one snapshot of the world, gathered by the reconciler's I/O shell.

Everything is a frozen value so that a plan depends on nothing but this snapshot. The shell fills
it from the informer cache (pods, claims, the EtcdCluster), the etcd member list, and one status
call per member.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from etcdop.api.duration import parse_duration
from etcdop.api.etcdcluster import EtcdClusterSpec
from etcdop.api.quantity import parse_quantity

InitialClusterState = Literal["new", "existing"]
Strategy = Literal["Surge", "InPlace"]

CATCH_UP_MAX_LAG = 1000
"""A learner within this many raft entries of the leader is caught up and may be promoted."""


class PodPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class MemberPod:
    """A pod the operator created for a member (pod name == member name)."""

    name: str
    phase: PodPhase = PodPhase.RUNNING
    ready: bool = False
    deleting: bool = False
    """metadata.deletionTimestamp is set."""
    initial_cluster_state: InitialClusterState = "existing"
    """From the pod's annotation: "new" only for the seed of a new cluster."""
    version: str = ""
    """etcd version the pod runs (the tag of its image)."""
    data_lost: bool = False
    """Positive evidence that the member's data is unusable: etcd's own fatal error (a wiped or
    truncated log, a member removed from the cluster) in the container's last termination.
    Restarts alone are never evidence: a pod with a restart history may be perfectly sound."""
    last_error: str = ""
    """What the etcd container last died of (reason, exit code, the end of its message), for
    people: shown in conditions, never used to decide."""
    node: str = ""
    """The node the pod is bound to ("" before it is scheduled)."""
    waiting: str = ""
    """Why the pod is not running yet, in the scheduler's or kubelet's words (unschedulable,
    image pull, claim not bound), for people."""
    node_lost: bool = False
    """The pod's node is NotReady, unreachable or gone: a Terminating pod there never finishes."""
    restore: str = ""
    """uid of the EtcdRestore whose seed this pod is (its label); "" for every other pod."""
    pod_hash: str = ""
    """The hash of the spec the pod was rendered from ("" on pods made before hashes: those are
    compared by version only, so an operator upgrade alone does not roll every member)."""
    serving: bool = True
    """In the client Service (label etcdop.io/serving=true)."""
    created: float = 0.0
    """creationTimestamp in seconds since the epoch; 0 when unknown (the health gate never
    fires on an unknown start)."""
    kubelet_synced: bool = True
    """The kubelet has acted on the pod's latest generation (status.observedGeneration), so a
    container it starts now gets the pod's current annotations; True where the kubelet reports
    no observedGeneration (before 1.34 by default), which cannot be waited for."""

    @property
    def running(self) -> bool:
        return self.phase is PodPhase.RUNNING and not self.deleting

    @property
    def stuck(self) -> bool:
        """Being deleted on a lost node: it stays Terminating until the node returns."""
        return self.deleting and self.node_lost

    @property
    def finished(self) -> bool:
        """The pod will never run again (evicted, or its containers exited for good)."""
        return self.phase in (PodPhase.FAILED, PodPhase.SUCCEEDED)


@dataclass(frozen=True)
class MemberHealth:
    """The member's answer to a status call; the default is "did not answer"."""

    reachable: bool = False
    healthy: bool = False
    is_leader: bool = False
    raft_index: int = 0
    version: str = ""
    revision: int = 0
    db_size: int = 0
    """Bytes of the backend file; minus db_size_in_use, what a defragmentation gives back."""
    db_size_in_use: int = 0
    nospace: bool = False
    """The NOSPACE alarm is raised: etcd refuses writes until it is disarmed."""
    storage_version: str = ""
    """The version of the member's data format ("3.6.0"; "" before etcd 3.6): after a downgrade
    is enabled etcd lowers it, and members of the older minor may join only then."""
    downgrade_target: str = ""
    """The version of a downgrade in progress, as this member reports it ("" when none)."""


UNREACHABLE = MemberHealth()


@dataclass(frozen=True)
class Member:
    """An entry of the etcd member list."""

    id: int
    name: str
    """The pod name, from the member's peer URL (empty when the URL is not one of ours)."""
    peer_urls: tuple[str, ...] = ()
    is_learner: bool = False
    started: bool = True
    """etcd reports a member's name only once it has started; an added member that never ran
    (the operator stopped between adding it and creating its pod) has started == False."""
    health: MemberHealth = UNREACHABLE

    @property
    def healthy(self) -> bool:
        return self.health.reachable and self.health.healthy

    @property
    def is_leader(self) -> bool:
        return self.health.reachable and self.health.is_leader


@dataclass(frozen=True)
class DesiredSpec:
    """The parts of the EtcdCluster spec the planner decides on."""

    size: int
    version: str
    paused: bool = False
    quota_bytes: int = 0
    """etcd's backend quota (--quota-backend-bytes); 0 when unknown."""
    uses_claims: bool = False
    """Member data lives on PersistentVolumeClaims (one per member, named like the member)."""
    pod_hash: str = ""
    """The hash of the member pod the spec renders ("" when unknown: versions decide)."""
    strategy: Strategy = "Surge"
    member_ready_timeout: float = 300.0
    """Seconds a new or re-created member may take to be healthy and caught up."""
    backup_before_upgrade: bool = False
    """spec.backup is set and spec.upgrade.backupBeforeUpgrade: a version change waits for a
    backup of the cluster as it was."""

    @classmethod
    def of(cls, spec: EtcdClusterSpec, pod_hash: str = "") -> DesiredSpec:
        return cls(
            size=spec.size,
            version=spec.version,
            paused=spec.paused,
            quota_bytes=int(parse_quantity(spec.backend_quota)),
            uses_claims=spec.storage.uses_claims,
            pod_hash=pod_hash,
            strategy="InPlace" if spec.upgrade.strategy == "InPlace" else "Surge",
            member_ready_timeout=parse_duration(spec.upgrade.member_ready_timeout),
            backup_before_upgrade=spec.backup is not None and spec.upgrade.backup_before_upgrade,
        )

    @property
    def rollout(self) -> str:
        """What names this spec's rollout: its pod hash, else its version."""
        return self.pod_hash or self.version


@dataclass(frozen=True)
class Stall:
    """A rollout the health gate stopped (from status.stalled): no step until the spec changes."""

    rollout: str
    member: str = ""
    message: str = ""


@dataclass(frozen=True)
class UpgradeBackup:
    """The EtcdBackup taken before upgrading to spec.version, as observed."""

    name: str
    phase: str = ""
    """"" while it runs, else Succeeded or Failed."""
    message: str = ""


@dataclass(frozen=True)
class Observed:
    """One snapshot of an EtcdCluster's world."""

    cluster: str
    spec: DesiredSpec
    pods: tuple[MemberPod, ...] = ()
    members: tuple[Member, ...] | None = None
    """The etcd member list; None when no member answered (not created yet, or quorum lost)."""
    claims: frozenset[str] = field(default_factory=frozenset)
    """Names of the members whose data claim exists (empty with emptyDir storage)."""
    bootstrapped: bool = False
    """The cluster formed at some time (status.clusterID is set). Tells a cluster whose members
    are all gone from one not created yet."""
    next_member_name: str = ""
    """The name the next new member gets, chosen by the shell (e.g. `<cluster>-<5 random>`)."""
    compacted_revision: int = 0
    """The revision the operator last compacted at (from status): compaction is done once per
    NOSPACE alarm, not once per look."""
    defragmented: frozenset[int] = field(default_factory=frozenset)
    """Members defragmented during the current NOSPACE alarm (from status): each once."""
    unconfirmed: str = ""
    """Why the member list some members answered was not trusted (members is then None): fewer
    of them agree than a quorum of the voters last recorded. Said in the Wait."""
    restore: str = ""
    """uid of an EtcdRestore to carry out in place (annotated on the cluster and not yet
    recorded as Restored in its status); "" when there is none."""
    bootstrap_blocked: str = ""
    """Why the backup spec.bootstrap names cannot seed the cluster yet ("" when it can, or
    when the cluster starts empty)."""
    now: float = 0.0
    """Seconds since the epoch when observed: the health gate compares pod ages with it."""
    stalled: Stall | None = None
    cluster_version: str = ""
    """The cluster version etcd reports ("3.6.0"); "" when no member said."""
    upgrade_backup: UpgradeBackup | None = None
    """The backup taken before this upgrade to spec.version, None while none exists."""

    def pod(self, name: str) -> MemberPod | None:
        return next((p for p in self.pods if p.name == name), None)

    @property
    def voters(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members or () if not m.is_learner)

    @property
    def learners(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members or () if m.is_learner)

    @property
    def leader(self) -> Member | None:
        return next((m for m in self.voters if m.is_leader), None)

    @property
    def formed(self) -> bool:
        """The cluster exists or existed: recorded in status, or a pod was made to join it."""
        return self.bootstrapped or any(p.initial_cluster_state == "existing" for p in self.pods)

    @property
    def all_data_lost(self) -> bool:
        """Every member pod proves its data unusable and no claim is left without a pod: there
        is nothing left to start a member from."""
        names = {p.name for p in self.pods}
        return bool(self.pods) and all(p.data_lost for p in self.pods) and not (self.claims - names)

    def outdated(self, m: Member) -> bool:
        """The member's pod is not what the spec renders now (version, or pod hash when both
        sides have one)."""
        if self.member_version(m) != self.spec.version:
            return True
        pod = self.pod(m.name)
        return bool(
            pod is not None
            and pod.pod_hash
            and self.spec.pod_hash
            and pod.pod_hash != self.spec.pod_hash
        )

    @property
    def stall(self) -> Stall | None:
        """The recorded stall, if it is about the rollout the spec asks for now."""
        if self.stalled is not None and self.stalled.rollout == self.spec.rollout:
            return self.stalled
        return None

    def member_version(self, m: Member) -> str:
        """The version a member runs: its pod's image tag, else what etcd reports."""
        pod = self.pod(m.name)
        return pod.version if pod is not None and pod.version else m.health.version


def quorum(voters: int) -> int:
    """Votes needed for raft to make progress with this many voting members."""
    return voters // 2 + 1


def caught_up(learner: Member, leader: Member) -> bool:
    """The learner has (nearly) all of the leader's log, so promoting it cannot stall raft."""
    return (
        learner.health.reachable
        and leader.health.reachable
        and leader.health.raft_index - learner.health.raft_index <= CATCH_UP_MAX_LAG
    )
