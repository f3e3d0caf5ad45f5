"""QuorumLost after spec.recovery.quorumLossTimeout, and what autoRestore restores (pure)."""

from __future__ import annotations

from typing import Any

from etcdop.api import EtcdCluster
from etcdop.api.etcdbackup import EtcdBackup
from etcdop.api.etcdcluster import Condition, EtcdClusterStatus
from etcdop.operator.autorestore.decide import (
    ANN_FINAL_BACKUP,
    CreateRestore,
    FinalBackup,
    Idle,
    NoBackup,
    Survivor,
    decide,
)
from etcdop.operator.conditions import compute_status
from etcdop.operator.model import DesiredSpec, Member, MemberHealth, MemberPod, Observed
from etcdop.operator.planner import plan
from etcdop.operator.restorerequest import ANN_RESTORE, RestoreRequest

V = "3.6.16"
LOST_AT = "2026-11-27T03:00:00Z"


def lost_world(**kw: Any) -> Observed:
    """A three-voter cluster of which one member answers, alone: no quorum."""
    alone = Member(
        id=1, name="demo-1", health=MemberHealth(reachable=True, healthy=False, version=V)
    )
    others = [Member(id=i, name=f"demo-{i}") for i in (2, 3)]
    return Observed(
        cluster="demo",
        spec=DesiredSpec(size=3, version=V),
        pods=(MemberPod(name="demo-1", version=V),),
        members=(alone, *others),
        bootstrapped=True,
        next_member_name="demo-new",
        **kw,
    )


def quorum_lost(now: str, previous: EtcdClusterStatus, o: Observed | None = None) -> Condition:
    o = o or lost_world()
    s = compute_status(
        o, plan(o), generation=1, now=now, previous=previous, quorum_loss_timeout=60.0
    )
    return next(c for c in s.conditions if c.type == "QuorumLost")


def test_quorum_lost_only_after_the_timeout_counted_from_when_available_went_false() -> None:
    first = compute_status(
        lost_world(),
        plan(lost_world()),
        generation=1,
        now=LOST_AT,
        previous=EtcdClusterStatus(),
        quorum_loss_timeout=60.0,
    )
    available = next(c for c in first.conditions if c.type == "Available")
    assert (available.status, available.reason) == ("False", "QuorumLost")
    early = quorum_lost("2026-11-27T03:00:59Z", first)
    assert (early.status, early.reason) == ("False", "QuorumMissing")
    late = quorum_lost("2026-11-27T03:01:00Z", first)
    assert late.status == "True" and LOST_AT in late.message
    assert "EtcdRestore" in late.message and "autoRestore" in late.message


def test_no_quorum_loss_during_a_restore() -> None:
    first = compute_status(
        lost_world(),
        plan(lost_world()),
        generation=1,
        now=LOST_AT,
        previous=EtcdClusterStatus(),
        quorum_loss_timeout=60.0,
    )
    during = quorum_lost("2026-11-27T04:00:00Z", first, lost_world(restore="r-1"))
    assert (during.status, during.reason) == ("False", "Restoring")


def cluster(auto: bool, lost: bool = True, **meta: Any) -> EtcdCluster:
    cond = {
        "type": "QuorumLost",
        "status": "True" if lost else "False",
        "lastTransitionTime": "2026-11-27T03:01:00Z",
    }
    return EtcdCluster.from_dict(
        {
            "metadata": {"name": "demo", "namespace": "ns", "uid": "u", **meta},
            "spec": {
                "size": 3,
                "version": V,
                "recovery": {"autoRestore": auto},
                "backup": {"storage": {"bucket": "b", "credentialsSecret": "s"}},
            },
            "status": {"conditions": [cond]},
        }
    )


def backup(name: str, revision: int, verified: bool | None, phase: str = "Succeeded") -> EtcdBackup:
    return EtcdBackup.from_dict(
        {
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"clusterName": "demo", "storage": {"bucket": "b", "credentialsSecret": "s"}},
            "status": {"phase": phase, "revision": revision, "verified": verified},
        }
    )


def test_auto_restore_takes_the_newest_verified_backup_once_per_loss() -> None:
    backups = [
        backup("old", 10, True),
        backup("newer-unverified", 30, None),
        backup("newest-verified", 20, True),
        backup("failed-drill", 40, False),
    ]
    step = decide(cluster(True), {}, backups, 0)
    assert isinstance(step, CreateRestore) and step.backup.name == "newest-verified"
    assert step.name == "demo-auto-20261127030100"
    assert decide(cluster(True), {}, backups, 0) == step  # same loss, same name: a 409 after


def test_without_auto_restore_or_while_a_restore_runs_nothing_is_created() -> None:
    backups = [backup("b", 10, True)]
    assert decide(cluster(False), {}, backups, 0) == Idle()
    assert decide(cluster(True, lost=False), {}, backups, 0) == Idle()
    assert decide(cluster(True), {}, backups, 1) == Idle()
    req = RestoreRequest("r", "n", "k", "s", "h", 1, "b")
    assert decide(cluster(True), {ANN_RESTORE: req.to_annotation()}, backups, 0) == Idle()


def test_no_verified_backup_is_said() -> None:
    step = decide(cluster(True), {}, [backup("b", 10, None)], 0)
    assert isinstance(step, NoBackup) and "no verified EtcdBackup" in step.message


def test_a_survivor_is_backed_up_once_before_the_restore() -> None:
    backups = [backup("b", 10, True)]
    alive = [Survivor("demo-3", "10.0.0.3")]
    step = decide(cluster(True), {}, backups, 0, alive)
    assert step == FinalBackup(Survivor("demo-3", "10.0.0.3"), "2026-11-27T03:01:00Z")
    tried = {ANN_FINAL_BACKUP: "20261127030100"}
    assert isinstance(decide(cluster(True), tried, backups, 0, alive), CreateRestore)
    assert isinstance(decide(cluster(True), {}, backups, 0, []), CreateRestore)
