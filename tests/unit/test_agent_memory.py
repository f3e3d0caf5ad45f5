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
    """In a fresh process (the settings must come before any thread starts), as the upload
    threads do: part-sized blocks made and freed in worker threads, then stream chunks.
    Part-sized blocks are unmapped when freed (measured 0 MiB held in 12 of 12 runs; untuned,
    glibc raised its mmap threshold and kept 24-33 MiB of them, even after a trim). The 32 KiB
    chunks live in the one heap, where some stay behind a block still in use (0-10 MiB) until
    `give_back` trims it (0 MiB after)."""
    code = """
import threading
from etcdop.agent import memory
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
def in_threads(work):
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
def parts():
    for _ in range(3):
        blocks = [bytes(8 * 1024 * 1024) for _ in range(4)]
        del blocks
def chunks():
    for _ in range(3):
        blocks = [bytes(32 * 1024) for _ in range(256)]
        del blocks
assert memory.tune_allocator()
base = rss()
in_threads(parts)
parts_held = rss() - base
in_threads(chunks)
memory.give_back()
print(parts_held, rss() - base)
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    parts_held, trimmed = (int(n) for n in out.split())
    assert parts_held < 4, f"{parts_held} MiB of freed part buffers still held (untuned: 24-33)"
    assert trimmed < 8, f"{trimmed} MiB still held after malloc_trim"
