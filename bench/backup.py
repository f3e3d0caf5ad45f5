"""Backup speed and agent memory, measured (not a test): `python bench/backup.py [--json]`.

For a database filled to 64 MiB and then to 512 MiB, it times `POST /v1/backups` on a real agent
process (`etcdop agent`, its RSS sampled from /proc every 5 ms during the backup) against the
baseline `etcdctl snapshot save` to a file followed by boto3's managed upload of that file, each
--rounds times (alternated, medians reported: single runs here vary by 10-15 %). It brings up
one etcd member and versitygw from the test binaries cache, all on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e2e.localcluster.binaries import ETCD_VERSIONS, bin_path
from e2e.localcluster.procs import Procs, free_port, wait_for
from e2e.localcluster.s3 import S3Endpoint, S3Server
from etcdop.etcd import EtcdClient

MIB = 1024 * 1024
VALUE = 256 * 1024  # random (incompressible) values of 256 KiB


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    def __init__(self, pid: int, every: float = 0.005) -> None:
        self.pid, self.every, self.peak = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            self._stop.wait(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib(self.pid))


async def fill(etcd: EtcdClient, endpoint: str, target_mib: int, start: int) -> int:
    """Put random values until the member's db file is TARGET_MIB; returns the next key index."""
    i = start
    while (await etcd.status(endpoint)).db_size < target_mib * MIB:
        await asyncio.gather(*(etcd.put(f"/bench/{i + j:08d}", os.urandom(VALUE))
                               for j in range(16)))
        i += 16
    return i


def start_etcd(procs: Procs, work: Path, version: str) -> str:
    client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    procs.start("etcd", [
        str(bin_path("etcd", version)), "--name=m0", f"--data-dir={work / 'etcd'}",
        f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=m0={peer}", "--quota-backend-bytes=4294967296",
        "--unsafe-no-fsync", "--log-level=warn",
    ])
    return client


def start_agent(procs: Procs, work: Path, etcd_url: str, s3: S3Endpoint, version: str,
                tuning: list[str]) -> tuple[str, str, int]:
    token = secrets.token_hex(16)
    (work / "token").write_text(token)
    creds = work / "s3creds"
    creds.mkdir()
    (creds / "accessKeyId").write_text(s3.access_key)
    (creds / "secretAccessKey").write_text(s3.secret_key)
    port = free_port()
    pid = procs.start("agent", [
        sys.executable, "-m", "etcdop", "agent", "--address=127.0.0.1", f"--port={port}",
        f"--etcd-endpoint={etcd_url}", "--namespace=bench", "--cluster=bench", "--member=m0",
        f"--token-file={work / 'token'}", f"--s3-credentials-dir={creds}",
        f"--etcdutl={bin_path('etcdutl', version)}", f"--etcd={bin_path('etcd', version)}",
        *tuning,
    ])
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"}
    wait_for(lambda: httpx.get(url + "/healthz", headers=headers).status_code == 200, 30,
             "the agent to serve")
    return url, token, pid


async def baseline(etcdctl: str, etcd_url: str, boto: Any, file: Path) -> float:
    """`etcdctl snapshot save` to FILE, then boto3's managed upload of it: seconds for both."""
    t0 = time.perf_counter()
    await asyncio.to_thread(
        subprocess.run, [etcdctl, f"--endpoints={etcd_url}", "snapshot", "save", str(file)],
        check=True, capture_output=True,
    )
    await asyncio.to_thread(boto.upload_file, str(file), "bench", f"baseline/{file.name}")
    seconds = time.perf_counter() - t0
    await asyncio.to_thread(file.unlink)
    return seconds


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", action="store_true", help="one JSON line per database size")
    parser.add_argument("--sizes", default="64,512", help="database sizes in MiB (default 64,512)")
    parser.add_argument("--part-size-mib", type=int, default=8, help="the agent's part size")
    parser.add_argument("--parts-in-flight", type=int, default=2, help="the agent's uploaders")
    parser.add_argument("--rounds", type=int, default=3,
                        help="backups and baselines per size, alternated; medians are reported")
    args = parser.parse_args()
    tuning = [f"--part-size-mib={args.part_size_mib}", f"--parts-in-flight={args.parts_in_flight}"]
    version = ETCD_VERSIONS[0]
    with tempfile.TemporaryDirectory(prefix="etcdop-bench-") as tmp:
        work = Path(tmp)
        procs = Procs(work)
        server = S3Server(work / "s3state")
        s3 = server.start()
        try:
            etcd_url = start_etcd(procs, work, version)
            wait_for(lambda: httpx.get(etcd_url + "/health").json()["health"] == "true", 30,
                     "etcd to be healthy")
            url, token, pid = start_agent(procs, work, etcd_url, s3, version, tuning)
            boto = s3.client()
            boto.create_bucket(Bucket="bench")
            storage = {"bucket": "bench", "endpoint": s3.url, "forcePathStyle": True}
            headers = {"Authorization": f"Bearer {token}"}
            etcdctl = str(bin_path("etcdctl", version))
            async with EtcdClient([etcd_url], timeout=30) as etcd, \
                    httpx.AsyncClient(timeout=3600, headers=headers) as http:
                warm = await http.post(url + "/v1/backups", json={"storage": storage})
                warm.raise_for_status()  # imports and pools warmed before measuring
                index = 0
                for i, size in enumerate(int(s) for s in args.sizes.split(",")):
                    index = await fill(etcd, etcd_url, size, index)
                    db_mib = (await etcd.status(etcd_url)).db_size / MIB
                    idle = rss_mib(pid)
                    backups: list[float] = []
                    baselines: list[float] = []
                    peak = 0.0
                    snap_bytes = 0
                    for r in range(args.rounds):  # alternated, so a slow spell hits both
                        with RssSampler(pid) as sampler:
                            t0 = time.perf_counter()
                            resp = await http.post(url + "/v1/backups", json={
                                "storage": {**storage, "prefix": f"s{i}r{r}"}})
                            backups.append(time.perf_counter() - t0)
                        if resp.status_code != 201:
                            print(resp.text, file=sys.stderr)
                            return 1
                        peak = max(peak, sampler.peak)
                        snap_bytes = resp.json()["backup"]["snapshotSize"]
                        baselines.append(await baseline(etcdctl, etcd_url, boto,
                                                        work / f"baseline-{size}.db"))
                    backup_s, baseline_s = statistics.median(backups), statistics.median(baselines)
                    row = {
                        "db_mib": round(db_mib, 1),
                        "backup_s": round(backup_s, 3),
                        "mb_per_s": round(snap_bytes / 1e6 / backup_s, 1),
                        "agent_peak_rss_mib": round(peak, 1),
                        "agent_idle_rss_mib": round(idle, 1),
                        "baseline_s": round(baseline_s, 3),
                        "ratio": round(baseline_s / backup_s, 2),
                        "rounds": args.rounds,
                        "backup_s_each": [round(b, 3) for b in backups],
                        "baseline_s_each": [round(b, 3) for b in baselines],
                        "etcd": version,
                        "part_size_mib": args.part_size_mib,
                        "parts_in_flight": args.parts_in_flight,
                    }
                    if args.json:
                        print(json.dumps(row), flush=True)
                    else:
                        print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        finally:
            procs.stop("agent")
            procs.stop("etcd")
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
