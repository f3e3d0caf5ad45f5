"""The agent's Prometheus metrics, in a registry of its own (a test can run several agents)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LABELS = ("namespace", "cluster")


class AgentMetrics:
    def __init__(self, namespace: str, cluster: str) -> None:
        self.registry = CollectorRegistry()
        self._labels = {"namespace": namespace, "cluster": cluster}
        r = self.registry
        self.backup_duration = Histogram(
            "etcdop_agent_backup_duration_seconds",
            "Time from snapshot start to metadata written",
            _LABELS,
            registry=r,
            buckets=(1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
        ).labels(**self._labels)
        self.backup_size = Gauge(
            "etcdop_agent_backup_size_bytes",
            "Size of the last successful backup as stored",
            _LABELS,
            registry=r,
        ).labels(**self._labels)
        self.last_success = Gauge(
            "etcdop_agent_backup_last_success_timestamp_seconds",
            "Unix time the last successful backup completed",
            _LABELS,
            registry=r,
        ).labels(**self._labels)
        self.backups = Counter(
            "etcdop_agent_backups", "Successful backups", _LABELS, registry=r
        ).labels(**self._labels)
        self._failures = Counter(
            "etcdop_agent_backup_failures",
            "Failed backups, by reason",
            (*_LABELS, "reason"),
            registry=r,
        )
        self._drills = Counter(
            "etcdop_agent_restore_drills",
            "Restore drills, by result",
            (*_LABELS, "result"),
            registry=r,
        )
        self.refused = Counter(
            "etcdop_agent_requests_refused",
            "Requests refused for a missing or wrong token",
            registry=r,
        )
        self.pending_aborts = Gauge(
            "etcdop_agent_pending_aborts",
            "Multipart uploads whose abort failed and is being retried",
            registry=r,
        )

    def failure(self, reason: str) -> None:
        self._failures.labels(**self._labels, reason=reason).inc()

    def drill(self, result: str) -> None:
        self._drills.labels(**self._labels, result=result).inc()
