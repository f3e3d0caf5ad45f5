"""The JSON object stored beside each snapshot: what a restore (or a person) needs to trust it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

FORMAT = "etcdop.io/backup-metadata/v1"


@dataclass(frozen=True)
class BackupMetadata:
    namespace: str
    cluster: str
    cluster_id: str  # hex, as etcdctl prints it
    member: str  # the member's name (its pod)
    member_id: str  # hex
    etcd_version: str
    revision: int  # the member's revision just before the snapshot: the snapshot holds it
    revision_max: int  # its revision just after: the snapshot's revision is in between
    key_count: int  # live keys at `revision`
    snapshot_key: str
    size: int  # bytes of the object as stored (compressed when compressed)
    sha256: str  # hex sha256 of the object as stored
    snapshot_size: int  # bytes of the etcd snapshot itself (with its 32-byte digest)
    snapshot_sha256: str  # etcd's own digest of its database, checked in the stream
    compression: str  # "" or "zstd"
    encryption: str  # "", "SSE-S3" or "SSE-C"
    sse_customer_key_md5: str  # SSE-C only: which key decrypts it (never the key)
    started_at: str  # RFC 3339, UTC
    completed_at: str
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        return {_camel(k): v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> BackupMetadata:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {_snake(k): v for k, v in doc.items() if _snake(k) in names}
        missing = names - set(values) - {"format"}
        if missing:
            raise ValueError(f"backup metadata lacks {', '.join(sorted(map(_camel, missing)))}")
        return cls(**values)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
