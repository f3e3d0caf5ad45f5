"""The EtcdBackup resource and the labels scheduled backups carry."""

from __future__ import annotations

from etcdop.api.etcdbackup import KIND, PLURAL
from etcdop.api.etcdcluster import GROUP, VERSION
from etcdop.kube.client import Resource

ETCDBACKUPS = Resource(GROUP, VERSION, PLURAL, KIND)
LABEL_SCHEDULED = "etcdop.io/scheduled"
ANN_SCHEDULED_AT = "etcdop.io/scheduled-at"
"""The schedule time a scheduled backup was made for (RFC 3339): the schedule's memory."""
