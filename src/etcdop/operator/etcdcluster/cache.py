"""What the EtcdCluster controller reads: watch-fed caches, shared through the Manager."""

from __future__ import annotations

from dataclasses import dataclass

from etcdop.api import GROUP, KIND, PLURAL, VERSION
from etcdop.kube.client import Resource
from etcdop.kube.store import Store
from etcdop.operator import manifests

ETCDCLUSTERS = Resource(GROUP, VERSION, PLURAL, KIND)
MANAGED = f"app.kubernetes.io/managed-by={manifests.MANAGED_BY}"
"""The label selector of every object the operator creates (its informers watch only those)."""


@dataclass
class Caches:
    """Watch-fed caches of what the operator reads; plans are made on these, not on GETs."""

    clusters: Store
    pods: Store
    claims: Store
    services: Store
    pdbs: Store
    nodes: Store | None = None
    """Nodes, to tell a pod stuck on a lost node from one that is terminating; None when the
    operator may not read nodes (then no pod is ever taken for stuck)."""
    secrets: Store | None = None
    """Secrets the operator made (the agents' token); None: no token Secret is kept."""
    backups: Store | None = None
    """EtcdBackups: the one taken before an upgrade, and the one a new cluster starts from
    (spec.bootstrap.backupName); None: upgrades take no backup, clones wait."""
