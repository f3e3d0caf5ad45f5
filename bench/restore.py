"""Restore in place, measured (not a test): `python bench/restore.py [--json] [--sizes 64,512]`.

For each database size it brings up what it needs itself (a local cluster of its own: control
plane, versitygw, real nodes, this checkout's operator and agent), fills a three-member
EtcdCluster to that size with incompressible values, backs it up, writes more keys, creates an
EtcdRestore and times it from creation until the EtcdRestore Succeeded and all members are
Ready. It prints one line per size: `db_mib`, `restore_s`, `keys_expected` and `keys_found`
(keys written before the backup, found after the restore), `keys_after_backup_found` (keys
written after the backup that survived: must be 0), and `agent_peak_rss_mib`, the peak RSS of
the seed's `etcdop restore` process (sampled from /proc every 5 ms).

It takes the machine's local-node lock for its whole run, like an e2e session.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kr8s.asyncio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e.localcluster.binaries import bin_path
from e2e.localcluster.cluster import LocalCluster
from e2e.localcluster.kubeapi import KubeClient
from e2e.operator import (
    ETCD_VERSION,
    GROUP_VERSION,
    Operators,
    etcd_cluster,
    install_crd,
    member_endpoints,
    product_image,
    wait_cluster_ready,
    wait_lease_holder,
)
from e2e.test_etcdbackup import backups_path
from etcdop.etcd import EtcdClient

MIB = 1024 * 1024
VALUE = 256 * 1024
NS = "bench"


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RestoreRssSampler:
    """Peak RSS of every process whose command line is an `etcdop restore` (the seed's init
    container, a process on this host like every container), sampled every 5 ms."""

    def __init__(self) -> None:
        self.peak = 0.0
        self.seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _pids(self) -> list[int]:
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if b"restore" in argv and any(a.startswith(b"--metadata-key=") for a in argv):
                out.append(int(d))
        return out

    def _run(self) -> None:
        pids: list[int] = []
        last_scan = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_scan > 0.2 or not pids:
                pids = self._pids()
                last_scan = now
                self.seen = max(self.seen, len(pids))
            for pid in pids:
                self.peak = max(self.peak, rss_mib(pid))
            self._stop.wait(0.005)

    def __enter__(self) -> RestoreRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def keys_on(endpoint: str, prefix: str) -> set[str]:
    etcdctl = [str(bin_path("etcdctl", f"v{ETCD_VERSION}")), f"--endpoints={endpoint}"]
    res = subprocess.run(
        [*etcdctl, "--consistency=s", "get", prefix, "--prefix", "--keys-only", "-w", "json"],
        capture_output=True, check=True, timeout=120,
    )
    return {base64.b64decode(kv["key"]).decode() for kv in json.loads(res.stdout).get("kvs", [])}


async def wait(kube: KubeClient, path: str, done: Any, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        got = await kube.get(path)
        if got is not None and done(got.get("status") or {}):
            return got
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{path} not done after {within:.0f}s")


async def one_size(kube: KubeClient, s3: Any, size: int) -> dict[str, Any]:
    name = f"b{size}"
    storage = {"bucket": "bench", "endpoint": s3.pod_url, "forcePathStyle": True,
               "region": s3.region, "credentialsSecret": "s3-creds"}
    spec = {"backup": {"storage": storage}, "backendQuota": "4Gi"}
    await kube.create(f"/apis/{GROUP_VERSION}/namespaces/{NS}/etcdclusters",
                      etcd_cluster(name, NS, 3, **spec))
    await wait_cluster_ready(kube, name, NS, 3, 600)
    endpoints = await member_endpoints(kube, name, NS)
    url = sorted(endpoints.values())[0]
    written: set[str] = set()
    async with EtcdClient(sorted(endpoints.values()), timeout=30) as etcd:
        i = 0
        while (await etcd.status(url)).db_size < size * MIB:
            batch = [f"/bench/{i + j:08d}" for j in range(8)]
            await asyncio.gather(*(etcd.put(k, os.urandom(VALUE)) for k in batch))
            written.update(batch)
            i += 8
        db_mib = (await etcd.status(url)).db_size / MIB
    body = {"apiVersion": GROUP_VERSION, "kind": "EtcdBackup",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"clusterName": name, "storage": storage}}
    await kube.create(backups_path(NS), body)
    got = await wait(kube, backups_path(NS, name), lambda s: s.get("phase") in ("Succeeded",
                                                                                "Failed"), 900)
    if got["status"]["phase"] != "Succeeded":
        raise RuntimeError(f"backup failed: {got['status']}")
    after = set()
    async with EtcdClient(sorted(endpoints.values()), timeout=30) as etcd:
        for j in range(100):
            await etcd.put(f"/after/{j:05d}", b"x")
            after.add(f"/after/{j:05d}")
    restore = {"apiVersion": GROUP_VERSION, "kind": "EtcdRestore",
               "metadata": {"name": name, "namespace": NS},
               "spec": {"clusterName": name, "source": {"backupName": name}}}
    with RestoreRssSampler() as sampler:
        t0 = time.perf_counter()
        await kube.create(f"/apis/{GROUP_VERSION}/namespaces/{NS}/etcdrestores", restore)
        done = await wait(kube, f"/apis/{GROUP_VERSION}/namespaces/{NS}/etcdrestores/{name}",
                          lambda s: s.get("phase") in ("Succeeded", "Failed"), 1800)
        if done["status"]["phase"] != "Succeeded":
            raise RuntimeError(f"restore failed: {done['status']}")
        await wait_cluster_ready(kube, name, NS, 3, 600)
        restore_s = time.perf_counter() - t0
    endpoints = await member_endpoints(kube, name, NS)
    found = min(len(keys_on(u, "/bench/") & written) for u in endpoints.values())
    after_found = max(len(keys_on(u, "/after/") & after) for u in endpoints.values())
    await kube.delete(f"/apis/{GROUP_VERSION}/namespaces/{NS}/etcdclusters/{name}")
    return {
        "db_mib": round(db_mib, 1),
        "restore_s": round(restore_s, 1),
        "keys_expected": len(written),
        "keys_found": found,
        "keys_after_backup_found": after_found,
        "agent_peak_rss_mib": round(sampler.peak, 1),
        "restore_processes_seen": sampler.seen,
        "etcd": ETCD_VERSION,
    }


async def run(args: argparse.Namespace, work: Path) -> int:
    agent_image = product_image()  # a stale image fails now, not after the wait below
    cluster = LocalCluster(work / "cluster")
    ops = Operators(cluster.control_plane.kubeconfig, work / "logs")
    try:
        cluster.up(lock_wait=3600)  # the nodes are machine-wide: wait for a test session's
        s3 = cluster.s3.start()
        s3.client().create_bucket(Bucket="bench")
        api = await kr8s.asyncio.api(kubeconfig=str(cluster.control_plane.kubeconfig))
        kube = KubeClient(api)
        await install_crd(kube)
        await kube.create("/api/v1/namespaces", {"metadata": {"name": NS}})
        await kube.create(f"/api/v1/namespaces/{NS}/secrets",
                          s3.credentials_secret("s3-creds"))
        op = ops.start("bench", lease_namespace=NS, extra_args=[f"--agent-image={agent_image}"])
        await op.wait_serving()
        await wait_lease_holder(kube, NS, op.identity, 60)
        for size in (int(s) for s in args.sizes.split(",")):
            row = await one_size(kube, s3, size)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    finally:
        ops.stop_all()
        cluster.down()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON line per database size")
    parser.add_argument("--sizes", default="64,512", help="database sizes in MiB (default 64,512)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="etcdop-bench-restore-") as tmp:
        return asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
