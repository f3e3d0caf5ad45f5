"""One backup: the local member's snapshot stream, checked in passing, into a new S3 object, then
its metadata beside it. The metadata is written last: a backup without it is not a backup."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from etcdop.agent.metadata import BackupMetadata
from etcdop.agent.snapshot_check import TrailerVerifier, verified
from etcdop.etcd import EtcdClient
from etcdop.objectstore import (
    MIB,
    BackupKey,
    ObjectStore,
    StoreError,
    compress,
    part_size_for,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackupPlan:
    """What to back up and how; names come from the agent's flags, never from a request."""

    namespace: str
    cluster: str
    member: str
    prefix: str = ""
    compression: str = ""
    part_size: int = 8 * MIB
    parts_in_flight: int = 2


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def hashed(chunks: AsyncIterable[bytes], digest: hashlib._Hash) -> AsyncIterator[bytes]:
    """CHUNKS unchanged, each fed to DIGEST on the way."""
    async for chunk in chunks:
        digest.update(chunk)
        yield chunk


async def take_backup(
    etcd: EtcdClient, endpoint: str, store: ObjectStore, plan: BackupPlan
) -> BackupMetadata:
    """Snapshot the member at ENDPOINT into STORE; raises (EtcdError, StoreError,
    SnapshotCorrupt) with nothing left behind in the bucket."""
    started = now()
    status = await etcd.status(endpoint)
    revision, key_count = await etcd.count_keys(endpoint)
    key = BackupKey(plan.prefix, plan.namespace, plan.cluster, started, revision)
    snapshot_key = key.snapshot(plan.compression)
    part_size = part_size_for(status.db_size, plan.part_size)
    log.info(
        "backup started",
        extra={
            "key": snapshot_key,
            "bucket": store.bucket,
            "revision": revision,
            "db_size": status.db_size,
            "part_size": part_size,
        },
    )
    checker = TrailerVerifier()
    compressed = hashlib.sha256()  # of the stored bytes, when they are not etcd's stream
    snapshot = etcd.snapshot(endpoint)
    try:
        stream: AsyncIterator[bytes] = verified(snapshot, checker)
        if plan.compression == "zstd":
            stream = hashed(compress(stream), compressed)
        uploaded = await store.upload(
            snapshot_key, stream, part_size=part_size, parts_in_flight=plan.parts_in_flight
        )
    finally:
        await snapshot.aclose()
    revision_max, _ = await etcd.count_keys(endpoint)
    metadata = BackupMetadata(
        namespace=plan.namespace,
        cluster=plan.cluster,
        cluster_id=f"{status.cluster_id:x}",
        member=plan.member,
        member_id=f"{status.member_id:x}",
        etcd_version=status.version,
        revision=revision,
        revision_max=revision_max,
        key_count=key_count,
        snapshot_key=snapshot_key,
        size=uploaded.size,
        sha256=compressed.hexdigest() if plan.compression == "zstd" else checker.stream_sha256(),
        snapshot_size=checker.size,
        snapshot_sha256=checker.finish(),
        compression=plan.compression,
        encryption=store.config.encryption,
        sse_customer_key_md5=store.config.sse_c_key_md5
        if store.config.encryption == "SSE-C"
        else "",
        started_at=rfc3339(started),
        completed_at=rfc3339(now()),
    )
    try:
        await store.put_json(key.metadata, metadata.to_json())
    except BaseException:
        with contextlib.suppress(StoreError):
            await store.delete(snapshot_key)
        raise
    log.info(
        "backup completed",
        extra={
            "key": snapshot_key,
            "bucket": store.bucket,
            "size": uploaded.size,
            "sha256": metadata.sha256,
            "revision": revision,
        },
    )
    return metadata
