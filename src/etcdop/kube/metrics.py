"""Metrics of the controller runtime, labelled per controller: every controller the Manager runs
gets them without a line of its own."""

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
QUEUE_DEPTH = Gauge("etcdop_workqueue_depth", "Keys waiting in the work queue.", ["queue"])
