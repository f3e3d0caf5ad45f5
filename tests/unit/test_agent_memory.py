"""The agent's allocator settings and the kept S3 clients: what keeps its idle and peak memory
flat from one backup to the next (bench/backup.py measures the figures)."""

from __future__ import annotations

import subprocess
import sys

from etcdop.objectstore import Credentials, ObjectStore, StoreConfig


def config(secret: str = "s3cret", bucket: str = "b") -> StoreConfig:
    return StoreConfig(bucket=bucket, credentials=Credentials("id", secret),
                       endpoint="http://127.0.0.1:1", force_path_style=True)


def test_one_boto3_session_for_every_store() -> None:
    """Was: a new boto3 session per request, each parsing the S3 model again and leaving
    ~12 MiB to the collector; the agent's idle RSS went 100 -> 141 -> 160 MiB over backups.
    Each store keeps its own client (its own connections), from the one session's loader."""
    a, b = ObjectStore(config()), ObjectStore(config(secret="rotated"))
    assert a._client is not b._client
    assert a._client._loader is b._client._loader  # the S3 model is parsed once
    assert b._client._request_signer._credentials.secret_key == "rotated"


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
held = rss() - base
memory.give_back()
print(held, rss() - base)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    held, trimmed = (int(n) for n in out.split())
    assert held < 8, f"{held} MiB still held after every block was freed (untuned: 39)"
    assert trimmed < 8, f"{trimmed} MiB still held after malloc_trim"
