"""The main job, run by `make demo`: show the local cluster, then an etcd cluster on it.

The cluster itself is started by `make cluster-up` (the demo target depends on it); this script
talks to it through the kubectl built for it, as a person would.
"""

from __future__ import annotations

import subprocess
import sys

from e2e.localcluster.binaries import bin_path
from e2e.localcluster.cluster import LocalCluster


def kubectl(cluster: LocalCluster, *args: str) -> str:
    cmd = [str(bin_path("kubectl")), f"--kubeconfig={cluster.control_plane.kubeconfig}", *args]
    print(f"$ kubectl {' '.join(args)}", flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
    print(out.stdout, flush=True)
    return out.stdout


def main() -> int:
    cluster = LocalCluster()
    if not cluster.control_plane.running():
        print("the local cluster is not running: run `make cluster-up` first", file=sys.stderr)
        return 1
    kubectl(cluster, "get", "--raw", "/readyz?verbose")
    kubectl(cluster, "version")
    kubectl(cluster, "get", "nodes", "-o", "wide")
    kubectl(cluster, "get", "namespaces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
