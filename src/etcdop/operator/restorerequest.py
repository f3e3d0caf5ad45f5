"""The restore request an EtcdRestore leaves on its EtcdCluster (pure).

The EtcdRestore controller checks the snapshot, then writes this request as the cluster's
`etcdop.io/restore` annotation; the cluster's reconciler carries it out (stop the members, start
a seed from the snapshot, grow back) and records its progress in `status.restore`. The request
holds everything the seed pod needs, so a restarted operator resumes from the object alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from etcdop.api.backupstorage import RestoreSource
from etcdop.api.etcdbackup import EtcdBackup
from etcdop.api.etcdcluster import EtcdClusterStatus

ANN_RESTORE = "etcdop.io/restore"
LABEL_RESTORE = "etcdop.io/restore-uid"
"""On the seed pod of a restore: the EtcdRestore's uid. Pods without it are the old cluster's."""


@dataclass(frozen=True)
class RestoreRequest:
    uid: str
    name: str
    metadata_key: str
    snapshot_key: str
    sha256: str
    revision: int
    bucket: str
    endpoint: str = ""
    region: str = "us-east-1"
    force_path_style: bool = False
    credentials_secret: str = ""
    encryption: str = ""

    def to_annotation(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_annotations(cls, annotations: Mapping[str, Any] | None) -> RestoreRequest | None:
        """The request on an object's annotations; None when there is none or it is unreadable
        (a hand-edited value is ignored rather than half carried out)."""
        text = (annotations or {}).get(ANN_RESTORE)
        if not text:
            return None
        try:
            doc = json.loads(text)
            req = cls(**doc)
        except (TypeError, ValueError):
            return None
        return req if req.uid and req.metadata_key else None


def pending_restore(
    annotations: Mapping[str, Any] | None, status: EtcdClusterStatus
) -> RestoreRequest | None:
    """The request still to carry out: annotated, and not recorded as Restored in status."""
    req = RestoreRequest.from_annotations(annotations)
    if req is None:
        return None
    done = status.restore
    if done is not None and done.uid == req.uid and done.phase == "Restored":
        return None
    return req


def restore_uid(pod: Mapping[str, Any]) -> str:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return str(labels.get(LABEL_RESTORE, ""))


def bootstrap_request(
    cluster_uid: str, cluster: str, src: RestoreSource, backup: EtcdBackup | None
) -> RestoreRequest | str:
    """The request that seeds a new cluster from spec.bootstrap, or why it cannot yet. Its uid
    is the cluster's own (`bootstrap-<uid>`): a clone is the cluster's first member, not an
    EtcdRestore."""
    uid = f"bootstrap-{cluster_uid}"
    if src.backup_name:
        where = f"EtcdBackup {src.backup_name} (spec.bootstrap.backupName of {cluster})"
        if backup is None:
            return f"{where} does not exist; create it or name another"
        st = backup.status
        if st.phase != "Succeeded" or not st.metadata_key:
            return f"waiting for {where} to succeed (it is {st.phase or 'new'})"
        s = backup.spec.storage
        return RestoreRequest(
            uid=uid,
            name=backup.name,
            metadata_key=st.metadata_key,
            snapshot_key=st.snapshot_key,
            sha256=st.sha256,
            revision=st.revision,
            bucket=s.bucket,
            endpoint=s.endpoint,
            region=s.region,
            force_path_style=s.force_path_style,
            credentials_secret=s.credentials_secret,
            encryption=backup.spec.encryption,
        )
    assert src.storage is not None  # validated: storage and key go together
    s = src.storage
    key = src.key
    if not key.endswith("metadata.json"):
        key = key.rsplit("/", 1)[0] + "/metadata.json" if "/" in key else "metadata.json"
    return RestoreRequest(
        uid=uid,
        name=key,
        metadata_key=key,
        snapshot_key="",
        sha256="",  # the seed checks the object against its metadata and etcd's digest
        revision=0,
        bucket=s.bucket,
        endpoint=s.endpoint,
        region=s.region,
        force_path_style=s.force_path_style,
        credentials_secret=s.credentials_secret,
    )
