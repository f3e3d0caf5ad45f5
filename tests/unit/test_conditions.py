"""Status and conditions computed from a snapshot: what a person reads in `kubectl get -o yaml`."""

from __future__ import annotations

from typing import Any

from etcdop.api.etcdcluster import Condition, EtcdClusterStatus
from etcdop.operator.conditions import compute_status, phase
from etcdop.operator.model import DesiredSpec, Member, MemberHealth, MemberPod, Observed
from etcdop.operator.planner import Action, AddLearner, Done, RemoveMember, Wait, plan

V = "3.6.16"
NOW = "2026-11-27T03:00:00Z"
EARLIER = "2026-11-27T01:00:00Z"


def member(n: int, *, leader: bool = False, healthy: bool = True, learner: bool = False) -> Member:
    return Member(
        id=0xA0 + n,
        name=f"demo-{n}",
        is_learner=learner,
        health=MemberHealth(
            reachable=healthy, healthy=healthy and not learner, is_leader=leader,
            raft_index=100, version=V,
        ),
    )


def pod(n: int, version: str = V, ready: bool = True) -> MemberPod:
    return MemberPod(name=f"demo-{n}", ready=ready, version=version)


def observed(members: list[Member] | None, pods: list[MemberPod], size: int = 3,
             **spec: Any) -> Observed:
    return Observed(
        cluster="demo",
        spec=DesiredSpec(size=size, version=V, **spec),
        pods=tuple(pods),
        members=None if members is None else tuple(members),
        bootstrapped=members is not None,
        next_member_name="demo-new",
    )


def status(o: Observed, action: Action | None = None,
           previous: EtcdClusterStatus | None = None) -> EtcdClusterStatus:
    return compute_status(
        o, action if action is not None else plan(o), generation=7, now=NOW,
        previous=previous or EtcdClusterStatus(), client_endpoints=("http://demo:2379",),
        cluster_id="c1",
    )


def cond(s: EtcdClusterStatus, type_: str) -> Condition:
    return next(c for c in s.conditions if c.type == type_)


def test_a_healthy_cluster_reads_running_and_available() -> None:
    o = observed([member(1, leader=True), member(2), member(3)], [pod(1), pod(2), pod(3)])
    s = status(o)
    assert s.phase == "Running"
    assert s.ready_members == 3 and s.current_version == V
    assert s.observed_generation == 7 and s.cluster_id == "c1"
    assert s.client_endpoints == ("http://demo:2379",)
    assert [m.name for m in s.members] == ["demo-1", "demo-2", "demo-3"]
    assert s.members[0].id == "a1" and s.members[0].is_leader and s.members[0].ready
    assert (cond(s, "Available").status, cond(s, "Available").reason) == ("True", "QuorumHealthy")
    assert (cond(s, "Progressing").status, cond(s, "Progressing").reason) == (
        "False", "Reconciled"
    )
    assert (cond(s, "Degraded").status, cond(s, "EvenSize").status) == ("False", "False")
    assert all(c.observed_generation == 7 and c.last_transition_time == NOW for c in s.conditions)


def test_an_unhealthy_member_is_named_in_degraded() -> None:
    o = observed(
        [member(1, leader=True), member(2, healthy=False), member(3)], [pod(1), pod(2), pod(3)]
    )
    s = status(o)
    d = cond(s, "Degraded")
    assert (d.status, d.reason) == ("True", "MemberUnhealthy")
    assert "demo-2 (unreachable)" in d.message
    assert cond(s, "Available").status == "True"
    assert s.ready_members == 2 and s.phase == "Degraded"


def test_quorum_lost_is_unavailable_and_says_who_is_missing() -> None:
    o = observed(
        [member(1, leader=True), member(2, healthy=False), member(3, healthy=False)],
        [pod(1), pod(2), pod(3)],
    )
    s = status(o)
    a = cond(s, "Available")
    assert (a.status, a.reason) == ("False", "QuorumLost")
    assert "demo-2" in a.message and "demo-3" in a.message
    p = cond(s, "Progressing")
    assert (p.status, p.reason) == ("False", "QuorumLost"), "stuck, not progressing"
    assert s.phase == "Degraded"


def test_scaling_up_is_progressing_with_the_step_in_words() -> None:
    o = observed([member(1, leader=True), member(2), member(3)], [pod(1), pod(2), pod(3)], size=5)
    action = plan(o)
    assert isinstance(action, AddLearner)
    s = status(o, action)
    p = cond(s, "Progressing")
    assert (p.status, p.reason) == ("True", "ScaleUp")
    assert "demo-new" in p.message
    assert s.phase == "Scaling"


def test_creating_lasts_until_the_size_is_reached() -> None:
    fresh = observed(None, [])
    s = status(fresh)
    assert s.phase == "Creating"
    assert cond(s, "Available").reason == "Creating"
    growing = observed([member(1, leader=True)], [pod(1)])
    assert phase(growing, plan(growing), previous="Creating") == "Creating"
    assert phase(growing, plan(growing), previous="Running") == "Scaling"


def test_healing_and_upgrading_phases() -> None:
    gone = observed([member(1, leader=True), member(2, healthy=False), member(3)], [pod(1), pod(3)])
    action = plan(gone)
    assert isinstance(action, RemoveMember) and action.reason == "PodGone"
    assert phase(gone, action, previous="Running") == "Healing"
    old = observed(
        [member(1, leader=True), member(2), member(3)], [pod(1, "3.5.35"), pod(2), pod(3)]
    )
    s = status(old)
    assert s.phase == "Upgrading"
    assert s.current_version == "3.5.35", "the cluster runs at its lowest member's version"
    held = Wait("UpgradeBackupFailed", "EtcdBackup demo-before-3-6-16-g2 failed")
    assert phase(old, held, previous="Upgrading") == "Degraded", "held, not upgrading"


def test_paused_is_shown() -> None:
    o = observed([member(1, leader=True)], [pod(1)], size=1, paused=True)
    s = status(o)
    assert s.phase == "Paused"
    assert (cond(s, "Progressing").status, cond(s, "Progressing").reason) == ("False", "Paused")


def test_even_size_warns_with_advice() -> None:
    o = observed([member(1, leader=True), member(2)], [pod(1), pod(2)], size=2)
    e = cond(status(o), "EvenSize")
    assert (e.status, e.reason) == ("True", "EvenSize")
    assert "use an odd size (1 or 3)" in e.message


def test_transition_time_is_kept_while_the_status_holds() -> None:
    o = observed([member(1, leader=True), member(2), member(3)], [pod(1), pod(2), pod(3)])
    before = EtcdClusterStatus(
        conditions=(
            Condition(type="Available", status="True", last_transition_time=EARLIER),
            Condition(type="Degraded", status="True", last_transition_time=EARLIER),
        )
    )
    s = status(o, Done(), previous=before)
    assert cond(s, "Available").last_transition_time == EARLIER
    assert cond(s, "Degraded").last_transition_time == NOW, "Degraded turned False just now"


def test_cluster_id_is_never_cleared() -> None:
    o = observed(None, [])
    s = compute_status(
        o, Wait("ClusterLost", "gone"), generation=1, now=NOW,
        previous=EtcdClusterStatus(cluster_id="c1"),
    )
    assert s.cluster_id == "c1"


def test_members_without_membership_come_from_pods() -> None:
    o = Observed(
        cluster="demo", spec=DesiredSpec(size=3, version=V), pods=(pod(1), pod(2)),
        members=None, bootstrapped=True,
    )
    s = status(o)
    assert [(m.name, m.ready, m.id) for m in s.members] == [
        ("demo-1", False, ""),
        ("demo-2", False, ""),
    ]
    assert s.ready_members == 0
    assert (cond(s, "Degraded").status, cond(s, "Degraded").reason) == ("True", "EtcdUnreachable")


def test_a_learner_is_listed_but_not_counted_ready() -> None:
    o = observed(
        [member(1, leader=True), member(2), member(3), member(4, learner=True)],
        [pod(1), pod(2), pod(3), pod(4)],
        size=4,
    )
    s = status(o)
    learner = next(m for m in s.members if m.name == "demo-4")
    assert learner.is_learner and learner.ready
    assert s.ready_members == 3


def test_a_refused_step_shows_in_progressing_with_the_api_servers_words() -> None:
    """Was: a pod create refused by admission wrote no status at all."""
    o = observed([member(1, leader=True)], [pod(1)])
    refused = "KubernetesRefused: pods: 403 Forbidden: violates PodSecurity restricted"
    s = compute_status(o, AddLearner("demo-new"), generation=7, now=NOW,
                       previous=EtcdClusterStatus(), refused=refused)
    c = cond(s, "Progressing")
    assert (c.status, c.reason) == ("False", "StepRefused")
    assert "PodSecurity" in c.message and "add member demo-new" in c.message


def test_the_last_confirmed_membership_is_kept_while_no_member_answers() -> None:
    """It is what a later member list is measured against: a lone member that came back empty
    must not be able to shrink it by answering first."""
    o = observed([member(1, leader=True), member(2), member(3)], [pod(1), pod(2), pod(3)])
    before = status(o)
    assert [m.id for m in before.members] == ["a1", "a2", "a3"]
    unreachable = observed(None, [pod(1), pod(2), pod(3)])
    after = status(unreachable, previous=before)
    assert [(m.id, m.ready) for m in after.members] == [("a1", False), ("a2", False), ("a3", False)]


def test_a_removal_is_recorded_in_the_membership_before_it_happens() -> None:
    o = observed([member(1, leader=True), member(2), member(3)], [pod(1), pod(2), pod(3)], size=2)
    s = status(o, RemoveMember(0xA3, "demo-3", "ScaleDown"))
    assert [m.id for m in s.members] == ["a1", "a2"]


def test_an_upgrade_says_how_far_it_is_and_what_it_aims_at() -> None:
    o = observed(
        [member(1, leader=True), member(2), member(3)],
        [pod(1, version="3.5.35"), pod(2), pod(3)],
    )
    s = status(o, Wait("LearnerCatchingUp", "learner demo-4 is catching up"))
    assert cond(s, "Progressing").message.startswith("2 of 3 members at 3.6.16: ")
    assert (s.phase, s.target_version) == ("Upgrading", V)


def test_a_stall_is_recorded_before_the_removal_and_kept_until_the_spec_changes() -> None:
    o = observed(
        [member(1, leader=True), member(2), member(3)],
        [pod(1, version="3.5.35"), pod(2, version="3.5.35"), pod(3, version="3.5.35")],
    )
    removal = RemoveMember(0xA4, "demo-4", "UpgradeStalled", "new member demo-4 ... roll back")
    s = status(o, removal)
    assert s.stalled is not None and (s.stalled.rollout, s.stalled.member) == (V, "demo-4")
    degraded = cond(s, "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "UpgradeStalled")
    assert degraded.message == "new member demo-4 ... roll back"
    kept = status(o, Wait("UpgradeStalled", "..."), previous=s)
    assert kept.stalled == s.stalled
    rolled_back = Observed(
        cluster="demo",
        spec=DesiredSpec(size=3, version="3.5.35"),
        pods=o.pods,
        members=o.members,
        bootstrapped=True,
    )
    cleared = status(rolled_back, Done(), previous=s)
    assert cleared.stalled is None and cond(cleared, "Degraded").reason != "UpgradeStalled"


def test_a_lost_quorum_is_told_before_a_held_rollout() -> None:
    o = observed(
        [member(1, leader=True), member(2, healthy=False), member(3, healthy=False)],
        [pod(1), pod(2), pod(3)],
    )
    held = Wait("UpgradeBackupFailed", "EtcdBackup demo-before-3-6-16-g2 failed")
    d = cond(status(o, held), "Degraded")
    assert (d.status, d.reason) == ("True", "QuorumLost"), d
    healthy = observed([member(1, leader=True), member(2), member(3)], [pod(1), pod(2), pod(3)])
    assert cond(status(healthy, held), "Degraded").reason == "UpgradeBackupFailed"
