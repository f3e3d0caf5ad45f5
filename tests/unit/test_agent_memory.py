"""The agent's allocator settings and the kept S3 clients: what keeps its idle and peak memory
flat from one backup to the next (bench/backup.py measures the figures)."""

from __future__ import annotations

import subprocess
import sys

from etcdop.objectstore import Credentials, ObjectStore, StoreConfig


def config(secret: str = "s3cret", bucket: str = "b") -> StoreConfig:
    return StoreConfig(bucket=bucket, credentials=Credentials("id", secret),
                       endpoint="http://127.0.0.1:1", force_path_style=True)


def test_one_s3_client_per_endpoint_and_credentials() -> None:
    """Was: a new boto3 session and client per request, ~12 MiB each left to the collector;
    the agent's idle RSS went 100 -> 141 -> 160 MiB over backups."""
    a, b = ObjectStore(config()), ObjectStore(config(bucket="other"))
    assert a._client is b._client  # same endpoint and credentials: one client, any bucket
    rotated = ObjectStore(config(secret="rotated"))
    assert rotated._client is not a._client  # new credentials are used at once
    assert ObjectStore(config(), read_timeout=1.0)._client is not a._client


def test_allocator_is_tuned_and_gives_memory_back() -> None:
    """In a fresh process (the settings must come before any thread starts): part-sized blocks
    and stream chunks made and freed in worker threads, as the upload threads do. Untuned,
    glibc kept 40 MiB of them (an arena per thread, the mmap threshold raised); tuned, none."""
    code = """
import threading
from etcdop.agent import memory
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
assert memory.tune_allocator()
base = rss()
def upload():
    for _ in range(3):
        parts = [bytes(8 * 1024 * 1024) for _ in range(4)]
        chunks = [bytes(32 * 1024) for _ in range(256)]
        del parts, chunks
threads = [threading.Thread(target=upload) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
memory.give_back()
print(rss() - base)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    assert int(out) < 8, f"{out.strip()} MiB still held after every block was freed"
