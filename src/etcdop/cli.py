"""The `etcdop` command: one entry point, one subcommand per deployable."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from etcdop import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etcdop", description=__doc__)
    parser.add_argument("--version", action="version", version=f"etcdop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    op = sub.add_parser("operator", help="run the operator (reconciles EtcdCluster objects)")
    from etcdop.operator.main import add_arguments

    add_arguments(op)
    agent = sub.add_parser("agent", help="run the sidecar agent beside an etcd member")
    from etcdop.agent.main import add_arguments as add_agent_arguments

    add_agent_arguments(agent)
    restore = sub.add_parser(
        "restore", help="restore a backup into a member's data directory (a seed's init step)"
    )
    from etcdop.agent.restore import add_arguments as add_restore_arguments

    add_restore_arguments(restore)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "operator":
        from etcdop.operator.main import main as operator_main

        return operator_main(args)
    if args.command == "agent":
        from etcdop.agent.main import main as agent_main

        return agent_main(args)
    if args.command == "restore":
        from etcdop.agent.restore import main as restore_main

        return restore_main(args)
    print(f"etcdop {args.command}: not implemented yet", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
