"""The main job, run by `make demo`; `make demo-down` (`python -m e2e.demo down`) undoes it.

`up`: the local cluster up, etcdop installed from the chart (the operator runs as Pods on the
local node, with the chart's service account), a 3-member EtcdCluster created, keys written, an
EtcdBackup taken to the local S3 server and verified (checksum, the agent's restore drill, and
the keys read back from the downloaded snapshot), then what to try next.

It talks to the cluster through the kubectl and helm built for it, as a person would. Every
wait says what it waits for and for how long so far; a failure names its step and why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from e2e.localcluster import lock
from e2e.localcluster.binaries import ETCD_VERSIONS, bin_path
from e2e.localcluster.cluster import LocalCluster
from e2e.operator import product_image

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "etcdop"
RELEASE = "etcdop"
SYSTEM_NS = "etcdop-system"
NAMESPACE = "demo"
CLUSTER = "demo"
BUCKET = "etcdop-demo"
BACKUP = "demo-first"
VERSION = ETCD_VERSIONS[0].lstrip("v")
KEYS = {f"/demo/key-{i:02d}": f"value {i}" for i in range(10)}

CLUSTER_UP_WITHIN = 600.0  # for another session's nodes to stop (the machine lock)
OPERATOR_WITHIN = 180.0
AVAILABLE_WITHIN = 300.0
BACKUP_WITHIN = 240.0
GONE_WITHIN = 240.0


class StepFailed(Exception):
    """One demo step failed; the message says why."""


class Demo:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.step_no = 0
        self.started = time.monotonic()

    # -- output -----------------------------------------------------------------------------

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.step_no += 1
        t0 = time.monotonic()
        print(f"\n==> [{self.step_no}] {what}", flush=True)
        try:
            yield
        except StepFailed as e:
            raise SystemExit(f"\ndemo failed at step {self.step_no} ({what}): {e}") from None
        except subprocess.TimeoutExpired as e:
            raise SystemExit(
                f"\ndemo failed at step {self.step_no} ({what}): {shlex.join(map(str, e.cmd))} "
                f"did not finish within {e.timeout:.0f}s"
            ) from None
        print(f"    done in {time.monotonic() - t0:.0f}s", flush=True)

    def wait(self, what: str, check: Callable[[], str | None], within: float) -> None:
        """Poll CHECK (None = done, else a short state) every 2s, printing the state when it
        changes and the time waited every 15s."""
        t0 = time.monotonic()
        last, last_print = "", 0.0
        while True:
            state = check()
            waited = time.monotonic() - t0
            if state is None:
                return
            if state != last:
                print(f"    waiting for {what}: {state} ({waited:.0f}s so far)", flush=True)
                last, last_print = state, waited
            elif waited - last_print >= 30:
                print(f"    still waiting for {what} ({waited:.0f}s so far)", flush=True)
                last_print = waited
            if waited > within:
                raise StepFailed(f"{what}: still {state} after {within:.0f}s")
            time.sleep(2)

    # -- tools ------------------------------------------------------------------------------

    def tool(self, name: str, *args: str, show: bool = True, check: bool = True,
             stdin: str | None = None, timeout: float = 120) -> str:
        cmd = [str(bin_path(name)), f"--kubeconfig={self.cluster.control_plane.kubeconfig}",
               *args]
        if show:
            print(f"$ {name} {shlex.join(args)}", flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)
        if check and out.returncode != 0:
            raise StepFailed(f"`{name} {shlex.join(args)}` failed: {out.stderr.strip()}")
        if show and out.stdout.strip():
            print(out.stdout.rstrip(), flush=True)
        return out.stdout

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.tool("kubectl", *args, "-o", "json", show=False))

    def apply(self, obj: dict[str, Any]) -> None:
        self.tool("kubectl", "apply", "-f", "-", stdin=json.dumps(obj), show=False)
        meta = obj["metadata"]
        print(f"$ kubectl apply  # {obj['kind']} {meta.get('namespace', '')}/{meta['name']}")

    def etcdctl(self, endpoints: str, *args: str) -> str:
        from e2e.localcluster.kubelet.dns import run_on_host_with_cluster_dns

        argv = [str(bin_path("etcdctl")), f"--endpoints={endpoints}", "--dial-timeout=5s", *args]
        out = run_on_host_with_cluster_dns(argv, self.cluster.real_nodes().state, timeout=30)
        if out.returncode != 0:
            raise StepFailed(f"`etcdctl {shlex.join(args)}` failed: {out.stderr.strip()}")
        return out.stdout

    def s3(self) -> Any:
        return self.cluster.s3.endpoint.client()


def cluster_up(demo: Demo) -> None:
    with demo.step(f"local cluster up (state in {demo.cluster.state_dir})"):
        said = [-30.0]

        def waiting(waited: float) -> None:
            if waited - said[0] >= 30:
                print(f"    waiting for another session's nodes to stop (they hold "
                      f"{lock.MACHINE_LOCK}; {waited:.0f}s so far)", flush=True)
                said[0] = waited

        try:
            product_image()  # a stale image fails now, not after a long wait for the machine
            demo.cluster.up(lock_wait=CLUSTER_UP_WITHIN, on_wait=waiting)
        except Exception as e:
            raise StepFailed(f"{type(e).__name__}: {e}") from None
        demo.tool("kubectl", "get", "nodes")


def install_chart(demo: Demo) -> None:
    with demo.step("etcdop installed with Helm; the operator runs as Pods from the chart"):
        try:
            image = product_image()
        except RuntimeError as e:
            raise StepFailed(str(e)) from None
        repo, tag = image.rsplit(":", 1)
        demo.tool("helm", "upgrade", "--install", RELEASE, str(CHART), "--namespace", SYSTEM_NS,
                  "--create-namespace", "--set", f"image.repository={repo}",
                  "--set", f"image.tag={tag}", timeout=180)
        selector = f"app.kubernetes.io/name=etcdop,app.kubernetes.io/instance={RELEASE}"

        def operator_ready() -> str | None:
            dep = demo.kubectl_json("-n", SYSTEM_NS, "get", "deployment", RELEASE)
            want = dep["spec"].get("replicas", 1)
            st = dep.get("status", {})
            ready, updated = st.get("readyReplicas", 0), st.get("updatedReplicas", 0)
            if ready == want and updated == want and st.get("replicas", 0) == want:
                return None
            return f"{ready}/{want} operator Pods ready"

        demo.wait("the operator Deployment", operator_ready, OPERATOR_WITHIN)
        demo.tool("kubectl", "-n", SYSTEM_NS, "get", "pods", "-l", selector, "-o", "wide")
        pods = demo.kubectl_json("-n", SYSTEM_NS, "get", "pods", "-l", selector)["items"]
        for pod in pods:
            sa = pod["spec"].get("serviceAccountName")
            if sa != RELEASE or not pod["spec"].get("nodeName"):
                raise StepFailed(f"pod {pod['metadata']['name']} runs as {sa!r} on "
                                 f"{pod['spec'].get('nodeName')!r}, not as the chart's account")
        names = [p["metadata"]["name"] for p in pods]

        def leader() -> str | None:
            out = demo.tool("kubectl", "-n", SYSTEM_NS, "get", "lease", "etcdop-operator",
                            "--ignore-not-found", "-o", "json", show=False)
            if not out.strip():
                return "no Lease yet"
            holder = json.loads(out)["spec"].get("holderIdentity") or ""
            if any(holder.startswith(n + "-") for n in names):
                print(f"    leader: {holder} (service account "
                      f"system:serviceaccount:{SYSTEM_NS}:{RELEASE})", flush=True)
                return None
            return f"lease held by {holder!r}"

        demo.wait("an operator Pod to hold the leader Lease", leader, OPERATOR_WITHIN)


def create_cluster(demo: Demo) -> dict[str, Any]:
    with demo.step(f"a 3-member EtcdCluster (etcd {VERSION}) with backups to the local S3"):
        ep = demo.cluster.s3.endpoint
        s3 = demo.s3()
        if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=BUCKET)
        print(f"    S3 server {ep.url} (pods reach it at {ep.pod_url}), bucket {BUCKET}")
        demo.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        creds = ep.credentials_secret("s3-creds")
        demo.apply({**creds, "metadata": {**creds["metadata"], "namespace": NAMESPACE}})
        demo.apply({
            "apiVersion": "etcdop.io/v1alpha1", "kind": "EtcdCluster",
            "metadata": {"name": CLUSTER, "namespace": NAMESPACE},
            "spec": {"size": 3, "version": VERSION, "backup": {"storage": storage(demo)}},
        })
        status: dict[str, Any] = {}

        def available() -> str | None:
            ec = demo.kubectl_json("-n", NAMESPACE, "get", "etcdcluster", CLUSTER)
            status.clear()
            status.update(ec.get("status") or {})
            conds = {c["type"]: c for c in status.get("conditions") or []}
            avail = conds.get("Available", {})
            if avail.get("status") == "True" and status.get("readyMembers") == 3:
                return None
            why = avail.get("reason") or conds.get("Progressing", {}).get("reason") or "-"
            return (f"phase={status.get('phase')} ready={status.get('readyMembers', 0)}/3 "
                    f"({why})")

        demo.wait(f"EtcdCluster {NAMESPACE}/{CLUSTER} to be Available", available,
                  AVAILABLE_WITHIN)
        demo.tool("kubectl", "-n", NAMESPACE, "get", "etcdcluster,pods,svc,pdb", "-o", "wide")
        return status


def storage(demo: Demo) -> dict[str, Any]:
    ep = demo.cluster.s3.endpoint
    return {"bucket": BUCKET, "endpoint": ep.pod_url, "forcePathStyle": True,
            "region": ep.region, "credentialsSecret": "s3-creds"}


def write_keys(demo: Demo, endpoints: str) -> None:
    with demo.step(f"{len(KEYS)} keys written through the members"):
        for key, value in KEYS.items():
            demo.etcdctl(endpoints, "put", key, value)
        print(f"$ etcdctl put /demo/key-00 'value 0'  # ... {len(KEYS)} keys")
        print("$ etcdctl get /demo/key-00")
        print(demo.etcdctl(endpoints, "get", "/demo/key-00").rstrip())
        print("$ etcdctl endpoint status -w table")
        print(demo.etcdctl(endpoints, "endpoint", "status", "-w", "table").rstrip(), flush=True)


def take_backup(demo: Demo) -> None:
    with demo.step("an EtcdBackup to S3, verified"):
        demo.tool("kubectl", "-n", NAMESPACE, "delete", "etcdbackup", BACKUP,
                  "--ignore-not-found", "--wait=true", show=False)
        demo.apply({
            "apiVersion": "etcdop.io/v1alpha1", "kind": "EtcdBackup",
            "metadata": {"name": BACKUP, "namespace": NAMESPACE},
            "spec": {"clusterName": CLUSTER, "storage": storage(demo), "verify": True},
        })
        status: dict[str, Any] = {}

        def verified() -> str | None:
            b = demo.kubectl_json("-n", NAMESPACE, "get", "etcdbackup", BACKUP)
            status.clear()
            status.update(b.get("status") or {})
            if status.get("phase") == "Failed":
                raise StepFailed(f"the backup failed: {json.dumps(status)}")
            if status.get("phase") == "Succeeded" and status.get("verified") is not None:
                return None
            return f"phase={status.get('phase')} verified={status.get('verified')}"

        demo.wait(f"EtcdBackup {NAMESPACE}/{BACKUP} to succeed and be drilled", verified,
                  BACKUP_WITHIN)
        if status["verified"] is not True:
            raise StepFailed(f"the agent's restore drill failed: {json.dumps(status)}")
        body = demo.s3().get_object(Bucket=BUCKET, Key=status["snapshotKey"])["Body"].read()
        digest = hashlib.sha256(body).hexdigest()
        if digest != status["sha256"] or len(body) != status["size"]:
            raise StepFailed(f"s3://{BUCKET}/{status['snapshotKey']} has sha256 {digest} and "
                             f"{len(body)} bytes; the EtcdBackup says {status['sha256']}, "
                             f"{status['size']} bytes")
        print(f"    s3://{BUCKET}/{status['snapshotKey']}: {len(body)} bytes, sha256 matches, "
              "restore drill passed")
        from tests.integration.test_agent_backup import restored_keys

        with tempfile.TemporaryDirectory(prefix="etcdop-demo-restore-") as tmp:
            db = Path(tmp) / "snapshot.db"
            db.write_bytes(body)
            got = restored_keys(ETCD_VERSIONS[0], db, Path(tmp), "/demo/")
        want = {k: v.encode() for k, v in KEYS.items()}
        if got != want:
            raise StepFailed(f"the snapshot restored {len(got)} of the {len(want)} demo keys")
        print(f"    restored the snapshot with etcdutl on this host: all {len(want)} keys back")


def finish(demo: Demo) -> None:
    with demo.step("what there is now"):
        demo.tool("kubectl", "get", "etcdclusters,etcdbackups", "-A")
    env = "eval \"$(.venv/bin/python -m e2e.localcluster env)\""
    metrics_ip = (f"$(kubectl -n {SYSTEM_NS} get pod -l app.kubernetes.io/name=etcdop "
                  "-o jsonpath='{.items[0].status.podIP}')")
    print(f"""
The demo took {time.monotonic() - demo.started:.0f}s. Try next, after `{env}`:
  kubectl -n {NAMESPACE} get etcd,etcdbak,pods       # the cluster, its backups, its pods
  kubectl -n {NAMESPACE} scale etcd {CLUSTER} --replicas=5   # grow it, one learner at a time
  kubectl -n {NAMESPACE} patch etcd {CLUSTER} --type=merge -p '{{"spec":{{"version":"NEWER"}}}}'
                                              # a rolling-replacement upgrade
  kubectl -n {NAMESPACE} get etcdbak {BACKUP} -o yaml   # a backup's spec: copy it (new name) for
                                              # another; an EtcdRestore restores one
  kubectl -n {SYSTEM_NS} get pods,lease           # the operator Pods and their leader Lease
  curl -s http://{metrics_ip}:8080/metrics | grep ^etcdop_
  make demo-down                              # removes everything the demo made
""", flush=True)


def up() -> int:
    demo = Demo(LocalCluster())
    cluster_up(demo)
    install_chart(demo)
    status = create_cluster(demo)
    write_keys(demo, ",".join(status.get("clientEndpoints", [])))
    take_backup(demo)
    finish(demo)
    return 0


def down() -> int:
    """Delete the demo's objects while the operator still runs (it removes its finalizers),
    then the release, its namespace and the CRDs, then stop the cluster."""
    demo = Demo(LocalCluster())
    if not demo.cluster.control_plane.running():
        print(f"no local cluster runs in {demo.cluster.state_dir}: starting it to remove the "
              "demo's objects from its state", flush=True)
        cluster_up(demo)
    elif not demo.cluster.nodes_running():
        cluster_up(demo)  # pods only finish terminating with their nodes running
    with demo.step(f"namespace {NAMESPACE} deleted (its EtcdCluster, backups and pods)"):
        demo.tool("kubectl", "delete", "namespace", NAMESPACE, "--ignore-not-found",
                  "--wait=false")
        gone(demo, "namespace", NAMESPACE)
    with demo.step(f"Helm release {RELEASE} uninstalled, namespace {SYSTEM_NS} and CRDs deleted"):
        releases = demo.tool("helm", "list", "-n", SYSTEM_NS, "-q", show=False).split()
        if RELEASE in releases:
            demo.tool("helm", "uninstall", RELEASE, "-n", SYSTEM_NS, "--wait", timeout=180)
        demo.tool("kubectl", "delete", "namespace", SYSTEM_NS, "--ignore-not-found",
                  "--wait=false")
        gone(demo, "namespace", SYSTEM_NS)
        crds = [c["metadata"]["name"] for c in demo.kubectl_json("get", "crd")["items"]
                if c["spec"]["group"] == "etcdop.io"]
        if crds:
            demo.tool("kubectl", "delete", "crd", *crds)
    with demo.step(f"bucket {BUCKET} removed from the S3 server"):
        s3 = demo.s3()
        if BUCKET in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
                for obj in page.get("Contents", []):
                    s3.delete_object(Bucket=BUCKET, Key=obj["Key"])
            s3.delete_bucket(Bucket=BUCKET)
    with demo.step("local cluster down"):
        demo.cluster.down()
    print("\nThe demo is gone; `make cluster-up` starts a clean cluster.")
    return 0


def gone(demo: Demo, kind: str, name: str) -> None:
    def check() -> str | None:
        out = demo.tool("kubectl", "get", kind, name, "--ignore-not-found", "-o", "json",
                        show=False)
        if not out.strip():
            return None
        obj = json.loads(out)
        pods = demo.tool("kubectl", "-n", name, "get", "pods", "--no-headers",
                         "--ignore-not-found", show=False, check=False).strip().splitlines()
        return f"{obj.get('status', {}).get('phase', '?')}, {len(pods)} pods left"

    demo.wait(f"{kind} {name} to be gone", check, GONE_WITHIN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.demo", description=__doc__)
    parser.add_argument("action", nargs="?", default="up", choices=["up", "down"])
    args = parser.parse_args(argv)
    return up() if args.action == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
