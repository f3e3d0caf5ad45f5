"""The planner on hand-written situations: each names the rule it pins down."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from etcdop.operator.model import (
    DesiredSpec,
    Member,
    MemberHealth,
    MemberPod,
    Observed,
    PodPhase,
    Stall,
    UpgradeBackup,
)
from etcdop.operator.planner import (
    Action,
    AddLearner,
    Bootstrap,
    CancelDowngrade,
    Compact,
    CreatePod,
    Defragment,
    DeleteClaim,
    DeletePod,
    DisarmAlarm,
    Done,
    EnableDowngrade,
    MarkFormed,
    MoveLeader,
    PromoteLearner,
    RemoveMember,
    StartTraffic,
    StopTraffic,
    TakeBackup,
    Wait,
    describe,
    plan,
)

V = "3.6.16"
OLD = "3.5.35"
NAMES3 = ("demo-1", "demo-2", "demo-3")


def healthy(leader: bool = False, index: int = 5000, version: str = V) -> MemberHealth:
    return MemberHealth(
        reachable=True, healthy=True, is_leader=leader, raft_index=index, version=version
    )


def voter(n: int, leader: bool = False, **kw: Any) -> Member:
    return Member(id=n, name=f"demo-{n}", health=healthy(leader), **kw)


def pod(n: int, **kw: Any) -> MemberPod:
    defaults: dict[str, Any] = {"phase": PodPhase.RUNNING, "ready": True, "version": V}
    defaults.update(kw)
    return MemberPod(name=f"demo-{n}", **defaults)


def world(
    members: list[Member] | None,
    pods: list[MemberPod],
    size: int = 3,
    version: str = V,
    claims: set[str] | None = None,
    bootstrapped: bool = True,
    paused: bool = False,
) -> Observed:
    return Observed(
        cluster="demo",
        spec=DesiredSpec(size=size, version=version, paused=paused, uses_claims=claims is not None),
        pods=tuple(pods),
        members=None if members is None else tuple(members),
        claims=frozenset(claims or ()),
        bootstrapped=bootstrapped,
        next_member_name="demo-new",
    )


def healthy_three(**kw: Any) -> Observed:
    return world(
        [voter(1, leader=True), voter(2), voter(3)],
        [pod(1), pod(2), pod(3)],
        **kw,
    )


def test_a_new_cluster_starts_from_one_seed() -> None:
    assert plan(world(None, [], bootstrapped=False)) == Bootstrap("demo-new")


def test_the_seed_is_waited_for_not_duplicated() -> None:
    seed = pod(1, phase=PodPhase.PENDING, initial_cluster_state="new", ready=False)
    action = plan(world(None, [seed], bootstrapped=False))
    assert isinstance(action, Wait) and action.reason == "SeedStarting"


def test_a_failed_seed_is_deleted_so_bootstrap_can_retry() -> None:
    seed = pod(1, phase=PodPhase.FAILED, initial_cluster_state="new")
    assert plan(world(None, [seed], bootstrapped=False)) == DeletePod("demo-1", "SeedFailed")


def test_the_cluster_grows_one_learner_at_a_time() -> None:
    action = plan(world([voter(1, leader=True)], [pod(1)]))
    assert action == AddLearner("demo-new", reason="ScaleUp")


def test_an_added_member_without_pod_gets_its_pod_not_a_second_add() -> None:
    # The operator died between MemberAddAsLearner and creating the pod.
    added = Member(id=9, name="demo-9", is_learner=True, started=False)
    action = plan(world([voter(1, leader=True), added], [pod(1)]))
    assert action == CreatePod("demo-9", "existing", reason="MemberAdded")


def test_a_learner_is_promoted_only_when_caught_up() -> None:
    behind = Member(
        id=9,
        name="demo-9",
        is_learner=True,
        health=MemberHealth(reachable=True, raft_index=10),
    )
    waiting = plan(world([voter(1, leader=True), behind], [pod(1), pod(9)]))
    assert isinstance(waiting, Wait) and waiting.reason == "LearnerCatchingUp"
    level = Member(
        id=9,
        name="demo-9",
        is_learner=True,
        health=MemberHealth(reachable=True, raft_index=4990),
    )
    assert plan(world([voter(1, leader=True), level], [pod(1), pod(9)])) == PromoteLearner(
        9, "demo-9"
    )


def test_no_add_while_a_member_pod_is_not_running() -> None:
    action = plan(
        world([voter(1, leader=True), voter(2)], [pod(1), pod(2, phase=PodPhase.PENDING)])
    )
    assert isinstance(action, Wait) and action.reason == "PodStarting"


def test_a_healthy_cluster_of_the_right_size_is_done() -> None:
    assert plan(healthy_three()) == Done()


def test_paused_waits_whatever_the_state() -> None:
    action = plan(world(None, [], paused=True, bootstrapped=False))
    assert isinstance(action, Wait) and action.reason == "Paused"


def test_scale_down_removes_a_follower_not_the_leader() -> None:
    action = plan(healthy_three(size=1))
    assert action == StopTraffic("demo-2")  # clients of the Service leave it first
    obs = healthy_three(size=1)
    obs = replace(obs, pods=tuple(replace(p, serving=p.name != "demo-2") for p in obs.pods))
    assert plan(obs) == RemoveMember(2, "demo-2", "ScaleDown")


def test_scale_down_removes_unhealthy_members_first() -> None:
    sick = Member(id=2, name="demo-2", health=MemberHealth(reachable=True, healthy=False))
    five = world(
        [voter(1, leader=True), sick, voter(3), voter(4), voter(5)],
        [pod(i) for i in range(1, 6)],
    )
    assert plan(five) == RemoveMember(2, "demo-2", "ScaleDown")


def test_leadership_moves_before_the_leader_is_removed() -> None:
    # Upgrade: the leader is the last old member; it must hand over before it goes.
    obs = world(
        [voter(1, leader=True), voter(2), voter(3), voter(4)],
        [pod(1, version=OLD), pod(2), pod(3), pod(4)],
    )
    assert plan(obs) == MoveLeader(1, 2)


def test_removal_that_would_lose_quorum_waits() -> None:
    down = Member(id=2, name="demo-2")
    obs = world([voter(1, leader=True), down, voter(3)], [pod(1), pod(2), pod(3)], size=2)
    # The unhealthy member goes first: removing it keeps 2 of 2 healthy.
    assert plan(obs) == RemoveMember(2, "demo-2", "ScaleDown")
    obs = world(
        [voter(1, leader=True), down, Member(id=3, name="demo-3"), voter(4)],
        [pod(1), pod(2), pod(3), pod(4)],
        size=3,
    )
    # 2 healthy of 4: quorum 3 is not met, nothing may change.
    action = plan(obs)
    assert isinstance(action, Wait) and action.reason == "QuorumLost"


def test_emptydir_member_whose_pod_is_gone_is_removed_then_replaced() -> None:
    obs = world([voter(1, leader=True), Member(id=2, name="demo-2"), voter(3)], [pod(1), pod(3)])
    assert plan(obs) == RemoveMember(2, "demo-2", "PodGone")
    after = world([voter(1, leader=True), voter(3)], [pod(1), pod(3)])
    assert plan(after) == AddLearner("demo-new", reason="ScaleUp")


def test_claim_member_whose_pod_is_gone_gets_its_pod_back() -> None:
    obs = world(
        [voter(1, leader=True), Member(id=2, name="demo-2"), voter(3)],
        [pod(1), pod(3)],
        claims={"demo-1", "demo-2", "demo-3"},
    )
    assert plan(obs) == CreatePod("demo-2", "existing", reason="PodMissing")


def test_claim_member_whose_claim_is_gone_is_removed() -> None:
    obs = world(
        [voter(1, leader=True), Member(id=2, name="demo-2"), voter(3)],
        [pod(1), pod(3)],
        claims={"demo-1", "demo-3"},
    )
    assert plan(obs) == RemoveMember(2, "demo-2", "DataGone")


def test_wiped_data_removes_the_member_even_with_a_claim() -> None:
    obs = world(
        [voter(1, leader=True), Member(id=2, name="demo-2"), voter(3)],
        [pod(1), pod(2, data_lost=True), pod(3)],
        claims={"demo-1", "demo-2", "demo-3"},
    )
    assert plan(obs) == RemoveMember(2, "demo-2", "DataLost")


def test_orphan_pods_and_claims_are_cleaned() -> None:
    obs = world(
        [voter(1, leader=True), voter(2), voter(3)],
        [pod(1), pod(2), pod(3), pod(7)],
        claims={"demo-1", "demo-2", "demo-3", "demo-7", "demo-8"},
    )
    assert plan(obs) == DeletePod("demo-7", "NotAMember")
    obs = world(
        [voter(1, leader=True), voter(2), voter(3)],
        [pod(1), pod(2), pod(3)],
        claims={"demo-1", "demo-2", "demo-3", "demo-8"},
    )
    assert plan(obs) == DeleteClaim("demo-8")


def test_no_voter_is_removed_while_a_learner_exists() -> None:
    learner = Member(
        id=9, name="demo-9", is_learner=True, health=MemberHealth(reachable=True, raft_index=1)
    )
    obs = world(
        [voter(1, leader=True), Member(id=2, name="demo-2"), voter(3), learner],
        [pod(1), pod(3), pod(9)],
    )
    action = plan(obs)
    # demo-2's pod is gone, but the learner settles first (catching up here).
    assert isinstance(action, Wait) and action.reason == "LearnerCatchingUp"


def test_a_learner_left_over_from_a_cancelled_scale_up_is_removed() -> None:
    learner = Member(
        id=9, name="demo-9", is_learner=True, health=MemberHealth(reachable=True, raft_index=1)
    )
    obs = world(
        [voter(1, leader=True), voter(2), voter(3), learner], [pod(i) for i in (1, 2, 3, 9)]
    )
    assert plan(obs) == RemoveMember(9, "demo-9", "LearnerNotNeeded")


def test_upgrade_adds_a_new_member_before_removing_an_old_one() -> None:
    obs = world(
        [voter(1, leader=True), voter(2), voter(3)],
        [pod(1, version=OLD), pod(2, version=OLD), pod(3, version=OLD)],
    )
    assert plan(obs) == AddLearner("demo-new", reason="Upgrade")
    surged = world(
        [voter(1, leader=True), voter(2), voter(3), voter(4)],
        [pod(1, version=OLD), pod(2, version=OLD), pod(3, version=OLD), pod(4)],
    )
    assert plan(surged) == StopTraffic("demo-2")
    drained = replace(
        surged, pods=tuple(replace(p, serving=p.name != "demo-2") for p in surged.pods)
    )
    assert plan(drained) == RemoveMember(2, "demo-2", "Outdated")


def test_all_members_lost_with_emptydir_asks_for_a_restore() -> None:
    action = plan(world(None, []))
    assert isinstance(action, Wait) and action.reason == "ClusterLost"
    assert "EtcdRestore" in action.message


def test_all_pods_lost_with_claims_restarts_members_on_their_claims() -> None:
    obs = world(None, [], claims={"demo-1", "demo-2", "demo-3"})
    assert plan(obs) == CreatePod("demo-1", "existing", reason="PodMissing")


def test_a_terminating_pod_is_waited_for() -> None:
    obs = world(
        [voter(1, leader=True), voter(2), voter(3)], [pod(1), pod(2, deleting=True), pod(3)]
    )
    action = plan(obs)
    assert isinstance(action, Wait) and "demo-2" in action.message


def test_a_taken_member_name_is_never_added() -> None:
    obs = Observed(
        cluster="demo",
        spec=DesiredSpec(size=2, version=V),
        pods=(pod(1),),
        members=(voter(1, leader=True),),
        bootstrapped=True,
        next_member_name="demo-1",
    )
    action = plan(obs)
    assert isinstance(action, Wait) and action.reason == "NameTaken"


def test_every_action_describes_itself() -> None:
    actions: list[Action] = [
        Bootstrap("a"),
        AddLearner("a"),
        CreatePod("a", "new"),
        PromoteLearner(1, "a"),
        RemoveMember(255, "a", "ScaleDown"),
        DeletePod("a", "x"),
        DeleteClaim("a"),
        MoveLeader(1, 2),
        Wait("R", "waiting"),
        Done(),
        MarkFormed("a"),
        DeletePod("a", "x", force=True),
    ]
    texts = [describe(a) for a in actions]
    assert all(texts) and len(set(texts)) == len(texts)
    assert "ff" in describe(RemoveMember(255, "a", "ScaleDown"))


# ---------------------------------------------------------------- safety (issue 7)


def sick(n: int) -> Member:
    return Member(id=n, name=f"demo-{n}", health=MemberHealth(reachable=False))


def test_the_seed_of_a_formed_cluster_is_marked_existing_first() -> None:
    """A seed left at `new` would found a second cluster if restarted on an emptied data dir."""
    obs = world(
        [voter(1, leader=True), voter(2), voter(3)],
        [pod(1, initial_cluster_state="new"), pod(2), pod(3)],
    )
    assert plan(obs) == MarkFormed("demo-1")


def test_a_member_that_answers_healthy_is_never_taken_for_lost() -> None:
    obs = world(
        [voter(1, leader=True), voter(2), voter(3)],
        [pod(1), pod(2, data_lost=True), pod(3)],
    )
    assert plan(obs) == Done()


def test_a_crash_looping_member_on_a_claim_without_evidence_is_kept() -> None:
    """Was: restarts alone made a member DataLost, and its claim was deleted."""
    obs = world(
        [voter(1, leader=True), sick(2), voter(3)],
        [pod(1), pod(2, ready=False, last_error="OOMKilled, exit code 137, 5 restart(s)"), pod(3)],
        claims={"demo-1", "demo-2", "demo-3"},
    )
    assert plan(obs) == Done()  # nothing removed, nothing deleted; status says Degraded
    grow = world(
        [voter(1, leader=True), sick(2), voter(3)],
        [pod(1), pod(2, ready=False, last_error="OOMKilled, exit code 137"), pod(3)],
        claims={"demo-1", "demo-2", "demo-3"},
        size=5,
    )
    action = plan(grow)
    assert isinstance(action, Wait) and action.reason == "MemberUnhealthy"
    assert "OOMKilled" in action.message


def test_a_crash_looping_emptydir_member_without_evidence_is_not_replaced() -> None:
    obs = world([voter(1, leader=True), sick(2), voter(3)], [pod(1), pod(2, ready=False), pod(3)])
    assert plan(obs) == Done()


def test_a_pod_stuck_terminating_on_a_lost_node_does_not_freeze_the_cluster() -> None:
    """Was: any Terminating pod made the planner wait, and one on a dead node never finishes."""
    stuck = pod(2, deleting=True, node="n2", node_lost=True)
    obs = world([voter(1, leader=True), sick(2), voter(3)], [pod(1), stuck, pod(3)])
    assert plan(obs) == RemoveMember(2, "demo-2", "NodeLost")
    removed = world([voter(1, leader=True), voter(3)], [pod(1), stuck, pod(3)])
    assert plan(removed) == DeletePod("demo-2", "NotAMember", force=True)


def test_a_pod_stuck_on_a_lost_node_with_a_claim_says_what_to_do() -> None:
    stuck = pod(2, deleting=True, node="n2", node_lost=True)
    obs = world(
        [voter(1, leader=True), sick(2), voter(3)],
        [pod(1), stuck, pod(3)],
        claims={"demo-1", "demo-2", "demo-3"},
        size=5,
    )
    action = plan(obs)
    assert isinstance(action, Wait) and action.reason == "NodeLost"
    assert "kubectl delete node n2" in action.message


def test_a_learner_is_not_promoted_while_a_voter_is_unhealthy() -> None:
    learner = Member(
        id=9,
        name="demo-9",
        is_learner=True,
        health=MemberHealth(reachable=True, raft_index=5000),
    )
    obs = world(
        [voter(1, leader=True), sick(2), voter(3), learner],
        [pod(1), pod(2, ready=False), pod(3), pod(9)],
        size=4,
    )
    action = plan(obs)
    assert isinstance(action, Wait) and action.reason == "MemberUnhealthy"


def test_a_cluster_whose_every_member_lost_its_data_is_lost() -> None:
    obs = world(None, [pod(1, data_lost=True)], size=1)
    action = plan(obs)
    assert isinstance(action, Wait) and action.reason == "ClusterLost"


def test_an_unconfirmed_membership_is_waited_on() -> None:
    obs = replace(world(None, [pod(1), pod(2), pod(3)]), unconfirmed="1 member(s) report ...")
    action = plan(obs)
    assert isinstance(action, Wait) and action.reason == "MembershipUnconfirmed"


def full(n: int, leader: bool = False, size: int = 100, in_use: int = 100) -> Member:
    h = replace(healthy(leader), nospace=True, revision=900, db_size=size, db_size_in_use=in_use)
    return Member(id=n, name=f"demo-{n}", health=h)


def test_a_nospace_alarm_is_compacted_defragmented_leader_last_and_disarmed() -> None:
    """Was: nothing handled NOSPACE; every member failed its health check and the operator
    waited forever while etcd refused every write."""
    pods = [pod(1), pod(2), pod(3)]
    alarmed = world([full(1, leader=True), full(2), full(3)], pods)
    assert plan(alarmed) == Compact(900)
    compacted = replace(alarmed, compacted_revision=900)
    # each member once, followers first, whatever its "in use" figure says (a follower's does
    # not drop after a compaction while writes are refused)
    assert plan(compacted) == Defragment(2, "demo-2")
    assert plan(replace(compacted, defragmented=frozenset({2}))) == Defragment(3, "demo-3")
    assert plan(replace(compacted, defragmented=frozenset({2, 3}))) == Defragment(1, "demo-1")
    done = replace(
        world([full(1, True, 30, 30), full(2, False, 30, 30), full(3, False, 30, 30)], pods),
        compacted_revision=900,
        defragmented=frozenset({1, 2, 3}),
    )
    assert plan(done) == DisarmAlarm()


def test_a_nospace_alarm_that_compaction_cannot_clear_says_what_to_do() -> None:
    quota = 100
    obs = replace(
        world(
            [full(1, True, 100, 95), full(2, False, 100, 95), full(3, False, 100, 95)],
            [pod(1), pod(2), pod(3)],
        ),
        compacted_revision=900,
        defragmented=frozenset({1, 2, 3}),
    )
    obs = replace(obs, spec=replace(obs.spec, quota_bytes=quota))
    action = plan(obs)
    assert isinstance(action, Wait) and action.reason == "NoSpace"
    assert "spec.backendQuota" in action.message


def test_nospace_compacts_once_per_alarm_and_never_defragments_beside_a_silent_member() -> None:
    """Was: deletes under NOSPACE moved the revision, so the planner compacted again on every
    look and never reached defragmentation; and a member still defragmenting (silent) was
    skipped, so a second one could be taken out of service beside it."""
    pods = [pod(1), pod(2), pod(3)]
    moved = replace(
        world([full(1, leader=True), full(2, in_use=30), full(3, in_use=30)], pods),
        compacted_revision=850,  # the revision has moved on since: deletes still apply
    )
    assert plan(moved) == Defragment(2, "demo-2")
    silent = replace(
        world([full(1, leader=True), full(2, in_use=30), sick(3)], pods),
        compacted_revision=850,
    )
    action = plan(silent)
    assert isinstance(action, Wait) and action.reason == "NoSpace" and "demo-3" in action.message


def test_a_learner_whose_pod_cannot_run_yields_to_a_lost_voter() -> None:
    """Was: a learner stuck Pending held every other change, a voter whose pod was gone too."""
    learner = Member(id=9, name="demo-9", is_learner=True, started=False)
    obs = world(
        [voter(1, leader=True), Member(id=2, name="demo-2"), voter(3), voter(4), voter(5),
         learner],
        [pod(1), pod(3), pod(4), pod(5), pod(9, phase=PodPhase.PENDING, waiting="Unschedulable")],
        size=5,
    )
    assert plan(obs) == RemoveMember(9, "demo-9", "LearnerYieldsToLostVoter")


def test_a_member_that_never_ran_is_not_data_lost() -> None:
    """A new member that could not reach its peers yet fails with "cannot fetch cluster info"
    too: it had no data to lose, so it is not replaced for it."""
    new = Member(id=9, name="demo-9", is_learner=True, started=False)
    obs = world(
        [voter(1, leader=True), voter(2), voter(3), new],
        [pod(1), pod(2), pod(3), pod(9, data_lost=True)],
        size=4,
    )
    action = plan(obs)
    assert not (isinstance(action, RemoveMember) and action.reason == "DataLost"), action


def old_three(running: str = OLD, **spec: Any) -> Observed:
    obs = world(
        [voter(1, leader=True), voter(2), voter(3)],
        [pod(1, version=running), pod(2, version=running), pod(3, version=running)],
    )
    return replace(obs, spec=replace(obs.spec, **spec))


def test_each_version_policy_refusal_is_a_wait_that_names_the_member_and_the_rule() -> None:
    skip = plan(old_three(running="3.5.35", version="3.7.0"))
    assert isinstance(skip, Wait) and skip.reason == "VersionRefused"
    assert "member demo-1 runs 3.5.35; 3.5.35 to 3.7.0 skips a minor version" in skip.message
    early = plan(old_three(running="3.5.20", version=V))
    assert isinstance(early, Wait) and "3.5.32 or later" in early.message
    down = plan(old_three(running="3.7.0", version="3.5.35"))
    assert isinstance(down, Wait) and "more than one minor" in down.message


def test_going_back_a_minor_after_a_completed_upgrade_uses_the_downgrade_api_in_place() -> None:
    done = replace(
        old_three(running=V, version=OLD, uses_claims=True, strategy="InPlace"),
        cluster_version="3.6.0",
        claims=frozenset(NAMES3),
    )
    assert plan(done) == EnableDowngrade("3.5")
    # Once enabled etcd speaks 3.5 again and members are restarted on their data, one at a time.
    assert plan(replace(done, cluster_version="3.5.0")) == StopTraffic("demo-2")


def test_going_back_a_minor_by_surge_is_refused_with_why() -> None:
    """etcd 3.5 does not join a downgrading 3.6 cluster as a new member (measured)."""
    done = replace(old_three(running=V, version=OLD), cluster_version="3.6.0")
    refused = plan(done)
    assert isinstance(refused, Wait) and refused.reason == "VersionRefused"
    assert "strategy InPlace" in refused.message and "spec.version back" in refused.message
    # Mid-upgrade the cluster still speaks the old minor: rollback is plain replacement.
    mixed = replace(done, cluster_version="3.5.0")
    assert plan(mixed) == AddLearner("demo-new", reason="Upgrade")


def test_a_change_of_the_pod_rolls_like_a_version_change() -> None:
    obs = old_three(running=V, pod_hash="new")
    obs = replace(obs, pods=tuple(replace(p, pod_hash="old") for p in obs.pods))
    assert plan(obs) == AddLearner("demo-new", reason="Upgrade")
    # Pods made before hashes existed are judged by version only.
    legacy = replace(obs, pods=tuple(replace(p, pod_hash="") for p in obs.pods))
    assert plan(legacy) == Done()


def test_in_place_restarts_a_follower_out_of_the_service_and_moves_the_leader_last() -> None:
    obs = replace(old_three(uses_claims=True, strategy="InPlace"), claims=frozenset(NAMES3))
    assert plan(obs) == StopTraffic("demo-2")
    drained = replace(obs, pods=tuple(replace(p, serving=p.name != "demo-2") for p in obs.pods))
    assert plan(drained) == DeletePod("demo-2", "UpgradeInPlace")
    only_leader = replace(
        obs, pods=tuple(p if p.name == "demo-1" else replace(p, version=V) for p in obs.pods)
    )
    assert plan(only_leader) == MoveLeader(1, 2, reason="LeaderToBeRestarted")


def test_in_place_waits_for_the_restarted_member_then_stalls_past_the_gate() -> None:
    sick = Member(id=2, name="demo-2", health=MemberHealth())
    obs = world(
        [voter(1, leader=True), sick, voter(3)],
        [
            pod(1, version=OLD),
            pod(2, created=1000.0, last_error="Error, exit code 1"),
            pod(3, version=OLD),
        ],
        claims=set(NAMES3),
    )
    obs = replace(obs, spec=replace(obs.spec, uses_claims=True, strategy="InPlace"), now=1100.0)
    waiting = plan(obs)
    assert isinstance(waiting, Wait) and waiting.reason == "MemberStarting"
    stalled = plan(replace(obs, now=1000.0 + 301))
    assert isinstance(stalled, Wait) and stalled.reason == "UpgradeStalled"
    assert "demo-2" in stalled.message and "exit code 1" in stalled.message
    assert "spec.version back" in stalled.message


def test_a_stalled_surge_learner_is_removed_and_the_rollout_holds() -> None:
    learner = Member(id=4, name="demo-4", is_learner=True, health=MemberHealth())
    obs = replace(
        old_three(running=OLD),
        members=(voter(1, leader=True), voter(2), voter(3), learner),
        now=2000.0,
    )
    obs = replace(obs, pods=(*obs.pods, pod(4, phase=PodPhase.PENDING, created=1000.0)))
    action = plan(obs)
    assert isinstance(action, RemoveMember) and action.reason == "UpgradeStalled"
    assert "demo-4" in action.detail and "pod Pending" in action.detail
    held = replace(old_three(), stalled=Stall(V, "demo-4", action.detail))
    assert plan(held) == Wait("UpgradeStalled", action.detail)
    assert plan(replace(held, spec=replace(held.spec, version="3.6.15"))) == AddLearner(
        "demo-new", reason="Upgrade"
    )


def test_healthy_current_voters_are_put_in_the_client_service() -> None:
    obs = world(
        [voter(1, leader=True), voter(2), voter(3)], [pod(1), pod(2, serving=False), pod(3)]
    )
    assert plan(obs) == StartTraffic(("demo-2",))


def test_a_marked_seed_serves_only_once_its_kubelet_has_the_mark() -> None:
    """Was (found on the real kubelet): the seed was marked `existing` and served at once, but
    the kubelet applied the annotation 1-2 s later; a seed restarted on an emptied data dir in
    between started as `new` and founded an empty cluster with the same IDs."""
    unsynced = world([voter(1, leader=True)], [pod(1, serving=False, kubelet_synced=False)], size=1)
    action = plan(unsynced)
    assert isinstance(action, Wait) and action.reason == "KubeletSyncing", action
    assert "demo-1" in action.message
    synced = world([voter(1, leader=True)], [pod(1, serving=False)], size=1)
    assert plan(synced) == StartTraffic(("demo-1",))
    # Nothing else waits for a kubelet: a pod already serving, going or on a lost node.
    for other in (pod(1, kubelet_synced=False), pod(1, serving=False, kubelet_synced=False,
                                                     deleting=True, node_lost=True)):
        assert not (isinstance(a := plan(world([voter(1, leader=True)], [other], size=1)), Wait)
                    and a.reason == "KubeletSyncing"), a


def test_members_of_the_older_minor_join_only_once_etcd_downgraded_the_storage() -> None:
    done = replace(old_three(running=V, version=OLD), cluster_version="3.5.0")
    stored = tuple(
        replace(m, health=replace(m.health, storage_version="3.6.0")) for m in done.members or ()
    )
    waiting = plan(replace(done, members=stored))
    assert isinstance(waiting, Wait) and waiting.reason == "DowngradeStorage"
    assert "demo-1 (3.6.0 to 3.5)" in waiting.message
    lowered = tuple(replace(m, health=replace(m.health, storage_version="3.5.0")) for m in stored)
    assert plan(replace(done, members=lowered)) == AddLearner("demo-new", reason="Upgrade")


def test_a_version_change_takes_a_backup_first_and_a_failed_one_holds_it() -> None:
    obs = old_three(backup_before_upgrade=True)
    assert plan(obs) == TakeBackup(V)
    running = plan(replace(obs, upgrade_backup=UpgradeBackup("demo-before-3-6-16")))
    assert isinstance(running, Wait) and running.reason == "BackupBeforeUpgrade"
    failed = plan(
        replace(obs, upgrade_backup=UpgradeBackup("demo-before-3-6-16", "Failed", "S3 said 403"))
    )
    assert isinstance(failed, Wait) and failed.reason == "UpgradeBackupFailed"
    assert "S3 said 403" in failed.message and "backupBeforeUpgrade" in failed.message
    done = replace(obs, upgrade_backup=UpgradeBackup("demo-before-3-6-16", "Succeeded"))
    assert plan(done) == AddLearner("demo-new", reason="Upgrade")


def test_no_backup_when_only_the_pod_changes_or_when_switched_off() -> None:
    pod_only = old_three(running=V, pod_hash="new", backup_before_upgrade=True)
    pod_only = replace(pod_only, pods=tuple(replace(p, pod_hash="old") for p in pod_only.pods))
    assert plan(pod_only) == AddLearner("demo-new", reason="Upgrade")
    assert plan(old_three()) == AddLearner("demo-new", reason="Upgrade")


def test_no_backup_holds_a_rollback_or_the_healing_of_a_short_cluster() -> None:
    # Mid-upgrade, spec.version set back: one member runs the newer version already.
    back = old_three(running=OLD, version=OLD, backup_before_upgrade=True)
    back = replace(back, pods=(replace(back.pods[0], version=V), *back.pods[1:]))
    assert not isinstance(plan(back), TakeBackup)
    # Short a voter: the replacement comes first, the backup does not hold it.
    three = old_three(backup_before_upgrade=True)
    short = replace(three, members=(voter(1, leader=True), voter(2)), pods=three.pods[:2])
    assert plan(short) == AddLearner("demo-new", reason="ScaleUp")


def test_a_downgrade_left_running_by_a_spec_set_back_up_is_cancelled() -> None:
    going = replace(old_three(running=V), cluster_version="3.5.0")
    going = replace(going, members=tuple(
        replace(m, health=replace(m.health, downgrade_target="3.5.0")) for m in going.members or ()
    ))
    assert plan(going) == CancelDowngrade("3.5.0")
    # Still wanted: no cancel (the members are restarted on their data instead).
    wanted = replace(going, spec=replace(going.spec, version=OLD, strategy="InPlace",
                                         uses_claims=True), claims=frozenset(NAMES3))
    assert not isinstance(plan(wanted), CancelDowngrade)


def test_an_in_place_downgrade_of_one_member_is_refused() -> None:
    one = world([voter(1, leader=True)], [pod(1)], size=1, version=OLD, claims={"demo-1"})
    one = replace(one, spec=replace(one.spec, strategy="InPlace"), cluster_version="3.6.0")
    refused = plan(one)
    assert isinstance(refused, Wait) and refused.reason == "VersionRefused", refused
    assert "at least 3 members" in refused.message
