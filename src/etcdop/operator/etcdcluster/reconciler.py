"""The EtcdCluster reconciler: components, observe, plan one step, act, report. Level-triggered.

Nothing survives between reconciles but what is in the world: the pods and their annotations,
the etcd membership, and the object's status. Killing the operator at any instant is harmless.
This module only orders the jobs; each job lives in the module named for it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from etcdop.api import EtcdCluster, InvalidObject
from etcdop.api.etcdbackup import EtcdBackup
from etcdop.etcd import EtcdClient
from etcdop.kube.client import KubeClient
from etcdop.kube.events import EventRecorder
from etcdop.operator import sidecar
from etcdop.operator.etcdcluster import components
from etcdop.operator.etcdcluster.acting import Actor
from etcdop.operator.etcdcluster.cache import Caches
from etcdop.operator.etcdcluster.observing import client_url, observe_cluster, pod_ips, pods_of
from etcdop.operator.etcdcluster.status import Reporter
from etcdop.operator.model import Observed
from etcdop.operator.planner import (
    Action,
    Done,
    RemoveMember,
    RestoreSeed,
    Wait,
    describe,
    plan,
)
from etcdop.operator.restorerequest import RestoreRequest, bootstrap_request, pending_restore

log = logging.getLogger(__name__)

REQUEUE_BUSY = 0.2
"""Seconds to the next look after a step: the next step usually follows at once (the cache
already shows our own write), and each second here was a second of every member replacement."""
REQUEUE_SOON = 0.5
"""After a wait that etcd or the kubelet ends within moments and that no API event announces
(a learner catching up, a pod starting or terminating)."""
SOON = frozenset({"LearnerCatchingUp", "PodStarting", "MemberStarting", "PodTerminating"})
REQUEUE_REFUSED = 1.0
"""After etcd refused a membership change: mostly its 5 s rule (the leader must have been
connected to every voter for 5 s, so a new learner waits 5 s after the last one started);
once a second keeps the StepRefused Events few and costs at most a second per member."""
REQUEUE_WAITING = 3.0
REQUEUE_RESYNC = 30.0
"""A settled cluster is still checked now and then: etcd members fail without any API event."""


class ClusterReconciler:
    def __init__(
        self,
        caches: Caches,
        kube: KubeClient,
        recorder: EventRecorder,
        *,
        cluster_domain: str = "cluster.local",
        agent_image: str = sidecar.DEFAULT_AGENT_IMAGE,
        etcd_timeout: float = 3.0,
        on_action: Callable[[EtcdCluster, Action], None] | None = None,
        on_observed: Callable[[EtcdCluster, Observed], None] | None = None,
    ) -> None:
        self.caches = caches
        self.kube = kube
        self.etcd_timeout = etcd_timeout
        self.domain = cluster_domain
        self.agent_image = agent_image
        self.on_action = on_action
        self.on_observed = on_observed
        self.components = components.components(caches)
        self.actor = Actor(caches, kube, cluster_domain, agent_image)
        self.reporter = Reporter(kube, recorder, cluster_domain)

    def _bootstrap(self, ec: EtcdCluster) -> tuple[RestoreRequest | None, str]:
        """The backup a new cluster starts from (spec.bootstrap), or why it cannot yet."""
        src = ec.spec.bootstrap
        if src is None or ec.status.cluster_id:
            return None, ""
        backup = None
        if src.backup_name and self.caches.backups is not None:
            braw = self.caches.backups.get_by(ec.namespace, src.backup_name)
            if braw is not None:
                with contextlib.suppress(InvalidObject):
                    backup = EtcdBackup.from_dict(braw)
        got = bootstrap_request(ec.uid, ec.name, src, backup)
        return (None, got) if isinstance(got, str) else (got, "")

    async def reconcile(self, key: str) -> float | None:
        """Take one step for the EtcdCluster KEY (`namespace/name`); return seconds to requeue."""
        namespace, _, name = key.partition("/")
        raw = self.caches.clusters.get_by(namespace, name)
        if raw is None:
            return None  # deleted: the garbage collector removes what it owned
        try:
            ec = EtcdCluster.from_dict(raw)
        except InvalidObject as e:
            await self.reporter.invalid(raw, str(e))
            return None
        errors = ec.validate()
        if errors:
            await self.reporter.invalid(raw, "; ".join(str(err) for err in errors))
            return None
        if ec.being_deleted:
            return None

        owned_refused = await components.sync(self.kube, ec, self.components)
        restore = pending_restore((raw.get("metadata") or {}).get("annotations"), ec.status)
        bootstrap, blocked = self._bootstrap(ec) if restore is None else (None, "")
        pods = pods_of(self.caches, ec)
        endpoints = {name: client_url(ip) for name, ip in pod_ips(pods).items()}
        async with EtcdClient(
            list(endpoints.values()) or ["http://127.0.0.1:1"],  # no pod yet: calls fail fast
            timeout=self.etcd_timeout,
        ) as etcd:
            observed, cluster_id, dissenters = await observe_cluster(
                self.caches,
                ec,
                pods,
                endpoints,
                etcd,
                self.domain,
                self.agent_image,
                restore=restore,
                bootstrap_blocked=blocked,
            )
            action = plan(observed)
            if self.on_observed:
                self.on_observed(ec, observed)
            log.info(
                "reconcile",
                extra={
                    "cluster": key,
                    "action": type(action).__name__,
                    "reason": action.reason,
                    "detail": describe(action),
                    **({"dissenting": sorted(dissenters)} if dissenters else {}),
                },
            )
            if isinstance(action, RemoveMember | RestoreSeed):
                # Record the smaller membership first: the next look must not hold the removed
                # voter's absence against the member list (see observe.agreed_membership). A
                # restore's seed is recorded (and the old membership forgotten) before it exists.
                await self.reporter.write_status(
                    ec, raw, observed, action, cluster_id, restore=restore
                )
            agreeing = [url for name, url in endpoints.items() if name not in dissenters]
            if dissenters and agreeing:
                # membership changes go only to members that share the agreed view
                async with EtcdClient(agreeing, timeout=self.etcd_timeout) as trusted:
                    outcome = await self.actor.act(
                        ec, observed, action, trusted, restore, bootstrap
                    )
            else:
                outcome = await self.actor.act(ec, observed, action, etcd, restore, bootstrap)
        await self.reporter.report(
            ec, raw, observed, action, outcome or owned_refused, cluster_id, restore=restore
        )
        if self.on_action:
            self.on_action(ec, action)
        if isinstance(action, Done):
            return REQUEUE_RESYNC
        if outcome is not None:
            refused = outcome.startswith(("LearnerNotReady", "MembershipChangeRefused"))
            return REQUEUE_REFUSED if refused else REQUEUE_WAITING
        if isinstance(action, Wait):
            return REQUEUE_SOON if action.reason in SOON else REQUEUE_WAITING
        return REQUEUE_BUSY
