"""The EtcdRestore kind (etcdop.io/v1alpha1): one object is one restore of an EtcdCluster, in
place, from a snapshot in S3-compatible storage.

The docstrings and `prop` descriptions become the CRD's OpenAPI descriptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etcdop.api.backupstorage import RestoreSource, source_errors
from etcdop.api.etcdbackup import CLUSTER_NAME_RULE
from etcdop.api.etcdcluster import GROUP, VERSION, Condition
from etcdop.api.schema import FieldError, StoredStatus, api_type, decode, prop, validate

KIND = "EtcdRestore"
PLURAL = "etcdrestores"
SINGULAR = "etcdrestore"
SHORT_NAMES = ("etcdrst",)
CRD_NAME = f"{PLURAL}.{GROUP}"
API_VERSION = f"{GROUP}/{VERSION}"

PHASES = ("Pending", "Checking", "Restoring", "Succeeded", "Failed")


@api_type
class EtcdRestoreSpec:
    """Which cluster to restore and from what. Read when the restore starts."""

    cluster_name: str = prop(
        "Name of the EtcdCluster (same namespace) to restore in place: its members are replaced "
        "by a member started from the snapshot, then the cluster grows back to spec.size.",
        max_length=63,
        rules=(CLUSTER_NAME_RULE,),
    )
    source: RestoreSource = prop("The snapshot to restore.")

    @classmethod
    def from_dict(cls, data: object) -> EtcdRestoreSpec:
        return decode(cls, data, KIND, "spec")

    def validate(self) -> list[FieldError]:
        return validate(self, "spec") + source_errors(self.source, "spec.source")


@api_type
class EtcdRestoreStatus(StoredStatus):
    """The restore as the operator last saw it."""

    phase: str = prop("Pending, Checking, Restoring, Succeeded or Failed.", default="")
    observed_generation: int = prop(
        "metadata.generation this status reflects.", default=0, int_format="int64"
    )
    reason: str = prop("Why the restore failed or waits, one CamelCase word.", default="")
    message: str = prop("What happened, readable, and what to do.", default="")
    metadata_key: str = prop("Key of the backup's metadata.json.", default="")
    snapshot_key: str = prop("Key of the snapshot object restored.", default="")
    sha256: str = prop("Hex sha256 of the snapshot object, as checked.", default="")
    etcd_version: str = prop("etcd version of the member the snapshot was taken from.", default="")
    revision: int = prop(
        "etcd revision of the restored data (the snapshot's).", default=0, int_format="int64"
    )
    key_count: int = prop("Live keys the snapshot holds at that revision.", default=0)
    checked_by: str = prop("The member whose agent checked the snapshot.", default="")
    start_time: str | None = prop(
        "When the cluster was first touched.", default=None, string_format="date-time"
    )
    completion_time: str | None = prop(
        "When the restore succeeded or failed.", default=None, string_format="date-time"
    )
    conditions: tuple[Condition, ...] = prop(
        "Checked and Complete.", default=(), list_map_keys=("type",)
    )

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True)
class EtcdRestore:
    """An EtcdRestore object: the metadata we use, the typed spec and the last status."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: EtcdRestoreSpec
    status: EtcdRestoreStatus
    created: str = ""

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> EtcdRestore:
        meta = obj.get("metadata") or {}
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation", 0)),
            spec=EtcdRestoreSpec.from_dict(obj.get("spec")),
            status=EtcdRestoreStatus.from_dict(obj.get("status")),
            created=str(meta.get("creationTimestamp", "")),
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"
