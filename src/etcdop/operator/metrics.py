"""The operator's Prometheus metrics: what an on-call person graphs and alerts on."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "etcdop_reconcile_total", "Reconciles run, by kind and result.", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "etcdop_reconcile_duration_seconds",
    "Time one reconcile took, by kind.",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RECONCILE_ERRORS = Counter(
    "etcdop_reconcile_errors_total", "Reconciles that raised, by kind.", ["kind"]
)
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
QUEUE_DEPTH = Gauge("etcdop_workqueue_depth", "Keys waiting in the work queue.", ["queue"])
LEADER = Gauge("etcdop_leader", "1 while this replica holds the leader lease.")

MEMBER_STATES = ("healthy", "unhealthy", "learner")
