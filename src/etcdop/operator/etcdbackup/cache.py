"""The EtcdBackup resource, the labels the operator's own backups carry, and the one way to
make such a backup object."""

from __future__ import annotations

from collections.abc import Mapping

from etcdop.api import EtcdCluster
from etcdop.api.backupstorage import ClusterBackup
from etcdop.api.etcdbackup import API_VERSION, KIND, PLURAL
from etcdop.api.etcdcluster import GROUP, VERSION
from etcdop.api.schema import encode
from etcdop.kube.client import Obj, Resource
from etcdop.operator import manifests

ETCDBACKUPS = Resource(GROUP, VERSION, PLURAL, KIND)
LABEL_SCHEDULED = "etcdop.io/scheduled"
ANN_SCHEDULED_AT = "etcdop.io/scheduled-at"
"""The schedule time a scheduled backup was made for (RFC 3339): the schedule's memory."""
LABEL_BEFORE_UPGRADE = "etcdop.io/before-upgrade"
"""On the backup taken before an upgrade: the version the cluster was upgraded to."""


def cluster_backup(
    ec: EtcdCluster,
    backup: ClusterBackup,
    name: str,
    *,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
    deletion_policy: str,
) -> Obj:
    """An EtcdBackup of EC to its spec.backup storage, owned by EC."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": ec.namespace,
            "labels": {**manifests.common_labels(ec), **labels},
            "annotations": dict(annotations or {}),
            "ownerReferences": [manifests.owner_reference(ec)],
        },
        "spec": {
            "clusterName": ec.name,
            "storage": encode(backup.storage),
            "compression": backup.compression,
            "encryption": backup.encryption,
            "deletionPolicy": deletion_policy,
            "verify": backup.verify,
        },
    }


def upgrade_backup_name(ec: EtcdCluster) -> str:
    """The backup taken before upgrading EC to its spec.version, named for that version and the
    spec's generation: a later upgrade to the same version (after going back) takes a new one."""
    version = ec.spec.version.replace(".", "-").replace("+", "-").lower()
    return f"{ec.name}-before-{version}-g{ec.generation}"[:253]


def upgrade_backup(ec: EtcdCluster, backup: ClusterBackup) -> Obj:
    """Kept with its objects when the cluster goes (the way back from an upgrade)."""
    version = ec.spec.version
    return cluster_backup(
        ec,
        backup,
        upgrade_backup_name(ec),
        labels={LABEL_BEFORE_UPGRADE: version.replace("+", "_")},
        deletion_policy="Retain",
    )
