"""`python -m e2e.localcluster up|down|status|env|bin NAME|node ...`: the local cluster for people.

`node stop NAME` / `node start NAME` power one Node off and on (its containers killed, its
kubelet and containerd stopped); `node restart-all` reboots every Node at once while the control
plane keeps running.
"""

from __future__ import annotations

import argparse
import sys

from e2e.localcluster.binaries import bin_path
from e2e.localcluster.cluster import LocalCluster, default_state_dir
from e2e.localcluster.kubelet.nodes import RealNodes
from e2e.localcluster.lock import MachineBusy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.localcluster", description=__doc__)
    parser.add_argument("--state-dir", type=str, default=None,
                        help=f"where the cluster keeps its files (default {default_state_dir()})")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start (or keep) the control plane, S3 server and nodes")
    up.add_argument("--nodes", type=int, default=3)
    up.add_argument("--no-node", action="store_true", help="control plane and S3 only")
    up.add_argument("--wait-lock", type=float, default=0, metavar="SECONDS",
                    help="wait this long for another session's nodes")
    sub.add_parser("down", help="stop everything `up` started and undo its host changes")
    sub.add_parser("status", help="say which parts are running")
    sub.add_parser("env", help="print export lines for KUBECONFIG and PATH")
    sub.add_parser("usage", help="memory and CPU of the containerds and kubelets")
    n = sub.add_parser("node", help="node faults: stop NAME, start NAME, restart-all")
    n.add_argument("action", choices=["stop", "start", "restart-all"])
    n.add_argument("name", nargs="?", default=None, help="the Node, e.g. local-1")
    b = sub.add_parser("bin", help="print the path of one cached binary")
    b.add_argument("name")
    b.add_argument("--version", default=None, help="etcd line, e.g. v3.5.35")
    args = parser.parse_args(argv)

    from pathlib import Path

    cluster = LocalCluster(Path(args.state_dir) if args.state_dir else None,
                           nodes=getattr(args, "nodes", 3))
    if args.cmd == "bin":
        print(bin_path(args.name, args.version))
    elif args.cmd == "up":
        try:
            cluster.up(with_node=not args.no_node, lock_wait=args.wait_lock)
        except MachineBusy as e:
            raise SystemExit(f"{e} (`up --wait-lock SECONDS` waits for them)") from None
        print(f"# local cluster is up: API server {cluster.control_plane.server}", file=sys.stderr)
        print(f"export KUBECONFIG={cluster.control_plane.kubeconfig}")
    elif args.cmd == "down":
        cluster.down()
        print("# local cluster stopped", file=sys.stderr)
    elif args.cmd == "node":
        real = RealNodes.current()  # the nodes running here, whichever cluster started them
        if args.action == "restart-all":
            real.restart_all()
            print("# every node restarted", file=sys.stderr)
        elif not args.name:
            parser.error(f"node {args.action} needs the Node's name")
        elif args.action == "stop":
            real.stop_runtime(real.node(args.name))
            print(f"# node {args.name} stopped", file=sys.stderr)
        else:
            real.start_runtime(real.node(args.name))
            print(f"# node {args.name} started", file=sys.stderr)
    elif args.cmd == "usage":
        import json

        print(json.dumps(cluster.real_nodes().usage(), indent=1))
    elif args.cmd == "env":
        print("\n".join(cluster.env_lines()))
    elif args.cmd == "status":
        cp = "running" if cluster.control_plane.running() else "stopped"
        s3 = "running" if cluster.s3.running() else "stopped"
        nodes = "running" if cluster.nodes_running() else "stopped"
        print(f"control plane: {cp}\ns3: {s3}\nnodes: {nodes}\nstate: {cluster.state_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
