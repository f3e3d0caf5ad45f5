"""The restore drill: a backup is trusted once it was downloaded, checked and restored.

The snapshot is downloaded to a scratch directory (sha256 and size checked against the metadata,
etcd's own digest checked in the stream), restored with `etcdutl snapshot restore`, and the
restored data is started as a one-member etcd on loopback: its revision must lie between the
revisions the metadata recorded around the snapshot, and its live key count at the recorded
revision must equal the count the member had then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

from etcdop.agent.backup import now, rfc3339
from etcdop.agent.metadata import BackupMetadata
from etcdop.agent.snapshot_check import SnapshotCorrupt, TrailerVerifier
from etcdop.etcd import EtcdClient, EtcdError
from etcdop.objectstore import HashMismatch, ObjectStore, decompress

log = logging.getLogger(__name__)


class DrillFailed(Exception):
    """The backup is not restorable as its metadata says; the message says how."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class DrillTools:
    etcdutl: str = "etcdutl"
    etcd: str = "etcd"
    scratch: Path | None = None  # default: the system's temporary directory
    start_timeout: float = 60.0
    command_timeout: float = 600.0


@dataclass(frozen=True)
class DrillResult:
    verified: bool
    checked_at: str
    reason: str = ""
    message: str = ""
    revision: int = 0
    key_count: int = 0
    snapshot_key: str = ""
    sha256: str = ""
    """Of the object, as its metadata says (and, when verified, as downloaded)."""
    etcd_version: str = ""
    """Of the member the snapshot was taken from: a restore checks its target can load it."""


async def run_drill(store: ObjectStore, metadata_key: str, tools: DrillTools) -> DrillResult:
    """Verify one backup; a bad backup gives `verified=False` with the reason, while trouble
    reaching the store raises its StoreError (the backup may be fine)."""
    meta = BackupMetadata.from_json(await store.get_json(metadata_key))
    try:
        revision, keys = await _drill(store, meta, tools)
    except DrillFailed as exc:
        log.warning(
            "restore drill failed",
            extra={"key": metadata_key, "reason": exc.reason, "error": exc.message},
        )
        return DrillResult(
            False,
            rfc3339(now()),
            exc.reason,
            exc.message,
            snapshot_key=meta.snapshot_key,
            sha256=meta.sha256,
            etcd_version=meta.etcd_version,
        )
    log.info("restore drill passed", extra={"key": metadata_key, "revision": revision})
    return DrillResult(
        True,
        rfc3339(now()),
        revision=revision,
        key_count=keys,
        snapshot_key=meta.snapshot_key,
        sha256=meta.sha256,
        etcd_version=meta.etcd_version,
    )


async def _drill(store: ObjectStore, meta: BackupMetadata, tools: DrillTools) -> tuple[int, int]:
    with tempfile.TemporaryDirectory(prefix="etcdop-drill-", dir=tools.scratch) as scratch:
        path = Path(scratch) / "snapshot.db"
        await _download(store, meta, path)
        data_dir = Path(scratch) / "data"
        peer = f"http://127.0.0.1:{_free_port()}"
        client = f"http://127.0.0.1:{_free_port()}"
        await _command(
            tools,
            [
                tools.etcdutl,
                "snapshot",
                "restore",
                str(path),
                f"--data-dir={data_dir}",
                "--name=drill",
                f"--initial-cluster=drill={peer}",
                f"--initial-advertise-peer-urls={peer}",
            ],
        )
        path.unlink()
        async with _etcd(tools, data_dir, client, peer, Path(scratch) / "etcd.log") as etcd:
            revision, _ = await etcd.count_keys(client)
            try:
                _, keys = await etcd.count_keys(client, revision=meta.revision)
            except EtcdError as exc:
                raise DrillFailed(
                    "RevisionMissing",
                    f"restored data cannot be read at revision {meta.revision}: {exc}",
                ) from exc
    if not meta.revision <= revision <= meta.revision_max:
        raise DrillFailed(
            "RevisionMismatch",
            f"restored revision {revision} is outside [{meta.revision}, {meta.revision_max}] "
            "recorded around the snapshot",
        )
    if keys != meta.key_count:
        raise DrillFailed(
            "KeyCountMismatch",
            f"restored data holds {keys} keys at revision {meta.revision}, "
            f"the metadata says {meta.key_count}",
        )
    return revision, keys


async def _download(store: ObjectStore, meta: BackupMetadata, path: Path) -> None:
    object_sha = hashlib.sha256()
    object_size = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal object_size
        async for chunk in store.download(meta.snapshot_key):
            object_sha.update(chunk)
            object_size += len(chunk)
            yield chunk

    stream = decompress(counted()) if meta.compression == "zstd" else counted()
    checker = TrailerVerifier()
    try:
        with path.open("wb") as out:
            async for chunk in stream:
                checker.update(chunk)
                await anyio.to_thread.run_sync(out.write, chunk)
        digest = checker.finish()
    except ValueError as exc:  # zstd frame cut short or damaged
        raise DrillFailed("HashMismatch", f"{meta.snapshot_key}: {exc}") from exc
    except SnapshotCorrupt as exc:
        raise DrillFailed("HashMismatch", f"{meta.snapshot_key}: {exc}") from exc
    if object_size != meta.size or object_sha.hexdigest() != meta.sha256:
        raise DrillFailed(
            HashMismatch.reason,
            f"{meta.snapshot_key}: the object has {object_size} bytes with sha256 "
            f"{object_sha.hexdigest()}, the metadata says {meta.size} bytes with {meta.sha256}",
        )
    if digest != meta.snapshot_sha256:
        raise DrillFailed(
            "HashMismatch",
            f"{meta.snapshot_key}: etcd's digest {digest} differs "
            f"from the metadata's {meta.snapshot_sha256}",
        )


async def _command(tools: DrillTools, argv: list[str]) -> None:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except FileNotFoundError as exc:
        raise DrillFailed("ToolMissing", f"{argv[0]} not found: set --etcdutl/--etcd") from exc
    out, _ = await asyncio.wait_for(proc.communicate(), tools.command_timeout)
    if proc.returncode != 0:
        tail = out.decode(errors="replace").strip().splitlines()[-5:]
        raise DrillFailed(
            "RestoreFailed", f"{' '.join(argv[:3])} exited {proc.returncode}: " + " | ".join(tail)
        )


@contextlib.asynccontextmanager
async def _etcd(
    tools: DrillTools, data_dir: Path, client: str, peer: str, log_path: Path
) -> AsyncIterator[EtcdClient]:
    """A one-member etcd on the restored data, on loopback only; stopped on exit."""
    with log_path.open("wb") as log_file:
        try:
            proc = await asyncio.create_subprocess_exec(
                tools.etcd,
                "--name=drill",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=drill={peer}",
                "--unsafe-no-fsync",
                "--log-level=error",
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
            )
        except FileNotFoundError as exc:
            raise DrillFailed("ToolMissing", f"{tools.etcd} not found: set --etcd") from exc
        try:
            async with EtcdClient([client], timeout=2.0) as etcd:
                await _wait_serving(etcd, client, proc, tools.start_timeout, log_path)
                yield etcd
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def _wait_serving(
    etcd: EtcdClient, client: str, proc: asyncio.subprocess.Process, within: float, log: Path
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.05
    while True:
        if proc.returncode is not None:
            text = await anyio.to_thread.run_sync(lambda: log.read_text(errors="replace"))
            tail = text.strip().splitlines()[-5:]
            raise DrillFailed(
                "RestoreFailed", "etcd exited on the restored data: " + " | ".join(tail)
            )
        try:
            await etcd.count_keys(client)
            return
        except EtcdError:
            if loop.time() > deadline:
                raise DrillFailed(
                    "RestoreFailed",
                    f"etcd on the restored data did not serve within {within:.0f}s",
                ) from None
            await asyncio.sleep(delay)  # polling a process we started, with backoff
            delay = min(delay * 2, 1.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
