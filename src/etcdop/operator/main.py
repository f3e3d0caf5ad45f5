"""`etcdop operator`: the list of controllers, run by the Manager only while this replica leads."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import socket
import warnings

import kr8s.asyncio

from etcdop import logs
from etcdop.api import GROUP
from etcdop.kube.client import KubeClient
from etcdop.kube.events import EventRecorder
from etcdop.kube.informer import CacheSyncError
from etcdop.kube.leader import LeaderElector
from etcdop.kube.manager import Controller, Manager
from etcdop.operator import (
    autorestore,
    backupschedule,
    endpoint,
    etcdbackup,
    etcdcluster,
    etcdrestore,
    metrics,
    sidecar,
)

log = logging.getLogger("etcdop.operator")


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
        help="port of the HTTP endpoint: /metrics (Prometheus), /healthz and /readyz (probes); "
        "0 disables it",
    )
    p.add_argument("--metrics-address", default="0.0.0.0")
    p.add_argument(
        "--cluster-domain",
        default="cluster.local",
        help="the Kubernetes cluster's DNS domain (default cluster.local)",
    )
    p.add_argument(
        "--agent-image",
        default=sidecar.DEFAULT_AGENT_IMAGE,
        help="image of the backup agent sidecar in member pods: the operator's own image "
        f"(default {sidecar.DEFAULT_AGENT_IMAGE})",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def controllers(
    manager: Manager, client: KubeClient, args: argparse.Namespace, identity: str
) -> list[Controller]:
    """Every controller of the operator: a new kind is one more line here."""
    recorder = EventRecorder(client, f"{GROUP}/operator", identity)
    return [
        etcdcluster.controller(
            manager,
            client,
            recorder,
            workers=args.workers,
            cluster_domain=args.cluster_domain,
            agent_image=args.agent_image,
        ),
        etcdbackup.controller(manager, client, recorder),
        etcdrestore.controller(manager, client, recorder),
        autorestore.controller(manager, client, recorder),
        backupschedule.controller(manager, client, recorder),
    ]


async def run(args: argparse.Namespace) -> int:
    identity = args.id or f"{socket.gethostname()}-{secrets.token_hex(3)}"
    if args.kubeconfig:
        api = await kr8s.asyncio.api(kubeconfig=args.kubeconfig)
    else:
        api = await kr8s.asyncio.api()
    client = KubeClient(api)
    manager = Manager(client, namespace=args.namespace, cache_sync_timeout=args.cache_sync_timeout)
    for c in controllers(manager, client, args, identity):
        manager.register(c)
    runner = (
        await endpoint.serve(args.metrics_address, args.metrics_port) if args.metrics_port else None
    )
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
    campaign = asyncio.create_task(manager.lead(elector))
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
    finally:
        if runner is not None:
            await runner.cleanup()
    return 0


def main(args: argparse.Namespace) -> int:
    logs.setup(args.log_level)
    # kr8s 0.20 warns about any Kubernetes newer than it was tested on; we test on 1.36 ourselves.
    warnings.filterwarnings("ignore", message="Kubernetes version .* is not supported")
    return asyncio.run(run(args))
