"""The next step of an EtcdRestore (pure): check the source before anything is touched, then
hand the restore to the cluster's reconciler (an annotation) and follow it to the end.

Nothing is remembered between looks: whether the cluster is being restored for this object is
read from the cluster's `etcdop.io/restore` annotation and `status.restore`, so an operator
killed at any instant resumes the same restore and never starts a second one.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etcdop.api import EtcdCluster
from etcdop.api.backupstorage import BackupStorage
from etcdop.api.etcdbackup import EtcdBackup
from etcdop.api.etcdrestore import EtcdRestore
from etcdop.api.semver import parse_version
from etcdop.operator.etcdbackup.members import Candidate, NoCandidate, choose_member
from etcdop.operator.restorerequest import RestoreRequest, pending_restore


@dataclass(frozen=True)
class Verdict:
    """What a check found out about the snapshot (an agent's drill now, or the backup's own)."""

    snapshot_key: str
    sha256: str
    revision: int
    key_count: int
    etcd_version: str
    by: str
    """Who checked: a member's agent, or the EtcdBackup's restore drill."""


@dataclass(frozen=True)
class Source:
    storage: BackupStorage
    encryption: str
    metadata_key: str
    etcd_version: str = ""
    """Known beforehand only for an EtcdBackup source; otherwise from the check."""
    drilled: Verdict | None = None
    """An EtcdBackup whose restore drill passed: used when no agent can check it now."""


@dataclass(frozen=True)
class Nothing:
    pass


@dataclass(frozen=True)
class Fail:
    reason: str
    message: str


@dataclass(frozen=True)
class Wait:
    reason: str
    message: str
    seconds: float = 5.0
    phase: str = ""
    """The phase to show meanwhile ("" keeps the current one, Pending when unset)."""


@dataclass(frozen=True)
class Check:
    member: Candidate
    source: Source


@dataclass(frozen=True)
class Start:
    source: Source
    verdict: Verdict


@dataclass(frozen=True)
class Succeed:
    message: str


Step = Nothing | Fail | Wait | Check | Start | Succeed


def version_refusal(snapshot: str, target: str) -> str | None:
    """Why etcd TARGET cannot load a snapshot taken by etcd SNAPSHOT, or None. etcd loads data
    of its own minor release or of the one before (the upgrade path); never of a newer one."""
    try:
        s, t = parse_version(snapshot), parse_version(target)
    except ValueError as exc:
        return str(exc)
    if (s.major, s.minor) > (t.major, t.minor):
        return (
            f"the snapshot was taken by etcd {snapshot}, newer than the cluster's {target}: "
            "etcd cannot load data of a newer release; set the EtcdCluster's spec.version to "
            f"{s.major}.{s.minor}.x or later first"
        )
    if s.major != t.major or t.minor - s.minor > 1:
        return (
            f"the snapshot was taken by etcd {snapshot}, more than one minor release before the "
            f"cluster's {target}: restore it into a cluster of {s.major}.{s.minor + 1}.x or "
            f"{s.major}.{s.minor}.x first"
        )
    return None


def metadata_key_of(key: str) -> str:
    """The metadata.json beside KEY (KEY itself when it is one)."""
    if key.endswith("/metadata.json") or key == "metadata.json":
        return key
    return posixpath.join(posixpath.dirname(key), "metadata.json")


def source_of(r: EtcdRestore, backup: EtcdBackup | None) -> Source | Fail | Wait:
    src = r.spec.source
    if src.backup_name:
        where = f"EtcdBackup {r.namespace}/{src.backup_name}"
        if backup is None:
            return Fail(
                "BackupMissing",
                f"{where} does not exist: set spec.source.backupName to a Succeeded EtcdBackup",
            )
        phase = backup.status.phase
        if phase == "Failed":
            return Fail("BackupFailed", f"{where} failed ({backup.status.reason}); choose another")
        if phase != "Succeeded" or not backup.status.metadata_key:
            return Wait(
                "BackupNotReady", f"waiting for {where} to succeed (it is {phase or 'new'})"
            )
        st = backup.status
        drilled = None
        if st.verified:
            drilled = Verdict(
                st.snapshot_key,
                st.sha256,
                st.revision,
                st.key_count,
                st.etcd_version,
                f"the restore drill of EtcdBackup {backup.name} at {st.verified_at}",
            )
        return Source(
            backup.spec.storage, backup.spec.encryption, st.metadata_key, st.etcd_version, drilled
        )
    assert src.storage is not None  # validated: storage and key go together
    return Source(src.storage, "", metadata_key_of(src.key))


def checked(r: EtcdRestore, source: Source) -> bool:
    """The source was checked by an agent for this very object (status.Checked)."""
    ok = any(c.type == "Checked" and c.status == "True" for c in r.status.conditions)
    return ok and r.status.metadata_key == source.metadata_key and bool(r.status.sha256)


def decide(
    r: EtcdRestore,
    cluster: EtcdCluster | None,
    cluster_annotations: Mapping[str, Any] | None,
    backup: EtcdBackup | None,
    pods: Mapping[str, Mapping[str, Any]],
    token: str | None,
) -> Step:
    if r.status.finished:
        return Nothing()
    errors = r.spec.validate()
    if errors:
        return Fail("InvalidSpec", "; ".join(str(e) for e in errors))
    target = f"EtcdCluster {r.namespace}/{r.spec.cluster_name}"
    if cluster is None:
        return Fail(
            "ClusterMissing",
            f"{target} does not exist: set spec.clusterName to the cluster to restore",
        )
    active = RestoreRequest.from_annotations(cluster_annotations)
    if active is not None and active.uid == r.uid:
        done = cluster.status.restore
        restored = done is not None and done.uid == r.uid and done.phase == "Restored"
        if restored and cluster.status.ready_members >= cluster.spec.size:
            return Succeed(
                f"{target} restored from {r.status.snapshot_key} at revision {r.status.revision}; "
                f"{cluster.status.ready_members} of {cluster.spec.size} members ready"
            )
        progress = next(
            (c.message for c in cluster.status.conditions if c.type == "Progressing"), ""
        )
        what = "growing back" if restored else "restoring"
        return Wait("Restoring", f"{target} is {what}: {progress}", 3.0, phase="Restoring")
    if r.status.phase == "Restoring":
        return Fail(
            "Superseded",
            f"{target} no longer carries this restore (another EtcdRestore replaced it)",
        )
    if active is not None and pending_restore(cluster_annotations, cluster.status) is not None:
        return Wait(
            "AnotherRestore",
            f"EtcdRestore {active.name} is restoring {target}; this one waits for it to finish",
            10.0,
        )
    source = source_of(r, backup)
    if not isinstance(source, Source):
        return source
    version = source.etcd_version or r.status.etcd_version
    if version:
        refusal = version_refusal(version, cluster.spec.version)
        if refusal is not None:
            return Fail("VersionMismatch", f"{target} left untouched: {refusal}")
    if checked(r, source):
        st = r.status
        verdict = Verdict(
            st.snapshot_key, st.sha256, st.revision, st.key_count, st.etcd_version, st.checked_by
        )
        return Start(source, verdict)
    member = choose_member(cluster.status.members, pods, source.storage.credentials_secret)
    if isinstance(member, NoCandidate) or token is None:
        if source.drilled is not None and cluster.status.ready_members == 0:
            # Nothing serves any more (quorum lost): the backup's own drill is the check, and
            # the seed checks sha256 and etcd's digest again while it downloads.
            return Start(source, source.drilled)
        why = member.message if isinstance(member, NoCandidate) else "no agent token Secret yet"
        return Wait(
            member.reason if isinstance(member, NoCandidate) else "NoAgentToken",
            f"no agent of {target} can check the snapshot: {why}",
        )
    return Check(member, source)
