"""`etcdop agent`: the sidecar beside one etcd member. It needs no Kubernetes credentials: the
operator calls it over HTTP with the cluster's token, and it reaches only its own member."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

from aiohttp import web

from etcdop import logs
from etcdop.agent import memory
from etcdop.agent.api import Agent, AgentSettings, build_app
from etcdop.agent.backup import BackupPlan
from etcdop.agent.drill import DrillTools
from etcdop.etcd import EtcdClient
from etcdop.objectstore import MIB

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument(
        "--address",
        default=env("POD_IP", "127.0.0.1"),
        help="address to serve the API on (default: $POD_IP, else 127.0.0.1)",
    )
    p.add_argument("--port", type=int, default=8081, help="port of the API (default 8081)")
    p.add_argument(
        "--etcd-endpoint",
        default="http://127.0.0.1:2379",
        help="client URL of the local member (default http://127.0.0.1:2379)",
    )
    p.add_argument(
        "--namespace",
        default=env("POD_NAMESPACE", ""),
        help="the EtcdCluster's namespace (default: $POD_NAMESPACE)",
    )
    p.add_argument(
        "--cluster",
        default=env("ETCDOP_CLUSTER", ""),
        help="the EtcdCluster's name (default: $ETCDOP_CLUSTER)",
    )
    p.add_argument(
        "--member",
        default=env("POD_NAME", ""),
        help="this member's name, recorded in backups (default: $POD_NAME)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        required=True,
        help="file holding the per-cluster token every request must carry",
    )
    p.add_argument(
        "--s3-credentials-dir",
        type=Path,
        default=Path("/etc/etcdop/s3"),
        help="mounted storage Secret(s): accessKeyId, secretAccessKey (and "
        "sseCustomerKey for SSE-C) here, or in a subdirectory per Secret name "
        "(default /etc/etcdop/s3)",
    )
    p.add_argument(
        "--part-size-mib",
        type=int,
        default=8,
        help="multipart part size in MiB, at least 5 (default 8)",
    )
    p.add_argument(
        "--parts-in-flight",
        type=int,
        default=2,
        help="parts uploaded at once; memory is about part size x (this + 2)",
    )
    p.add_argument("--etcdutl", default="etcdutl", help="etcdutl for the restore drill")
    p.add_argument("--etcd", default="etcd", help="etcd for the restore drill")
    p.add_argument(
        "--scratch-dir",
        type=Path,
        default=None,
        help="where the restore drill works (default: the temporary directory)",
    )
    p.add_argument("--log-level", default="info", help="debug, info, warning or error")


def main(args: argparse.Namespace) -> int:
    logs.setup(args.log_level)
    missing = [f"--{n}" for n in ("namespace", "cluster", "member") if not getattr(args, n)]
    if missing:
        log.error("flags missing", extra={"flags": missing})
        return 2
    if args.part_size_mib < 5:
        log.error("--part-size-mib must be at least 5 (S3's minimum part size)")
        return 2
    if args.parts_in_flight < 1:
        log.error("--parts-in-flight must be at least 1")
        return 2
    settings = AgentSettings(
        etcd_endpoint=args.etcd_endpoint,
        token_file=args.token_file,
        credentials_dir=args.s3_credentials_dir,
        plan=BackupPlan(
            namespace=args.namespace,
            cluster=args.cluster,
            member=args.member,
            part_size=args.part_size_mib * MIB,
            parts_in_flight=args.parts_in_flight,
        ),
        drill=DrillTools(etcdutl=args.etcdutl, etcd=args.etcd, scratch=args.scratch_dir),
    )
    memory.tune_allocator()
    asyncio.run(serve(settings, args.address, args.port))
    return 0


async def serve(settings: AgentSettings, address: str, port: int) -> None:
    async with EtcdClient([settings.etcd_endpoint], timeout=5.0) as etcd:
        app = build_app(Agent(settings, etcd))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, address, port)
        await site.start()
        log.info(
            "agent serving",
            extra={
                "address": address,
                "port": port,
                "etcd": settings.etcd_endpoint,
                "cluster": settings.plan.cluster,
                "member": settings.plan.member,
            },
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
            log.info("agent stopping")
        finally:
            await runner.cleanup()
