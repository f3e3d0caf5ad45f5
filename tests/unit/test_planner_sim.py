"""The planner driving a simulated world: faults, resizes and upgrades arrive between steps.

The simulation models what matters to safety (who is a voter, who is alive, who has data) and
nothing of the I/O. Properties: no operator action ever drops the healthy voters below a quorum
when there was one, there is never more than one unsettled member, no member's data is thrown
away while it is the data of a live member, and once faults stop the cluster converges to the
spec with no orphan left. The operator keeps no memory between steps, so being killed between
any two steps is the normal case here; a crash inside a step (claim created, pod not) is a fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etcdop.operator.model import (
    DesiredSpec,
    InitialClusterState,
    Member,
    MemberHealth,
    MemberPod,
    Observed,
    PodPhase,
    Stall,
    Strategy,
    quorum,
)
from etcdop.operator.planner import (
    Action,
    AddLearner,
    Bootstrap,
    CreatePod,
    DeleteClaim,
    DeletePod,
    Done,
    MarkFormed,
    MoveLeader,
    PromoteLearner,
    RemoveMember,
    StartTraffic,
    StopTraffic,
    Wait,
    plan,
)

VERSIONS = ("3.5.35", "3.6.16")


@dataclass
class SimMember:
    id: int
    name: str
    learner: bool
    started: bool = False
    caught_up: bool = False


@dataclass
class SimPod:
    name: str
    version: str
    state: InitialClusterState
    phase: PodPhase = PodPhase.PENDING
    data_lost: bool = False
    serving: bool = False
    created: float = 0.0


@dataclass
class World:
    spec: DesiredSpec
    pods: dict[str, SimPod] = field(default_factory=dict)
    members: dict[int, SimMember] = field(default_factory=dict)
    claims: set[str] = field(default_factory=set)
    has_data: set[str] = field(default_factory=set)
    """Members whose data exists (in the pod's emptyDir, or on the claim)."""
    cluster_id: bool = False
    leader: int | None = None
    index: int = 10_000
    names: int = 0
    ids: int = 0
    log: list[str] = field(default_factory=list)
    now: float = 1_000_000.0
    broken: set[str] = field(default_factory=set)
    """Versions whose pods never start (an image that exits at once)."""
    stalled: Stall | None = None
    """status.stalled, as the shell writes it before the removal it explains."""

    # -- truth ---------------------------------------------------------------------------

    def alive(self, m: SimMember) -> bool:
        pod = self.pods.get(m.name)
        return (
            pod is not None
            and pod.phase is PodPhase.RUNNING
            and not pod.data_lost
            and m.started
            and m.name in self.has_data
        )

    def voters(self) -> list[SimMember]:
        return [m for m in self.members.values() if not m.learner]

    def has_quorum(self) -> bool:
        voters = self.voters()
        return bool(voters) and sum(self.alive(v) for v in voters) >= quorum(len(voters))

    def healthy_voters(self) -> int:
        return sum(self.alive(v) for v in self.voters()) if self.has_quorum() else 0

    # -- observation ---------------------------------------------------------------------

    def observe(self) -> Observed:
        members: tuple[Member, ...] | None = None
        if any(self.alive(m) for m in self.members.values()):
            self.cluster_id = True
            quorate = self.has_quorum()
            members = tuple(
                Member(
                    id=m.id,
                    name=m.name,
                    is_learner=m.learner,
                    started=m.started,
                    health=MemberHealth(
                        reachable=self.alive(m),
                        healthy=self.alive(m) and quorate and not m.learner,
                        is_leader=quorate and m.id == self.leader,
                        raft_index=self.index if not m.learner or m.caught_up else 0,
                        version=self.pods[m.name].version if m.name in self.pods else "",
                    ),
                )
                for m in self.members.values()
            )
        return Observed(
            cluster="sim",
            spec=self.spec,
            pods=tuple(
                MemberPod(
                    name=p.name,
                    phase=p.phase,
                    ready=p.phase is PodPhase.RUNNING,
                    initial_cluster_state=p.state,
                    version=p.version,
                    data_lost=p.data_lost,
                    serving=p.serving,
                    created=p.created,
                )
                for p in self.pods.values()
            ),
            members=members,
            claims=frozenset(self.claims),
            bootstrapped=self.cluster_id,
            next_member_name=f"sim-{self.names:03d}",
            now=self.now,
            stalled=self.stalled,
        )

    # -- the operator's actions ----------------------------------------------------------

    def apply(self, action: Action) -> None:
        self.log.append(repr(action))
        match action:
            case Bootstrap(member=name):
                self.names += 1
                self._new_pod(name, "new")
            case AddLearner(member=name):
                self.names += 1
                self.ids += 1
                self.members[1000 + self.ids] = SimMember(1000 + self.ids, name, learner=True)
            case CreatePod(member=name, initial_cluster_state=state):
                self._new_pod(name, state)
            case PromoteLearner(member_id=mid):
                m = self.members[mid]
                assert m.learner and m.caught_up, "promoted a learner that is not caught up"
                m.learner = False
            case RemoveMember(member_id=mid, reason=reason, detail=detail):
                assert self.has_quorum(), "membership changed without quorum"
                victim = self.members.pop(mid)
                assert victim.id != self.leader, "removed the leader"
                pod = self.pods.get(victim.name)
                if self.alive(victim) and not victim.learner:
                    assert pod is not None and not pod.serving, "removed a member clients use"
                if reason == "UpgradeStalled":
                    self.stalled = Stall(self.spec.rollout, victim.name, detail)
            case DeletePod(member=name):
                gone = self.pods.pop(name)
                member = next((m for m in self.members.values() if m.name == name), None)
                if member is not None and self.alive_pod(gone, member):
                    assert not gone.serving, "restarted a member clients use"
                if not self.spec.uses_claims:
                    self.has_data.discard(name)
            case MarkFormed(member=name):
                assert any(m.name == name for m in self.members.values()), "marked a non-member"
                self.pods[name].state = "existing"
            case DeleteClaim(member=name):
                assert all(m.name != name for m in self.members.values()), "deleted member data"
                self.claims.discard(name)
                self.has_data.discard(name)
            case MoveLeader(from_id=f, to_id=t):
                assert f == self.leader and self.alive(self.members[t])
                self.leader = t
            case StopTraffic(member=name):
                self.pods[name].serving = False
            case StartTraffic(members=names):
                for name in names:
                    member = next(m for m in self.members.values() if m.name == name)
                    assert not member.learner and self.alive(member), "served a learner"
                    self.pods[name].serving = True
            case Wait() | Done():
                pass

    def alive_pod(self, pod: SimPod, m: SimMember) -> bool:
        return pod.phase is PodPhase.RUNNING and not pod.data_lost and m.started

    def _new_pod(self, name: str, state: InitialClusterState) -> None:
        if self.spec.uses_claims and name not in self.claims:
            self.claims.add(name)
        self.pods[name] = SimPod(name, self.spec.version, state, created=self.now)

    # -- time passing --------------------------------------------------------------------

    def tick(self) -> None:
        """Kubernetes and etcd move on: pods start, members join and catch up, leaders elect."""
        self.index += 50
        self.now += 20.0
        for m in self.members.values():
            if m.learner and self.alive(m) and self.has_quorum():
                m.caught_up = True
        for p in list(self.pods.values()):
            if p.phase is PodPhase.PENDING:
                if p.version not in self.broken:
                    p.phase = PodPhase.RUNNING
                continue
            if p.phase is not PodPhase.RUNNING or p.data_lost:
                continue
            member = next((m for m in self.members.values() if m.name == p.name), None)
            if member is None and p.state == "new" and not self.members:
                self.ids += 1
                self.members[self.ids] = SimMember(self.ids, p.name, False, True, True)
                self.has_data.add(p.name)
                self.leader = self.ids
            elif member is not None and not member.started and self.has_quorum():
                member.started = True
                self.has_data.add(p.name)
        if self.leader not in self.members or not self.alive(self.members[self.leader]):
            self.leader = None
        if self.leader is None and self.has_quorum():
            self.leader = min(v.id for v in self.voters() if self.alive(v))

    # -- faults --------------------------------------------------------------------------

    def fault(self, kind: str, pick: int) -> None:
        """Break one live member, but only when a quorum survives it (else skip)."""
        live = sorted(m.name for m in self.members.values() if self.alive(m))
        if kind in ("delete_pod", "wipe_data", "evict") and live:
            voters = self.voters()
            alive_after = sum(self.alive(v) for v in voters) - 1
            if alive_after < quorum(len(voters)):
                return
            name = live[pick % len(live)]
            self.log.append(f"fault {kind} {name}")
            if kind == "delete_pod":
                self.pods.pop(name)
                if not self.spec.uses_claims:
                    self.has_data.discard(name)
            elif kind == "wipe_data":
                self.pods[name].data_lost = True
                self.has_data.discard(name)
            else:
                self.pods[name].phase = PodPhase.FAILED
                if not self.spec.uses_claims:
                    self.has_data.discard(name)
        elif kind == "resize":
            self.spec = replace(self.spec, size=1 + pick % 5)
            self.log.append(f"fault resize {self.spec.size}")
        elif kind == "upgrade":
            self.spec = replace(self.spec, version=VERSIONS[pick % 2])
        elif kind == "pause":
            self.spec = replace(self.spec, paused=not self.spec.paused)
            self.log.append(f"fault version {self.spec.version}")
        elif kind == "half_create" and self.spec.uses_claims:
            # The operator died after creating a claim, before creating the pod.
            unstarted = [m for m in self.members.values() if m.name not in self.pods]
            if unstarted:
                self.claims.add(unstarted[0].name)

    # -- settled? ------------------------------------------------------------------------

    def converged(self) -> bool:
        voters = self.voters()
        names = {m.name for m in self.members.values()}
        return (
            not self.spec.paused
            and all(self.pods[v.name].serving for v in voters)
            and len(voters) == self.spec.size
            and len(voters) == len(self.members)
            and all(self.alive(v) for v in voters)
            and all(self.pods[v.name].version == self.spec.version for v in voters)
            and set(self.pods) == names
            and (self.claims == names if self.spec.uses_claims else not self.claims)
        )


def unsettled(w: World) -> int:
    """Members in the middle of joining: learners, or added but never started."""
    return sum(1 for m in w.members.values() if m.learner or not m.started)


def step(w: World) -> Action:
    """One reconcile: observe, plan, act; checking the safety properties around the act."""
    quorate_before = w.has_quorum()
    live_before = {m.name for m in w.members.values() if w.alive(m)}
    data_before = set(w.has_data)
    action = plan(w.observe())
    w.apply(action)
    if quorate_before:
        assert w.has_quorum(), f"{action} lost quorum\n" + "\n".join(w.log)
    assert unsettled(w) <= 1, "two membership changes at once\n" + "\n".join(w.log)
    lost = (data_before - w.has_data) & live_before
    assert not lost, f"{action} threw away the data of live member(s) {lost}"
    return action


def run_until_done(w: World, limit: int = 120) -> None:
    for _ in range(limit):
        action = step(w)
        if isinstance(action, Done) and w.converged():
            return
        w.tick()
    raise AssertionError("did not converge:\n" + "\n".join(w.log[-40:]))


FAULTS = st.sampled_from(
    ("delete_pod", "wipe_data", "evict", "resize", "upgrade", "half_create", "pause")
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(1, 5),
    uses_claims=st.booleans(),
    in_place=st.booleans(),
    events=st.lists(
        st.tuples(st.integers(0, 6), FAULTS, st.integers(0, 20)), min_size=0, max_size=6
    ),
)
def test_faults_between_steps_never_break_safety_and_the_cluster_converges(
    size: int, uses_claims: bool, in_place: bool, events: list[tuple[int, str, int]]
) -> None:
    strategy: Strategy = "InPlace" if in_place and uses_claims else "Surge"
    spec = DesiredSpec(size=size, version=VERSIONS[0], uses_claims=uses_claims, strategy=strategy)
    w = World(spec=spec)
    run_until_done(w)
    for steps, kind, pick in events:
        w.fault(kind, pick)
        for _ in range(steps):
            step(w)
            w.tick()
    if w.spec.paused:
        w.spec = replace(w.spec, paused=False)
    run_until_done(w, limit=200)
    assert w.converged()


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 5), uses_claims=st.booleans())
def test_a_new_cluster_grows_to_its_size(size: int, uses_claims: bool) -> None:
    w = World(spec=DesiredSpec(size=size, version=VERSIONS[1], uses_claims=uses_claims))
    run_until_done(w)
    bootstraps = [e for e in w.log if e.startswith("Bootstrap")]
    assert len(bootstraps) == 1
    adds = [e for e in w.log if e.startswith("AddLearner")]
    assert len(adds) == size - 1


def test_an_upgrade_keeps_every_member_count_at_or_above_size() -> None:
    w = World(spec=DesiredSpec(size=3, version=VERSIONS[0]))
    run_until_done(w)
    w.spec = replace(w.spec, version=VERSIONS[1])
    for _ in range(120):
        action = step(w)
        assert sum(w.alive(v) for v in w.voters()) >= 3, "capacity shrank during the upgrade"
        if isinstance(action, Done) and w.converged():
            break
        w.tick()
    assert w.converged()
    removed = [e for e in w.log if e.startswith("RemoveMember")]
    assert len(removed) == 3 and all("Outdated" in e for e in removed)


def test_a_scale_up_cancelled_between_add_and_pod_is_unwound() -> None:
    w = World(spec=DesiredSpec(size=3, version=VERSIONS[0]))
    run_until_done(w)
    w.spec = replace(w.spec, size=5)
    step(w)  # adds a learner
    assert any(m.learner for m in w.members.values())
    w.spec = replace(w.spec, size=3)
    w.tick()
    action = step(w)
    # The added member is not needed any more: it goes (it was never a voter).
    assert isinstance(action, CreatePod | RemoveMember)
    run_until_done(w)
    assert len(w.members) == 3


def upgraded(w: World, limit: int = 200) -> list[Action]:
    """Steps until the world runs the spec, checking capacity never drops below a quorum."""
    actions = []
    for _ in range(limit):
        action = step(w)
        actions.append(action)
        assert w.has_quorum(), "quorum lost during the upgrade\n" + "\n".join(w.log)
        if isinstance(action, Done) and w.converged():
            return actions
        w.tick()
    raise AssertionError("did not converge:\n" + "\n".join(w.log[-40:]))


def test_a_surge_upgrade_replaces_the_leader_last_and_never_removes_a_serving_member() -> None:
    w = World(spec=DesiredSpec(size=3, version=VERSIONS[0]))
    run_until_done(w)
    leader = w.members[w.leader or 0].name
    w.spec = replace(w.spec, version=VERSIONS[1])
    actions = upgraded(w)
    removed = [a.member for a in actions if isinstance(a, RemoveMember)]
    assert len(removed) == 3 and removed[-1] == leader, removed
    stops = [a.member for a in actions if isinstance(a, StopTraffic)]
    assert stops == removed


def test_an_in_place_upgrade_keeps_every_member_and_restarts_the_leader_last() -> None:
    spec = DesiredSpec(size=3, version=VERSIONS[0], uses_claims=True, strategy="InPlace")
    w = World(spec=spec)
    run_until_done(w)
    ids = set(w.members)
    leader = w.members[w.leader or 0].name
    w.spec = replace(w.spec, version=VERSIONS[1])
    actions = upgraded(w)
    assert set(w.members) == ids, "in place must keep the members"
    assert not any(isinstance(a, AddLearner | RemoveMember) for a in actions)
    restarted = [a.member for a in actions if isinstance(a, DeletePod)]
    assert sorted(restarted) == sorted(m.name for m in w.members.values())
    assert restarted[-1] == leader
    assert any(isinstance(a, MoveLeader) for a in actions)


def test_a_new_member_that_never_starts_stalls_and_the_cluster_stays_whole() -> None:
    w = World(spec=DesiredSpec(size=3, version=VERSIONS[0], member_ready_timeout=60))
    run_until_done(w)
    old = {m.name for m in w.members.values()}
    w.broken.add(VERSIONS[1])
    w.spec = replace(w.spec, version=VERSIONS[1])
    start = len(w.log)
    waits = []
    for _ in range(40):
        action = step(w)
        if isinstance(action, Wait):
            waits.append(action.reason)
        w.tick()
    assert w.stalled is not None and "was not healthy and caught up" in w.stalled.message
    assert waits[-1] == "UpgradeStalled"
    assert {m.name for m in w.members.values()} == old, "the stalled learner must be gone"
    assert sum(w.alive(v) for v in w.voters()) == 3
    assert sum("AddLearner" in e for e in w.log[start:]) == 1, "no second attempt at the same spec"
    w.spec = replace(w.spec, version=VERSIONS[0])  # roll back
    run_until_done(w)
    assert {m.name for m in w.members.values()} == old


def test_paused_holds_an_upgrade_between_steps_and_resumes() -> None:
    w = World(spec=DesiredSpec(size=3, version=VERSIONS[0]))
    run_until_done(w)
    w.spec = replace(w.spec, version=VERSIONS[1])
    step(w)
    w.tick()
    step(w)
    w.tick()
    w.spec = replace(w.spec, paused=True)
    before = (dict(w.members), w.log[-1])
    for _ in range(5):
        assert step(w) == Wait(
            "Paused", "spec.paused is true; set it to false to resume reconciling"
        )
        w.tick()
    assert set(w.members) == set(before[0])
    w.spec = replace(w.spec, paused=False)
    upgraded(w)
