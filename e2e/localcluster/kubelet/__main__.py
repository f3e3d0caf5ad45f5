"""`python -m e2e.localcluster.kubelet provisioner --kubeconfig K --root DIR`: the ``local``
StorageClass and its hostPath volumes (provisioner.py), beside the real kubelets, which
mount hostPath volumes themselves."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import kr8s.asyncio

from e2e.localcluster.kubeapi import KubeClient
from e2e.localcluster.kubelet.provisioner import Provisioner


async def provision(kubeconfig: Path, root: Path) -> None:
    api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig))  # keep: kr8s caches it weakly
    await Provisioner(KubeClient(api), root).run()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m e2e.localcluster.kubelet")
    parser.add_argument("what", choices=["provisioner"])
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--root", required=True, type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(provision(args.kubeconfig, args.root))


if __name__ == "__main__":
    main()
