"""The next step for one EtcdBackup (pure): a small state machine driven by what is observed.

Pending/Running -> Succeeded | Failed, each terminal; a Succeeded backup with spec.verify gets
one restore drill. A backup found Running when no call is in flight (the operator died during
it) is taken again, up to MAX_ATTEMPTS: a lost answer leaves at most an unreferenced object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etcdop.api import EtcdCluster
from etcdop.api.etcdbackup import FINALIZER, EtcdBackup
from etcdop.operator.etcdbackup.members import Candidate, NoCandidate, choose_member

MAX_ATTEMPTS = 3
"""Backup calls that end without an answer (agent unreachable, operator restarted) before the
backup is Failed."""
MAX_VERIFY_ATTEMPTS = 3


@dataclass(frozen=True)
class AddFinalizer:
    """deletionPolicy Delete: hold the object until its S3 objects are gone."""


@dataclass(frozen=True)
class DeleteObjects:
    member: Candidate


@dataclass(frozen=True)
class ReleaseFinalizer:
    """Nothing (more) to delete, or nobody left to delete it: say why in an Event."""

    message: str


@dataclass(frozen=True)
class Fail:
    reason: str
    message: str


@dataclass(frozen=True)
class Wait:
    reason: str
    message: str
    seconds: float


@dataclass(frozen=True)
class TakeBackup:
    member: Candidate


@dataclass(frozen=True)
class Verify:
    member: Candidate


@dataclass(frozen=True)
class Nothing:
    pass


Step = AddFinalizer | DeleteObjects | ReleaseFinalizer | Fail | Wait | TakeBackup | Verify | Nothing


def decide(
    b: EtcdBackup,
    cluster: EtcdCluster | None,
    pods: Mapping[str, Mapping[str, Any]],
    token: str | None,
) -> Step:
    st = b.status
    member = (
        choose_member(cluster.status.members, pods, b.spec.storage.credentials_secret)
        if cluster is not None and not cluster.being_deleted
        else NoCandidate(
            "ClusterNotFound",
            f"EtcdCluster {b.namespace}/{b.spec.cluster_name} does not exist (or is being deleted)",
        )
    )
    if b.being_deleted:
        if FINALIZER not in b.finalizers:
            return Nothing()
        if b.spec.deletion_policy != "Delete" or not st.metadata_key:
            return ReleaseFinalizer("no backup objects to delete")
        if isinstance(member, Candidate) and token:
            return DeleteObjects(member)
        why = member.message if isinstance(member, NoCandidate) else "no agent token"
        where = st.metadata_key.rsplit("/", 1)[0]
        return ReleaseFinalizer(
            f"the backup objects under {where}/ were kept: no agent of the cluster can delete "
            f"them ({why}); delete them in the bucket"
        )
    if b.spec.deletion_policy == "Delete" and FINALIZER not in b.finalizers:
        return AddFinalizer()
    if st.phase == "Failed":
        return Nothing()
    if st.phase == "Succeeded":
        if not b.spec.verify or st.verified is not None:
            return Nothing()
        if st.verify_attempts >= MAX_VERIFY_ATTEMPTS:
            return Nothing()
        if isinstance(member, NoCandidate) or not token:
            return Wait("DrillWaiting", "waiting for a member to run the restore drill", 10.0)
        return Verify(member)
    errors = b.spec.validate()
    if errors:
        return Fail("InvalidSpec", "; ".join(str(e) for e in errors))
    if st.attempts >= MAX_ATTEMPTS:
        return Fail(
            "TooManyAttempts",
            f"{st.attempts} backup calls got no answer (last: {st.message or 'none'}); create a "
            "new EtcdBackup once the cause is fixed",
        )
    if isinstance(member, NoCandidate):
        if member.reason == "CredentialsNotMounted":
            return Fail(member.reason, member.message)
        return Wait(member.reason, member.message, 5.0)
    if not token:
        return Wait("TokenMissing", "the cluster's agent token Secret is not there yet", 3.0)
    return TakeBackup(member)
