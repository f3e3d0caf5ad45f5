"""`etcdop operator`: caches, work queue and workers, started only while this replica leads."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import socket
import warnings
from collections.abc import Callable
from typing import Any

import kr8s.asyncio
from prometheus_client import start_http_server

from etcdop import logs
from etcdop.api import GROUP, KIND
from etcdop.kube.client import NODES, PDBS, PODS, PVCS, SERVICES, KubeClient, key_of
from etcdop.kube.events import EventRecorder
from etcdop.kube.informer import CacheSyncError, Handler, Informer, enqueue_by_label, wait_for_sync
from etcdop.kube.leader import LeaderElector
from etcdop.kube.store import Change, Store
from etcdop.kube.workqueue import WorkQueue, run_workers
from etcdop.operator import manifests, metrics
from etcdop.operator.cluster import ETCDCLUSTERS, Caches, ClusterReconciler
from etcdop.operator.model import Observed
from etcdop.operator.planner import Action

log = logging.getLogger("etcdop.operator")

MANAGED = f"app.kubernetes.io/managed-by={manifests.MANAGED_BY}"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="kubeconfig file (default: $KUBECONFIG, else in-cluster credentials)",
    )
    p.add_argument(
        "--namespace", default=None, help="watch only this namespace (default: all namespaces)"
    )
    p.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the leader-election Lease (default: $POD_NAMESPACE or 'default')",
    )
    p.add_argument("--lease-name", default="etcdop-operator", help="the Lease's name")
    p.add_argument(
        "--id",
        default=None,
        help="leader-election identity (default: hostname plus a random suffix)",
    )
    p.add_argument("--workers", type=int, default=4, help="concurrent reconciles (default 4)")
    p.add_argument(
        "--cache-sync-timeout",
        type=float,
        default=60.0,
        help="seconds a new leader waits for its caches (list and watch) before giving up: it "
        "then hands the lease back and exits 1, naming what RBAC refused (default 60)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=8080,
        help="port of the Prometheus /metrics endpoint (0 disables it)",
    )
    p.add_argument("--metrics-address", default="0.0.0.0")
    p.add_argument(
        "--cluster-domain",
        default="cluster.local",
        help="the Kubernetes cluster's DNS domain (default cluster.local)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def enqueue_unless_status_only(add: Callable[[str], None]) -> Handler:
    """Reconcile an EtcdCluster when anything but its status changed: our own status writes
    must not wake the reconciler again (a loop), and the resync requeue covers the rest."""

    def handler(change: Change) -> None:
        if change.type == "updated" and change.old is not None:
            old, new = change.old.get("metadata") or {}, change.obj.get("metadata") or {}
            if all(
                old.get(k) == new.get(k)
                for k in ("generation", "deletionTimestamp", "labels", "annotations")
            ):
                return
        add(key_of(change.obj))

    return handler


def enqueue_clusters_on_node(pods: Store, add: Callable[[str], None]) -> Handler:
    """A node that changes (goes NotReady, comes back, is deleted) wakes every cluster with a
    member pod on it: a member there may be lost, or back."""

    def handler(change: Change) -> None:
        node = (change.obj.get("metadata") or {}).get("name")
        for pod in pods:
            meta = pod.get("metadata") or {}
            cluster = (meta.get("labels") or {}).get(manifests.LABEL_CLUSTER)
            if cluster and (pod.get("spec") or {}).get("nodeName") == node:
                add(f"{meta.get('namespace')}/{cluster}")

    return handler


def _record_members(ec: Any, o: Observed) -> None:
    counts = dict.fromkeys(metrics.MEMBER_STATES, 0)
    for m in o.members or ():
        state = "learner" if m.is_learner else ("healthy" if m.healthy else "unhealthy")
        counts[state] += 1
    for state, n in counts.items():
        metrics.MEMBERS.labels(ec.namespace, ec.name, state).set(n)


def _record_action(ec: Any, action: Action) -> None:
    metrics.ACTIONS.labels(type(action).__name__, action.reason).inc()


def _observe_reconcile(key: str, seconds: float, error: BaseException | None) -> None:
    metrics.RECONCILE_SECONDS.labels(KIND).observe(seconds)
    metrics.RECONCILES.labels(KIND, "error" if error else "ok").inc()
    if error is not None:
        metrics.RECONCILE_ERRORS.labels(KIND).inc()


async def _lead(client: KubeClient, args: argparse.Namespace, identity: str) -> None:
    """Everything a leader runs: it ends (by cancellation) when leadership is lost."""
    queue: WorkQueue[str] = WorkQueue(name="etcdcluster")
    informers = {
        "clusters": Informer(client, ETCDCLUSTERS, namespace=args.namespace),
        "pods": Informer(client, PODS, namespace=args.namespace, label_selector=MANAGED),
        "claims": Informer(client, PVCS, namespace=args.namespace, label_selector=MANAGED),
        "services": Informer(client, SERVICES, namespace=args.namespace, label_selector=MANAGED),
        "pdbs": Informer(client, PDBS, namespace=args.namespace, label_selector=MANAGED),
    }
    informers["nodes"] = Informer(client, NODES)
    informers["clusters"].add_handler(enqueue_unless_status_only(queue.add))
    for name in ("pods", "claims", "services", "pdbs"):
        informers[name].add_handler(enqueue_by_label(queue.add, manifests.LABEL_CLUSTER))
    informers["nodes"].add_handler(enqueue_clusters_on_node(informers["pods"].store, queue.add))
    caches = Caches(**{name: inf.store for name, inf in informers.items()})
    recorder = EventRecorder(client, f"{GROUP}/operator", identity)
    reconciler = ClusterReconciler(
        caches,
        client,
        recorder,
        cluster_domain=args.cluster_domain,
        on_action=_record_action,
        on_observed=_record_members,
    )

    async def report_depth() -> None:
        while True:
            metrics.QUEUE_DEPTH.labels(queue.name).set(queue.depth)
            await asyncio.sleep(2)

    try:
        async with asyncio.TaskGroup() as tasks:
            for inf in informers.values():
                tasks.create_task(inf.run(), name=f"informer-{inf}")
            await wait_for_sync(informers.values(), args.cache_sync_timeout)
            log.info("caches synced; reconciling", extra={"workers": args.workers})
            tasks.create_task(report_depth())
            tasks.create_task(
                run_workers(queue, args.workers, reconciler.reconcile, _observe_reconcile)
            )
    except* CacheSyncError as group:  # the TaskGroup wraps it; it is the one error to report
        raise group.exceptions[0] from None


async def run(args: argparse.Namespace) -> int:
    identity = args.id or f"{socket.gethostname()}-{secrets.token_hex(3)}"
    if args.kubeconfig:
        api = await kr8s.asyncio.api(kubeconfig=args.kubeconfig)
    else:
        api = await kr8s.asyncio.api()
    client = KubeClient(api)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    elector = LeaderElector(
        client,
        args.lease_name,
        args.lease_namespace,
        identity,
        on_started=lambda: metrics.LEADER.set(1),
        on_stopped=lambda: metrics.LEADER.set(0),
    )
    log.info(
        "waiting for the leader lease",
        extra={"lease": f"{args.lease_namespace}/{args.lease_name}", "identity": identity},
    )
    campaign = asyncio.create_task(elector.lead(lambda: _lead(client, args, identity)))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, campaign.cancel)  # cancelling hands the lease back
    try:
        await campaign
    except asyncio.CancelledError:
        log.info("stopped; the lease was handed back")
        return 0
    except CacheSyncError as e:  # no use leading with caches RBAC refuses: say what to grant
        log.error("%s; exiting, the lease was handed back", e, extra={"informers": e.informers})
        return 1
    except Exception:
        log.exception("the reconcile loop failed; exiting so that another replica takes over")
        return 1
    return 0


def main(args: argparse.Namespace) -> int:
    logs.setup(args.log_level)
    # kr8s 0.20 warns about any Kubernetes newer than it was tested on; we test on 1.36 ourselves.
    warnings.filterwarnings("ignore", message="Kubernetes version .* is not supported")
    return asyncio.run(run(args))
