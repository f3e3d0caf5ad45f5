"""Restore in place, the pure parts: the planner's restore path, the EtcdRestore's steps, the
request annotation, and the seed pod's restore init container."""

from __future__ import annotations

from typing import Any

import pytest

from etcdop.api import EtcdCluster
from etcdop.api.etcdbackup import EtcdBackup
from etcdop.api.etcdcluster import EtcdClusterStatus, MemberStatus, RestoreStatus
from etcdop.api.etcdrestore import EtcdRestore
from etcdop.operator import manifests
from etcdop.operator.etcdbackup.members import Candidate
from etcdop.operator.etcdcluster.status import _with_restore
from etcdop.operator.etcdrestore.steps import (
    Check,
    Fail,
    Start,
    Succeed,
    Wait,
    decide,
    metadata_key_of,
    version_refusal,
)
from etcdop.operator.model import DesiredSpec, Member, MemberHealth, MemberPod, Observed
from etcdop.operator.observe import member_pod
from etcdop.operator.planner import (
    DeleteClaim,
    DeletePod,
    FinishRestore,
    MarkFormed,
    RestoreSeed,
    plan,
)
from etcdop.operator.planner import (
    Wait as PlanWait,
)
from etcdop.operator.restorerequest import (
    ANN_RESTORE,
    LABEL_RESTORE,
    RestoreRequest,
    bootstrap_request,
    pending_restore,
)

UID = "r-1"
V = "3.6.16"
OK = MemberHealth(reachable=True, healthy=True, is_leader=True, raft_index=10, version=V)


def world(pods: list[MemberPod], members: list[Member] | None = None, **kw: Any) -> Observed:
    return Observed(
        cluster="demo",
        spec=DesiredSpec(size=3, version=V),
        pods=tuple(pods),
        members=tuple(members) if members is not None else None,
        bootstrapped=True,
        next_member_name="demo-new",
        restore=UID,
        **kw,
    )


def old(n: int, **kw: Any) -> MemberPod:
    return MemberPod(name=f"demo-{n}", **kw)


def seed(name: str = "demo-seed", **kw: Any) -> MemberPod:
    return MemberPod(name=name, initial_cluster_state="new", restore=UID, **kw)


def test_every_old_pod_goes_first_whatever_its_health() -> None:
    members = [Member(id=i, name=f"demo-{i}", health=OK) for i in (1, 2, 3)]
    assert plan(world([old(1), old(2), old(3)], members)) == DeletePod("demo-1", "Restore")
    going = [old(1, deleting=True), old(2), old(3)]
    assert plan(world(going, members)) == DeletePod("demo-2", "Restore")


def test_no_seed_while_an_old_pod_still_runs_its_etcd() -> None:
    action = plan(world([old(1, deleting=True), old(2, deleting=True)]))
    assert isinstance(action, PlanWait) and action.reason == "RestoreStopping"


def test_a_pod_stuck_on_a_lost_node_is_forced_out() -> None:
    stuck = old(1, deleting=True, node_lost=True)
    assert plan(world([stuck])) == DeletePod("demo-1", "Restore", force=True)


def test_old_claims_go_before_the_seed_is_made() -> None:
    assert plan(world([], claims=frozenset({"demo-1"}))) == DeleteClaim("demo-1", "Restore")


def test_the_seed_is_made_once_the_old_cluster_is_gone() -> None:
    assert plan(world([])) == RestoreSeed("demo-new", UID)


def test_a_seed_that_exists_is_never_made_again() -> None:
    action = plan(world([seed()]))
    assert isinstance(action, PlanWait) and action.reason == "Restoring"


def test_a_second_seed_left_by_a_killed_operator_is_deleted() -> None:
    assert plan(world([seed("demo-a"), seed("demo-b")])) == DeletePod("demo-b", "DuplicateSeed")


def test_the_seed_of_an_earlier_restore_is_an_old_pod() -> None:
    earlier = MemberPod(name="demo-x", restore="r-0")
    assert plan(world([earlier])) == DeletePod("demo-x", "Restore")


def test_restore_finishes_when_the_seed_serves_then_the_seed_is_marked_formed() -> None:
    member = Member(id=9, name="demo-seed", health=OK)
    assert plan(world([seed()], [member])) == FinishRestore("demo-seed", UID)
    after = Observed(
        cluster="demo",
        spec=DesiredSpec(size=3, version=V),
        pods=(seed(),),
        members=(member,),
        bootstrapped=True,
        next_member_name="demo-new",
    )
    assert plan(after) == MarkFormed("demo-seed")


def test_paused_stops_a_restore_too() -> None:
    o = world([old(1)])
    o = Observed(**{**o.__dict__, "spec": DesiredSpec(size=3, version=V, paused=True)})
    assert isinstance(plan(o), PlanWait)


REQ = RestoreRequest(
    uid=UID,
    name="back",
    metadata_key="p/ns/demo/t-1/metadata.json",
    snapshot_key="p/ns/demo/t-1/snapshot.db",
    sha256="ab" * 32,
    revision=42,
    bucket="b",
    credentials_secret="other-creds",
)


def test_the_request_survives_its_annotation_and_is_pending_until_restored() -> None:
    ann = {ANN_RESTORE: REQ.to_annotation()}
    assert RestoreRequest.from_annotations(ann) == REQ
    assert RestoreRequest.from_annotations({ANN_RESTORE: "{not json"}) is None
    assert pending_restore(ann, EtcdClusterStatus()) == REQ
    doing = EtcdClusterStatus(restore=RestoreStatus(uid=UID, phase="Restoring"))
    assert pending_restore(ann, doing) == REQ
    done = EtcdClusterStatus(restore=RestoreStatus(uid=UID, phase="Restored"))
    assert pending_restore(ann, done) is None


def cluster(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "etcdop.io/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "c-1", "generation": 1},
        "spec": {
            "size": 3,
            "version": V,
            "backup": {"storage": {"bucket": "b", "credentialsSecret": "s3-creds"}},
        },
        "status": status,
    }


def test_the_seed_pod_restores_before_anything_else_starts() -> None:
    ec = EtcdCluster.from_dict(cluster())
    pod = manifests.member_pod(ec, "demo-seed", "x", "new", "cluster.local", restore=REQ)
    assert pod["metadata"]["labels"][LABEL_RESTORE] == UID
    inits = pod["spec"]["initContainers"]
    assert [c["name"] for c in inits] == ["restore", "backup-agent"]
    args = inits[0]["args"]
    assert args[0] == "restore"
    assert f"--metadata-key={REQ.metadata_key}" in args and f"--sha256={REQ.sha256}" in args
    assert "--data-dir=/var/lib/etcd/data" in args and "--name=demo-seed" in args
    assert "--initial-cluster-token=demo-c-1" in args
    # its Secret is not the members' one: mounted for the restore only
    mounts = {m["mountPath"]: m["name"] for m in inits[0]["volumeMounts"]}
    assert mounts["/etc/etcdop/s3/other-creds"] == "restore-credentials"
    secrets = [v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v]
    assert "other-creds" in secrets
    plain = manifests.member_pod(ec, "demo-2", "x", "existing", "cluster.local")
    assert LABEL_RESTORE not in plain["metadata"]["labels"]
    assert [c["name"] for c in plain["spec"]["initContainers"]] == ["backup-agent"]


@pytest.mark.parametrize(
    ("snapshot", "target", "ok"),
    [
        ("3.6.16", "3.6.16", True),
        ("3.5.35", "3.6.16", True),
        ("3.6.0", "3.5.35", False),
        ("3.4.30", "3.6.16", False),
    ],
)
def test_only_versions_etcd_can_load_are_accepted(snapshot: str, target: str, ok: bool) -> None:
    assert (version_refusal(snapshot, target) is None) is ok


def test_a_snapshot_key_leads_to_the_metadata_beside_it() -> None:
    assert metadata_key_of("p/a/b/t-1/snapshot.db") == "p/a/b/t-1/metadata.json"
    assert metadata_key_of("p/a/b/t-1/metadata.json") == "p/a/b/t-1/metadata.json"


def restore(status: dict[str, Any] | None = None, **source: Any) -> EtcdRestore:
    return EtcdRestore.from_dict(
        {
            "metadata": {"name": "back", "namespace": "ns", "uid": UID, "generation": 1},
            "spec": {"clusterName": "demo", "source": source or {"backupName": "b1"}},
            "status": status or {},
        }
    )


def backup(phase: str = "Succeeded", version: str = V) -> EtcdBackup:
    return EtcdBackup.from_dict(
        {
            "metadata": {"name": "b1", "namespace": "ns"},
            "spec": {
                "clusterName": "demo",
                "storage": {"bucket": "b", "credentialsSecret": "s3-creds"},
            },
            "status": {"phase": phase, "metadataKey": "k/metadata.json", "etcdVersion": version},
        }
    )


READY = {
    "demo-1": {
        "metadata": {"name": "demo-1"},
        "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]},
        "spec": {"volumes": [{"name": "s", "secret": {"secretName": "s3-creds"}}]},
    }
}
MEMBERS = {"members": [{"name": "demo-1", "id": "1", "ready": True}]}


def test_a_bad_source_is_refused_before_anything_is_touched() -> None:
    ec = EtcdCluster.from_dict(cluster(**MEMBERS))
    missing = decide(restore(), ec, {}, None, READY, "t")
    assert isinstance(missing, Fail) and missing.reason == "BackupMissing"
    assert "spec.source.backupName" in missing.message
    newer = decide(restore(), ec, {}, backup(version="3.7.0"), READY, "t")
    assert isinstance(newer, Fail) and newer.reason == "VersionMismatch"
    both = decide(restore(backupName="b1", key="k"), ec, {}, backup(), READY, "t")
    assert isinstance(both, Fail) and both.reason == "InvalidSpec"
    gone = decide(restore(), None, {}, backup(), READY, "t")
    assert isinstance(gone, Fail) and gone.reason == "ClusterMissing"


def test_a_good_source_is_checked_by_an_agent_then_started() -> None:
    ec = EtcdCluster.from_dict(cluster(**MEMBERS))
    step = decide(restore(), ec, {}, backup(), READY, "t")
    assert isinstance(step, Check) and step.member == Candidate("demo-1", "10.0.0.1")
    checked = {
        "metadataKey": "k/metadata.json",
        "sha256": "ab",
        "conditions": [{"type": "Checked", "status": "True"}],
        "phase": "Checking",
    }
    assert isinstance(decide(restore(checked), ec, {}, backup(), READY, "t"), Start)


def test_the_restore_is_followed_from_the_cluster_alone() -> None:
    ann = {ANN_RESTORE: REQ.to_annotation()}
    restoring = EtcdCluster.from_dict(
        cluster(restore={"uid": UID, "phase": "Restoring"}, readyMembers=0)
    )
    step = decide(restore({"phase": "Checking"}), restoring, ann, backup(), {}, "t")
    assert isinstance(step, Wait) and step.phase == "Restoring"
    growing = EtcdCluster.from_dict(
        cluster(restore={"uid": UID, "phase": "Restored"}, readyMembers=2)
    )
    assert isinstance(
        decide(restore({"phase": "Restoring"}), growing, ann, backup(), {}, "t"), Wait
    )
    full = EtcdCluster.from_dict(cluster(restore={"uid": UID, "phase": "Restored"}, readyMembers=3))
    assert isinstance(
        decide(restore({"phase": "Restoring"}), full, ann, backup(), {}, "t"), Succeed
    )


def test_a_restore_waits_for_another_one_on_the_same_cluster() -> None:
    other = RestoreRequest(**{**REQ.__dict__, "uid": "r-0", "name": "first"})
    ann = {ANN_RESTORE: other.to_annotation()}
    ec = EtcdCluster.from_dict(cluster(**MEMBERS))
    step = decide(restore(), ec, ann, backup(), READY, "t")
    assert isinstance(step, Wait) and step.reason == "AnotherRestore"


def test_a_clone_waits_for_its_backup_then_its_seed_restores_it() -> None:
    blocked = Observed(
        cluster="clone",
        spec=DesiredSpec(size=3, version=V),
        next_member_name="clone-a",
        bootstrap_blocked="waiting for EtcdBackup b1 to succeed",
    )
    action = plan(blocked)
    assert isinstance(action, PlanWait) and action.reason == "BootstrapSourceNotReady"
    src = EtcdCluster.from_dict(
        {**cluster(), "spec": {**cluster()["spec"], "bootstrap": {"backupName": "b1"}}}
    )
    assert src.spec.bootstrap is not None and src.validate() == []
    assert isinstance(bootstrap_request("u", "clone", src.spec.bootstrap, None), str)
    b = EtcdBackup.from_dict(
        {
            "metadata": {"name": "b1", "namespace": "ns"},
            "spec": {"clusterName": "demo", "storage": {"bucket": "b", "credentialsSecret": "x"}},
            "status": {"phase": "Succeeded", "metadataKey": "k/metadata.json", "sha256": "ff"},
        }
    )
    req = bootstrap_request("u", "clone", src.spec.bootstrap, b)
    assert isinstance(req, RestoreRequest)
    assert (req.uid, req.metadata_key, req.sha256) == ("bootstrap-u", "k/metadata.json", "ff")


def test_a_bootstrap_source_names_exactly_one_snapshot() -> None:
    both = {**cluster()["spec"], "bootstrap": {"backupName": "b1", "key": "k"}}
    ec = EtcdCluster.from_dict({**cluster(), "spec": both})
    assert [e.path for e in ec.validate()] == ["spec.bootstrap"]


def test_the_seed_is_recorded_and_the_old_membership_forgotten_before_it_exists() -> None:
    old = EtcdClusterStatus(
        cluster_id="aaa",
        members=(MemberStatus(name="demo-1", id="1", ready=True),),
        ready_members=1,
    )
    seeded = _with_restore(old, RestoreSeed("demo-seed", UID), REQ, "")
    assert (seeded.cluster_id, seeded.members, seeded.ready_members) == ("", (), 0)
    assert seeded.restore is not None
    assert (seeded.restore.phase, seeded.restore.seed) == ("Restoring", "demo-seed")
    done = _with_restore(seeded, FinishRestore("demo-seed", UID), REQ, "bbb")
    assert done.cluster_id == "bbb" and done.restore is not None
    assert (done.restore.phase, done.restore.revision) == ("Restored", 42)
    assert done.restore.completion_time
    assert _with_restore(old, RestoreSeed("demo-seed", "other"), REQ, "") == old


def test_a_failed_restore_init_container_is_said_in_the_restore_wait() -> None:
    failed = {
        "metadata": {"name": "demo-seed", "labels": {LABEL_RESTORE: UID}},
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": "restore",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {
                        "terminated": {"exitCode": 1, "message": "HashMismatch: k: bad digest"}
                    },
                }
            ],
        },
    }
    seed_pod = member_pod(failed)
    assert seed_pod.restore == UID and "HashMismatch: k: bad digest" in seed_pod.waiting
    action = plan(world([seed_pod]))
    assert isinstance(action, PlanWait) and "HashMismatch" in action.message
    ok = {
        **failed,
        "status": {
            "initContainerStatuses": [{"name": "restore", "state": {"terminated": {"exitCode": 0}}}]
        },
    }
    assert "restore" not in member_pod(ok).waiting
