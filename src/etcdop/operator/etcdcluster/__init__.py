"""The EtcdCluster controller, split by job: ``controller`` (its registration), ``reconciler``
(the order of the jobs), ``observing``, ``acting``, ``components`` and ``status``."""

from etcdop.operator.etcdcluster.cache import ETCDCLUSTERS, MANAGED, Caches
from etcdop.operator.etcdcluster.controller import clusters_on_node, controller
from etcdop.operator.etcdcluster.reconciler import ClusterReconciler

__all__ = [
    "ETCDCLUSTERS",
    "MANAGED",
    "Caches",
    "ClusterReconciler",
    "clusters_on_node",
    "controller",
]
