"""The main job, run by `make demo`: on the local cluster, install etcdop with Helm, create an
EtcdCluster, wait until it is Available, and write and read a key through its members.

The cluster itself is started by `make cluster-up` (the demo target depends on it); this script
talks to it through the kubectl and helm built for it, as a person would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from e2e.localcluster.binaries import ETCD_VERSIONS, bin_path
from e2e.localcluster.cluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "demo"
CLUSTER = "demo"
VERSION = ETCD_VERSIONS[0].lstrip("v")


def run(cluster: LocalCluster, tool: str, *args: str, show: bool = True, check: bool = True) -> str:
    cmd = [str(bin_path(tool)), f"--kubeconfig={cluster.control_plane.kubeconfig}", *args]
    if show:
        print(f"$ {tool} {' '.join(args)}", flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise SystemExit(f"{tool} {' '.join(args)} failed: {out.stderr.strip()}")
    if show and out.stdout.strip():
        print(out.stdout.rstrip(), flush=True)
    return out.stdout


def wait_available(cluster: LocalCluster, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        raw = run(cluster, "kubectl", "-n", NAMESPACE, "get", "etcdcluster", CLUSTER, "-o",
                  "json", show=False)
        status = json.loads(raw).get("status", {})
        line = f"phase={status.get('phase')} ready={status.get('readyMembers')}"
        if line != last:
            print(f"  {line}", flush=True)
            last = line
        available = any(c["type"] == "Available" and c["status"] == "True"
                        for c in status.get("conditions") or [])
        if available and status.get("readyMembers") == 3:
            return dict(status)
        time.sleep(2)
    raise SystemExit(f"EtcdCluster {NAMESPACE}/{CLUSTER} was not Available after {timeout}s")


def main() -> int:
    cluster = LocalCluster()
    if not cluster.control_plane.running():
        print("the local cluster is not running: run `make cluster-up` first", file=sys.stderr)
        return 1
    run(cluster, "kubectl", "get", "--raw", "/readyz")
    run(cluster, "kubectl", "get", "nodes")
    run(cluster, "helm", "upgrade", "--install", "etcdop", str(REPO / "helm" / "etcdop"),
        "--namespace", "etcdop-system", "--create-namespace", "--set", "image.tag=dev",
        "--wait", "--timeout", "3m")
    run(cluster, "kubectl", "create", "namespace", NAMESPACE, check=False, show=False)
    manifest = {
        "apiVersion": "etcdop.io/v1alpha1", "kind": "EtcdCluster",
        "metadata": {"name": CLUSTER, "namespace": NAMESPACE},
        "spec": {"size": 3, "version": VERSION},
    }
    apply = subprocess.run(
        [str(bin_path("kubectl")), f"--kubeconfig={cluster.control_plane.kubeconfig}",
         "apply", "-f", "-"], input=json.dumps(manifest), text=True, capture_output=True,
        check=True,
    )
    print(f"$ kubectl apply -f - (EtcdCluster {CLUSTER}, size 3, etcd {VERSION})\n"
          f"{apply.stdout.strip()}")
    print("waiting for the cluster to become Available:", flush=True)
    status = wait_available(cluster)
    run(cluster, "kubectl", "-n", NAMESPACE, "get", "etcdcluster,pods,svc,pdb", "-o", "wide")
    endpoints = ",".join(status.get("clientEndpoints", []))
    from e2e.localcluster.node.dns import run_on_host_with_cluster_dns

    etcdctl = [str(bin_path("etcdctl")), f"--endpoints={endpoints}"]
    for args in (["put", "greeting", "hello from etcdop"], ["get", "greeting"],
                 ["endpoint", "status", "-w", "table"]):
        print(f"$ etcdctl {' '.join(args)}", flush=True)
        out = run_on_host_with_cluster_dns([*etcdctl, *args], cluster.state_dir / "node",
                                           timeout=30, check=True)
        print(out.stdout.rstrip(), flush=True)
    print("\nThe cluster is up. Try: eval \"$(.venv/bin/python -m e2e.localcluster env)\"; "
          f"kubectl -n {NAMESPACE} get etcd")
    return 0


if __name__ == "__main__":
    sys.exit(main())
