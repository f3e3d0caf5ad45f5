"""The operator's Prometheus metrics: what an on-call person graphs and alerts on.

The per-controller ones (reconciles, errors, duration, queue depth) belong to the runtime
(kube/metrics.py) and are re-exported here, so that this stays the one list to read."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from etcdop.kube.metrics import QUEUE_DEPTH, RECONCILE_ERRORS, RECONCILE_SECONDS, RECONCILES

__all__ = [
    "ACTIONS",
    "BACKUP_DRILLS",
    "BACKUP_DURATION",
    "BACKUP_FAILURES",
    "BACKUP_LAST_SUCCESS",
    "BACKUP_SIZE",
    "LEADER",
    "MEMBERS",
    "MEMBER_REPLACE_SECONDS",
    "MEMBER_STATES",
    "QUEUE_DEPTH",
    "RECONCILES",
    "RECONCILE_ERRORS",
    "RECONCILE_SECONDS",
    "UPGRADES",
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

BACKUP_DURATION = Histogram(
    "etcdop_backup_duration_seconds",
    "Time from the backup call to the agent's answer, for backups that succeeded.",
    ["namespace", "cluster"],
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
BACKUP_SIZE = Gauge(
    "etcdop_backup_size_bytes",
    "Size of the last successful backup as stored.",
    ["namespace", "cluster"],
)
BACKUP_LAST_SUCCESS = Gauge(
    "etcdop_backup_last_success_timestamp_seconds",
    "Unix time of the last successful backup: alert when it gets old.",
    ["namespace", "cluster"],
)
BACKUP_FAILURES = Counter(
    "etcdop_backup_failures_total",
    "Backups that ended Failed, by reason.",
    ["namespace", "cluster", "reason"],
)
BACKUP_DRILLS = Counter(
    "etcdop_backup_drills_total",
    "Restore drills by result: verified, failed (the backup is bad) or error (could not run).",
    ["namespace", "cluster", "result"],
)
UPGRADES = Counter(
    "etcdop_upgrades_total",
    "Rollouts of the member pods (version or pod changes) by event: started, finished, stalled.",
    ["namespace", "cluster", "event"],
)
MEMBER_REPLACE_SECONDS = Histogram(
    "etcdop_member_replacement_seconds",
    "Seconds from a new member pod's creation to its old member's removal (Surge), or from a "
    "re-created pod's creation to its member serving again (InPlace).",
    ["strategy"],
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
