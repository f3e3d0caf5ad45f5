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
