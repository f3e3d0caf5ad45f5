"""The operator's Prometheus metrics: what an on-call person graphs and alerts on.

The per-controller ones (reconciles, errors, duration, queue depth) belong to the runtime
(kube/metrics.py) and are re-exported here, so that this stays the one list to read."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from etcdop.kube.metrics import QUEUE_DEPTH, RECONCILE_ERRORS, RECONCILE_SECONDS, RECONCILES

__all__ = [
    "ACTIONS",
    "LEADER",
    "MEMBERS",
    "MEMBER_STATES",
    "QUEUE_DEPTH",
    "RECONCILES",
    "RECONCILE_ERRORS",
    "RECONCILE_SECONDS",
]

ACTIONS = Counter(
    "etcdop_actions_total",
    "Planned steps taken, by kind of step and reason.",
    ["action", "reason"],
)
MEMBERS = Gauge(
    "etcdop_cluster_members",
    "Members of each EtcdCluster by state.",
    ["namespace", "cluster", "state"],
)
LEADER = Gauge("etcdop_leader", "1 while this replica holds the leader lease.")

MEMBER_STATES = ("healthy", "unhealthy", "learner")
