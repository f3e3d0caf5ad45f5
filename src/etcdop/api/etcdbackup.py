"""The EtcdBackup kind (etcdop.io/v1alpha1): one object is one backup of one EtcdCluster.

The docstrings and `prop` descriptions become the CRD's OpenAPI descriptions (`kubectl explain
etcdbackup.spec`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from etcdop.api.backupstorage import COMPRESSIONS, ENCRYPTIONS, BackupStorage
from etcdop.api.etcdcluster import GROUP, NAME_PATTERN, VERSION, Condition
from etcdop.api.schema import (
    FieldError,
    Rule,
    StoredStatus,
    api_type,
    decode,
    prop,
    validate,
)
from etcdop.api.semver import cel_string

KIND = "EtcdBackup"
PLURAL = "etcdbackups"
SINGULAR = "etcdbackup"
SHORT_NAMES = ("etcdbak",)
CRD_NAME = f"{PLURAL}.{GROUP}"
API_VERSION = f"{GROUP}/{VERSION}"

PHASES = ("Pending", "Running", "Succeeded", "Failed")
DELETION_POLICIES = ("Retain", "Delete")
FINALIZER = "etcdop.io/backup-objects"
"""Held while deletionPolicy is Delete: the S3 objects go before the EtcdBackup does."""

CLUSTER_NAME_RULE = Rule(
    cel=f"self.matches({cel_string(NAME_PATTERN)})",
    message="must be the name of an EtcdCluster in this namespace",
    check=lambda v: re.match(NAME_PATTERN, v) is not None,
)


@api_type
class EtcdBackupSpec:
    """Which cluster to back up and where to. The spec is read when the backup starts; changing
    storage afterwards does not move an existing backup."""

    cluster_name: str = prop(
        "Name of the EtcdCluster (same namespace) to back up.",
        max_length=63,
        rules=(CLUSTER_NAME_RULE,),
    )
    storage: BackupStorage = prop("Where the backup goes.")
    compression: str = prop('"" (none) or "zstd".', default="", enum=COMPRESSIONS)
    encryption: str = prop(
        'Server-side encryption: "", "SSE-S3" or "SSE-C" (key in the credentials Secret).',
        default="",
        enum=ENCRYPTIONS,
    )
    deletion_policy: str = prop(
        "Retain (the default) keeps the S3 objects when this EtcdBackup is deleted; Delete "
        "removes them with it.",
        default="Retain",
        schema_default="Retain",
        enum=DELETION_POLICIES,
    )
    verify: bool = prop(
        "Run the restore drill once the backup succeeded (may be turned on later): the agent "
        "downloads it, restores it with etcdutl in a scratch directory and compares revision "
        "and key count with the metadata.",
        default=False,
        schema_default=False,
    )

    @classmethod
    def from_dict(cls, data: object) -> EtcdBackupSpec:
        return decode(cls, data, KIND, "spec")

    def validate(self) -> list[FieldError]:
        return validate(self, "spec")


@api_type
class EtcdBackupStatus(StoredStatus):
    """The backup as the operator last saw it."""

    phase: str = prop("Pending, Running, Succeeded or Failed.", default="")
    observed_generation: int = prop(
        "metadata.generation this status reflects.", default=0, int_format="int64"
    )
    reason: str = prop(
        "Why the backup failed (or waits), one CamelCase word such as NoSuchBucket.", default=""
    )
    message: str = prop("What happened, readable, and what to do.", default="")
    member: str = prop("The member whose agent took the backup.", default="")
    attempts: int = prop("Backup calls made so far.", default=0)
    snapshot_key: str = prop("Key of the snapshot object in the bucket.", default="")
    metadata_key: str = prop("Key of the metadata object beside it.", default="")
    size: int = prop("Bytes of the snapshot object as stored.", default=0, int_format="int64")
    sha256: str = prop("Hex sha256 of the snapshot object as stored.", default="")
    revision: int = prop("etcd revision the snapshot holds.", default=0, int_format="int64")
    key_count: int = prop("Live keys at that revision.", default=0, int_format="int64")
    etcd_version: str = prop("etcd version of the member backed up.", default="")
    cluster_id: str = prop("etcd cluster ID in hexadecimal.", default="", json_name="clusterID")
    start_time: str | None = prop(
        "When the backup started.", default=None, string_format="date-time"
    )
    completion_time: str | None = prop(
        "When the backup succeeded or failed.", default=None, string_format="date-time"
    )
    verified: bool | None = prop(
        "Result of the restore drill: true when the backup restored and matched its metadata, "
        "false when it did not (see the Verified condition); unset before a drill.",
        default=None,
    )
    verified_at: str | None = prop(
        "When the restore drill ran.", default=None, string_format="date-time"
    )
    verify_attempts: int = prop("Restore drills attempted that could not run.", default=0)
    conditions: tuple[Condition, ...] = prop(
        "Complete and Verified.", default=(), list_map_keys=("type",)
    )

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True)
class EtcdBackup:
    """An EtcdBackup object: the metadata we use, the typed spec and the last status."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: EtcdBackupSpec
    status: EtcdBackupStatus
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    created: str = ""
    finalizers: tuple[str, ...] = ()
    being_deleted: bool = False

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> EtcdBackup:
        meta = obj.get("metadata") or {}
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            uid=str(meta.get("uid", "")),
            generation=int(meta.get("generation", 0)),
            spec=EtcdBackupSpec.from_dict(obj.get("spec")),
            status=EtcdBackupStatus.from_dict(obj.get("status")),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            created=str(meta.get("creationTimestamp", "")),
            finalizers=tuple(meta.get("finalizers") or ()),
            being_deleted=bool(meta.get("deletionTimestamp")),
        )

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"
