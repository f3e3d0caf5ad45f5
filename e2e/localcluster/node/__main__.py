"""`python -m e2e.localcluster.node --kubeconfig K --state-dir D --nodes 3`: the local node agent.

It plays the kubelet for Nodes local-0..N-1 (all on this host), runs the cluster DNS and the
local volume provisioner, and on SIGTERM stops every pod process and removes every pod network,
leaving the API objects and the pods' volumes: the next start is a reboot that resumes them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import kr8s.asyncio
import yaml

from e2e.localcluster import config
from e2e.localcluster.node import agent, faults
from e2e.localcluster.node.images import ImageMap
from e2e.localcluster.node.kubeapi import Kube, cancel_and_wait
from e2e.localcluster.node.kubelet import Kubelet, NodeContext, parse_api_port
from e2e.localcluster.node.nodes import Capacity, NodeAgent, node_names
from e2e.localcluster.node.provisioner import Provisioner
from e2e.localcluster.node.volumes import VolumeManager

log = logging.getLogger("etcdop.localnode")


def kubeconfig_server(path: Path) -> str:
    doc = yaml.safe_load(path.read_text())
    ctx_name = doc.get("current-context")
    ctx = next((c["context"] for c in doc.get("contexts", []) if c["name"] == ctx_name), None)
    cluster_name = ctx["cluster"] if ctx else doc["clusters"][0]["name"]
    cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == cluster_name)
    return str(cluster["server"])


def prepare_dirs(state_dir: str, kubeconfig: str) -> tuple[Path, Path]:
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    return state, Path(kubeconfig).resolve()


async def run(args: argparse.Namespace) -> int:
    from e2e.localcluster.node import netns

    state_dir, kubeconfig = prepare_dirs(args.state_dir, args.kubeconfig)
    api_port = args.api_port or parse_api_port(kubeconfig_server(kubeconfig))

    await asyncio.to_thread(netns.ensure_bridge)
    # A (re)start is a boot: whatever an agent that died uncleanly left running in pod
    # namespaces goes; pods are started again from their objects, their volumes kept.
    await asyncio.to_thread(netns.reset_pods)
    dns: Any = None
    if not args.no_dns:
        from e2e.localcluster.node import dns as dnsmod

        dns = dnsmod.ClusterDNS(kubeconfig, state_dir)
        await asyncio.to_thread(dns.start)

    api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig))  # keep: kr8s caches it weakly
    kube = Kube(api)
    ctx = NodeContext(
        kube=kube,
        state_dir=state_dir,
        images=ImageMap(Path(args.images) if args.images else state_dir / "images.yaml"),
        volumes=VolumeManager(kube, state_dir / "volumes"),
        api_host=args.api_host,
        api_port=api_port,
    )
    names = node_names(args.nodes, args.node_prefix)
    capacity = Capacity.of_host()
    kubelet = Kubelet(ctx, names)
    provisioner = Provisioner(kube, state_dir / "volumes" / "pv")
    agents = [NodeAgent(kube, n, capacity) for n in names]
    tasks = [asyncio.create_task(a.run()) for a in agents]
    tasks.append(asyncio.create_task(provisioner.run()))
    tasks.append(asyncio.create_task(kubelet.run()))

    async def announce_ready() -> None:
        """agent-ready holds our pid once Nodes are registered and pods listed: restarts and
        fixtures wait on it (the Nodes of the previous agent may still look Ready)."""
        up = [a.registered.wait() for a in agents if not faults.heartbeat_stopped(a.name)]
        await asyncio.gather(*up, kubelet.booted.wait())
        ready = agent.ready_file(state_dir)
        ready.with_suffix(".tmp").write_text(str(os.getpid()))
        ready.with_suffix(".tmp").replace(ready)
        log.info("node agent ready")

    announcer = asyncio.create_task(announce_ready())

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "node agent up: nodes=%s state_dir=%s api=%s:%s",
        ",".join(names),
        state_dir,
        args.api_host,
        api_port,
    )
    done_task = asyncio.create_task(stop.wait())
    finished, _ = await asyncio.wait([done_task, *tasks], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for t in finished:
        if t is not done_task and t.exception() is not None:
            log.error("node agent part failed: %r", t.exception())
            code = 1
    log.info("node agent stopping: stopping pods")
    await cancel_and_wait([*tasks, done_task, announcer])
    agent.ready_file(state_dir).unlink(missing_ok=True)
    await kubelet.shutdown()
    if dns is not None:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(dns.stop)
    if not args.keep_network:
        await asyncio.to_thread(netns.teardown_all)
    log.info("node agent stopped")
    return code


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m e2e.localcluster.node", description=__doc__)
    p.add_argument("--kubeconfig", required=True, help="admin kubeconfig of the cluster")
    p.add_argument(
        "--state-dir", required=True, help="pods' volumes, logs and provisioned volumes live here"
    )
    p.add_argument("--nodes", type=int, default=3, help="how many Nodes to play (default 3)")
    p.add_argument("--node-prefix", default="local", help="Nodes are PREFIX-0..N-1")
    p.add_argument(
        "--images", default=None, help="image mapping file (default STATE_DIR/images.yaml)"
    )
    p.add_argument(
        "--api-host",
        default=config.BRIDGE_IP,
        help="KUBERNETES_SERVICE_HOST given to pods (default the bridge address)",
    )
    p.add_argument(
        "--api-port",
        type=int,
        default=0,
        help="KUBERNETES_SERVICE_PORT (default the kubeconfig server's port)",
    )
    p.add_argument("--no-dns", action="store_true", help="do not run the cluster DNS")
    p.add_argument(
        "--keep-network",
        action="store_true",
        help="on exit, keep the bridge (pod namespaces are always removed)",
    )
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
