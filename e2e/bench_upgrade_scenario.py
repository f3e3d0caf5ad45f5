"""The measurement behind bench/upgrade.py (not collected as a test: run by that script through
pytest, for the local cluster's fixtures). One 3-member 3.5 cluster on claims per strategy,
8 MiB of data, a writer and a reader at ~100 ops/s each through a failing-over client with 2 s
deadlines, an upgrade to 3.6; one JSON line per strategy is appended to $ETCDOP_BENCH_OUT."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from e2e.localcluster.kubeapi import KubeClient
from e2e.operator import (
    OperatorProcess,
    create_cluster,
    etcd_cluster,
    get_cluster,
    member_endpoints,
    patch_spec,
    wait_cluster_ready,
)
from e2e.workload import QuorumMonitor, local_endpoint, running, unreadable
from etcdop.etcd import EtcdClient, EtcdError
from tests.waiting import eventually

OLD, NEW = "3.5.35", "3.6.16"
DEADLINE = 2.0  # per operation, as the issue asks
CALL = 0.7  # per endpoint inside it: a client rides through one member leaving
PACE = 0.01  # ~100 ops/s per job
DATA = 8 * 1024 * 1024
CLAIMS = {"persistentVolumeClaim": {"size": "1Gi", "whenDeleted": "Delete"}}


@dataclass
class FailoverClient:
    """Like etcd's Go client: one endpoint at a time, the next one on failure, within one
    deadline per operation. Endpoints are the member pods, re-read twice a second."""

    kube: KubeClient
    name: str
    ns: str
    endpoints: list[str] = field(default_factory=list)
    clients: dict[str, EtcdClient] = field(default_factory=dict)
    at: int = 0

    async def refresh(self) -> None:
        found = await member_endpoints(self.kube, self.name, self.ns)
        self.endpoints = sorted(local_endpoint(u) for u in found.values())

    def client(self, url: str) -> EtcdClient:
        if url not in self.clients:
            self.clients[url] = EtcdClient([url], timeout=CALL)
        return self.clients[url]

    async def call(self, op: str, key: str, value: str = "") -> bytes | None:
        async with asyncio.timeout(DEADLINE):
            while True:
                if not self.endpoints:
                    await asyncio.sleep(0.05)  # pace of a retry, not a sync
                    continue
                url = self.endpoints[self.at % len(self.endpoints)]
                try:
                    c = self.client(url)
                    if op == "put":
                        await c.put(key, value)
                        return None
                    return await c.get(key)
                except EtcdError:
                    self.at += 1

    async def close(self) -> None:
        for c in self.clients.values():
            await c.close()


@dataclass
class Job:
    client: FailoverClient
    kind: str
    acked: list[str]
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        n = 0
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                if self.kind == "put":
                    key = f"bench/w/{n:08d}"
                    await self.client.call("put", key, str(n))
                    self.acked.append(key)
                    n += 1
                else:
                    key = random.choice(self.acked) if self.acked else "bench/w/00000000"
                    await self.client.call("get", key)
                self.latencies.append(time.monotonic() - start)
            except (TimeoutError, EtcdError):
                self.failed += 1
            await asyncio.sleep(PACE)  # the rate, not a sync

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Refresher:
    client: FailoverClient
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # a failed read keeps the last list
                await self.client.refresh()
            await asyncio.sleep(0.5)  # the refresh period, not a sync

    def stop(self) -> None:
        self._stop.set()


async def fill(kube: KubeClient, name: str, ns: str) -> None:
    endpoints = await member_endpoints(kube, name, ns)
    async with EtcdClient(sorted(endpoints.values()), timeout=10.0) as c:
        value = os.urandom(64 * 1024).hex()[: 64 * 1024]
        for i in range(DATA // len(value)):
            await c.put(f"bench/fill/{i:05d}", value)


def _ts(text: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def replacement_times(kube: KubeClient, ns: str) -> list[float]:
    events = await kube.items(f"/api/v1/namespaces/{ns}/events")
    out = []
    for e in events:
        if e.get("reason") in ("MemberReplaced", "MemberRestarted"):
            m = re.search(r" in ([0-9.]+)s$", e.get("message", ""))
            if m:
                out.append(float(m.group(1)))
    return out


def etcd_needs(local_node: Any, ns: str, pods: list[str]) -> list[float]:
    """Per new member: from etcd's first log line to 'ready to serve client requests' (start
    and catch-up from the leader's snapshot), read from the member's own log."""
    out = []
    for pod in pods:
        try:
            log = local_node.pod_logs(ns, pod, "etcd")
        except (FileNotFoundError, OSError):
            continue
        times = []
        for line in log.splitlines():
            try:
                rec = json.loads(line[line.index("{") :])
            except (ValueError, json.JSONDecodeError):
                continue
            if "ts" in rec:
                times.append((rec["ts"], rec.get("msg", "")))
        if not times:
            continue
        first = _ts(times[0][0])
        ready = next((_ts(t) for t, msg in times if "ready to serve client" in msg), None)
        if ready is not None:
            out.append(ready - first)
    return out


def _append(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(line + "\n")


@pytest.mark.parametrize("strategy", ["Surge", "InPlace"])
async def test_upgrade_bench(
    etcdcluster_crd: KubeClient,
    local_node: Any,
    operator: OperatorProcess,
    namespace: str,
    strategy: str,
) -> None:
    kube = etcdcluster_crd
    name = f"bench-{strategy.lower()}"
    spec = {"storage": CLAIMS, "upgrade": {"strategy": strategy}}
    await create_cluster(kube, etcd_cluster(name, namespace, 3, version=OLD, **spec))
    await wait_cluster_ready(kube, name, namespace, 3, 300)
    await fill(kube, name, namespace)
    before = {p for p in await member_endpoints(kube, name, namespace)}
    client = FailoverClient(kube, name, namespace)
    await client.refresh()
    acked: list[str] = []
    writer, reader = Job(client, "put", acked), Job(client, "get", acked)
    monitor = QuorumMonitor(kube, name, namespace)
    async with running(monitor, Refresher(client), writer, reader):
        async with asyncio.timeout(60):
            await monitor.watch.ready.wait()
        start = time.monotonic()
        await patch_spec(kube, name, namespace, {"version": NEW})

        async def done() -> bool:
            ec = await get_cluster(kube, name, namespace)
            st = ec.get("status") or {}
            versions = {m.get("version") for m in st.get("members") or []}
            assert versions == {NEW} and st.get("phase") == "Running", (versions, st.get("phase"))
            assert st.get("readyMembers") == 3
            return True

        await eventually(done, 900, "the upgrade to finish", every=0.2)
        duration = time.monotonic() - start
    await client.close()
    lat = sorted(writer.latencies + reader.latencies)
    losses = monitor.quorum_losses()
    lost = await unreadable(kube, name, namespace, acked)
    replaced = await replacement_times(kube, namespace)
    after = set(await member_endpoints(kube, name, namespace))
    new_pods = sorted(after - before) if strategy == "Surge" else sorted(after)
    needs = etcd_needs(local_node, namespace, new_pods)
    line = {
        "strategy": strategy.lower(),
        "duration_s": round(duration, 1),
        "failed_ops": writer.failed + reader.failed,
        "ops": len(lat) + writer.failed + reader.failed,
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1000, 1) if lat else None,
        "max_ms": round(lat[-1] * 1000, 1) if lat else None,
        "quorum_loss_s": round(sum(w.end - w.start for w in losses), 2),
        "lost_writes": len(lost),
        "member_replace_s": round(sum(replaced) / len(replaced), 1) if replaced else None,
        "member_step_s": round(duration / 3, 1),
        "etcd_start_catchup_s": round(sum(needs) / len(needs), 1) if needs else None,
        "monitor_max_gap_s": round(
            max((g[1] for g in monitor.sample_gaps().values()), default=0.0), 3
        ),
    }
    out = os.environ.get("ETCDOP_BENCH_OUT")
    if out:
        await asyncio.to_thread(_append, Path(out), json.dumps(line))
    print(json.dumps(line))
