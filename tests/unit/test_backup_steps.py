"""The EtcdBackup state machine and member choice, on plain objects."""

from __future__ import annotations

from typing import Any

from etcdop.api import EtcdCluster
from etcdop.api.etcdbackup import FINALIZER, EtcdBackup
from etcdop.api.etcdcluster import MemberStatus
from etcdop.operator.etcdbackup import results, steps
from etcdop.operator.etcdbackup.agentclient import AgentReply
from etcdop.operator.etcdbackup.members import Candidate, NoCandidate, choose_member

SECRET = "s3-creds"


def pod(name: str, ip: str, ready: bool = True, secret: str = SECRET) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"volumes": [{"name": "s3-credentials", "secret": {"secretName": secret}}]},
        "status": {
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def member(name: str, leader: bool = False, **kw: Any) -> MemberStatus:
    return MemberStatus(name=name, ready=kw.get("ready", True), is_leader=leader,
                        is_learner=kw.get("learner", False))


def test_a_follower_is_chosen_over_the_leader() -> None:
    members = [member("a", leader=True), member("b"), member("c")]
    pods = {"a": pod("a", "10.0.0.1"), "b": pod("b", "10.0.0.2"), "c": pod("c", "10.0.0.3")}
    assert choose_member(members, pods, SECRET) == Candidate("b", "10.0.0.2")


def test_the_leader_when_it_is_the_only_ready_voter() -> None:
    members = [member("a", leader=True), member("b", ready=False), member("c", learner=True)]
    pods = {n: pod(n, f"10.0.0.{i}") for i, n in enumerate("abc")}
    assert choose_member(members, pods, SECRET) == Candidate("a", "10.0.0.0")


def test_pods_not_ready_or_without_an_address_are_skipped() -> None:
    members = [member("a"), member("b")]
    pods = {"a": pod("a", "10.0.0.1", ready=False), "b": pod("b", "")}
    got = choose_member(members, pods, SECRET)
    assert isinstance(got, NoCandidate) and got.reason == "NoHealthyMember"


def test_a_secret_no_member_mounts_is_named() -> None:
    got = choose_member([member("a")], {"a": pod("a", "10.0.0.1")}, "other")
    assert isinstance(got, NoCandidate) and got.reason == "CredentialsNotMounted"
    assert "'other'" in got.message and "spec.backup.storage.credentialsSecret" in got.message


def cluster(*members: MemberStatus) -> EtcdCluster:
    return EtcdCluster.from_dict({
        "metadata": {"name": "demo", "namespace": "ns", "uid": "u"},
        "spec": {"version": "3.6.16", "size": 1},
        "status": {"members": [
            {"name": m.name, "ready": m.ready, "isLeader": m.is_leader} for m in members
        ]},
    })


def backup(status: dict[str, Any] | None = None, deleting: bool = False,
           finalizers: tuple[str, ...] = (), **spec: Any) -> EtcdBackup:
    meta: dict[str, Any] = {"name": "b", "namespace": "ns", "finalizers": list(finalizers)}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    return EtcdBackup.from_dict({
        "metadata": meta,
        "spec": {"clusterName": "demo",
                 "storage": {"bucket": "bk", "credentialsSecret": SECRET}, **spec},
        "status": status or {},
    })


PODS = {"a": pod("a", "10.0.0.1")}


def test_a_new_backup_is_taken_by_a_ready_member() -> None:
    step = steps.decide(backup(), cluster(member("a")), PODS, "tok")
    assert step == steps.TakeBackup(Candidate("a", "10.0.0.1"))


def test_a_missing_cluster_or_token_waits() -> None:
    assert isinstance(steps.decide(backup(), None, {}, "tok"), steps.Wait)
    step = steps.decide(backup(), cluster(member("a")), PODS, None)
    assert isinstance(step, steps.Wait) and step.reason == "TokenMissing"


def test_unmounted_credentials_fail_at_once() -> None:
    step = steps.decide(backup(), cluster(member("a")), {"a": pod("a", "1.1.1.1", secret="x")}, "t")
    assert isinstance(step, steps.Fail) and step.reason == "CredentialsNotMounted"


def test_calls_without_an_answer_end_in_failed() -> None:
    st = {"phase": "Running", "attempts": steps.MAX_ATTEMPTS, "message": "refused"}
    step = steps.decide(backup(st), cluster(member("a")), PODS, "tok")
    assert isinstance(step, steps.Fail) and step.reason == "TooManyAttempts"


def test_finished_backups_stay_finished_unless_a_drill_is_asked() -> None:
    done = {"phase": "Succeeded", "metadataKey": "k/metadata.json"}
    assert steps.decide(backup(done), cluster(member("a")), PODS, "t") == steps.Nothing()
    assert steps.decide(backup({"phase": "Failed"}), cluster(member("a")), PODS, "t") == (
        steps.Nothing()
    )
    drill = steps.decide(backup(done, verify=True), cluster(member("a")), PODS, "t")
    assert drill == steps.Verify(Candidate("a", "10.0.0.1"))
    checked = {**done, "verified": False}
    assert steps.decide(backup(checked, verify=True), cluster(member("a")), PODS, "t") == (
        steps.Nothing()
    )


def test_delete_policy_holds_a_finalizer_and_deletes_the_objects() -> None:
    done = {"phase": "Succeeded", "metadataKey": "p/ns/demo/x/metadata.json"}
    c = cluster(member("a"))
    assert steps.decide(backup(done, deletionPolicy="Delete"), c, PODS, "t") == (
        steps.AddFinalizer()
    )
    going = backup(done, deleting=True, finalizers=(FINALIZER,), deletionPolicy="Delete")
    assert steps.decide(going, c, PODS, "t") == steps.DeleteObjects(Candidate("a", "10.0.0.1"))
    orphaned = steps.decide(going, None, {}, "t")
    assert isinstance(orphaned, steps.ReleaseFinalizer) and "p/ns/demo/x/" in orphaned.message


def test_status_after_success_failure_and_drills() -> None:
    body = {"metadataKey": "k/metadata.json", "backup": {
        "snapshotKey": "k/snapshot.db", "size": 10, "sha256": "ab", "revision": 7,
        "keyCount": 3, "etcdVersion": "3.6.16", "clusterId": "c1", "member": "a"}}
    ok = results.succeeded(backup().status, body, "2026-12-01T00:00:00Z")
    assert (ok.phase, ok.snapshot_key, ok.size, ok.sha256, ok.revision) == (
        "Succeeded", "k/snapshot.db", 10, "ab", 7)
    bad = results.failed(backup().status, "BucketMissing", "no bucket", "2026-12-01T00:00:00Z")
    assert (bad.phase, bad.reason, bad.conditions[0].status) == ("Failed", "BucketMissing", "False")
    passed = results.drilled(ok, AgentReply(200, {"verified": True, "checkedAt": "T"}), "N")
    assert (passed.verified, passed.verified_at) == (True, "T")
    failed = results.drilled(ok, AgentReply(200, {"verified": False, "reason": "HashMismatch",
                                                  "message": "m"}), "N")
    assert failed.verified is False and failed.conditions[-1].reason == "HashMismatch"
    not_run = results.drilled(ok, AgentReply(502, {"error": {"reason": "EndpointDown"}}), "N")
    assert not_run.verified is None and not_run.verify_attempts == 1
