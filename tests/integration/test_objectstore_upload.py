"""ObjectStore against a real S3 server (versitygw): streaming upload, checks, and no leftovers."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from etcdop.objectstore import (
    MIB,
    AbortRetrier,
    BackupKey,
    BadCredentials,
    BucketMissing,
    Credentials,
    EndpointDown,
    ObjectExists,
    ObjectMissing,
    ObjectStore,
    StoreError,
    compress,
    decompress,
    peak_buffer_bytes,
)
from tests.s3procs import S3Procs

pytestmark = pytest.mark.timeout(120)
PART = 5 * MIB


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Procs]:
    with S3Procs(tmp_path_factory.mktemp("s3")) as server:
        yield server


async def chunks_of(data: bytes, size: int = 32 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(store: ObjectStore, key: str) -> bytes:
    return b"".join([c async for c in store.download(key)])


async def test_upload_streams_parts_and_the_server_holds_what_was_sent(s3: S3Procs) -> None:
    bucket = s3.new_bucket()
    store = ObjectStore(s3.config(bucket))
    data = os.urandom(3 * PART + 12345)

    result = await store.upload("a/snapshot.db", chunks_of(data), part_size=PART)

    assert result.size == len(data)
    assert result.parts == 4
    assert await read_all(store, "a/snapshot.db") == data
    head = await store.head("a/snapshot.db")
    assert head["ContentLength"] == len(data)
    assert head["ChecksumSHA256"] == result.composite_sha256  # the server kept and agrees
    assert await read_all(store, "a/snapshot.db") == data
    assert s3.uploads(bucket) == []


async def test_bodies_go_unsigned_but_a_body_that_differs_from_its_checksum_is_refused(
    s3: S3Procs,
) -> None:
    """Bodies are not hashed a second time for the signature; the signed x-amz-checksum-sha256
    header is what the server checks them against, so altered bytes are still refused."""
    bucket = s3.new_bucket()
    store = ObjectStore(s3.config(bucket))
    signed_as: list[str] = []
    store._client.meta.events.register(
        "before-send.s3.PutObject",
        lambda request, **_: signed_as.append(request.headers["X-Amz-Content-SHA256"].decode()),
    )
    await store.put_json("good/metadata.json", {"a": 1})
    assert signed_as == ["UNSIGNED-PAYLOAD"]
    assert await store.get_json("good/metadata.json") == {"a": 1}

    other = base64.b64encode(hashlib.sha256(b"other bytes").digest()).decode()
    with pytest.raises(StoreError):
        await store.call(
            "put",
            "bad/metadata.json",
            lambda c: c.put_object(
                Bucket=bucket, Key="bad/metadata.json", Body=b"{}", ChecksumSHA256=other
            ),
        )
    with pytest.raises(ObjectMissing):
        await store.head("bad/metadata.json")


async def test_memory_in_use_stays_within_parts_in_flight(s3: S3Procs) -> None:
    store = ObjectStore(s3.config(s3.new_bucket()))
    produced = 0
    done_parts: set[int] = set()
    most_ahead = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal produced, most_ahead
        for _ in range(10 * PART // (64 * 1024)):
            # bytes handed out but not yet in a finished part: what the upload may be holding
            most_ahead = max(most_ahead, produced - len(done_parts) * PART)
            produced += 64 * 1024
            yield os.urandom(64 * 1024)

    await store.upload("m/snapshot.db", stream(), part_size=PART, parts_in_flight=2,
                       on_part=done_parts.add)

    assert len(done_parts) == 10
    assert most_ahead <= peak_buffer_bytes(PART, 2)


async def test_zstd_roundtrip(s3: S3Procs) -> None:
    store = ObjectStore(s3.config(s3.new_bucket()))
    data = b"etcd key value " * 700_000  # compressible, about 10 MiB

    result = await store.upload("z/snapshot.db.zst", compress(chunks_of(data)), part_size=PART)

    assert result.size < len(data) // 10
    back = b"".join([c async for c in decompress(store.download("z/snapshot.db.zst"))])
    assert back == data


async def test_never_overwrites_an_object(s3: S3Procs) -> None:
    bucket = s3.new_bucket()
    store = ObjectStore(s3.config(bucket))
    first = os.urandom(PART + 10)
    await store.upload("k/snapshot.db", chunks_of(first), part_size=PART)
    await store.put_json("k/metadata.json", {"n": 1})

    with pytest.raises(ObjectExists, match="never overwrite"):
        await store.upload("k/snapshot.db", chunks_of(os.urandom(100)), part_size=PART)
    with pytest.raises(ObjectExists):
        await store.put_json("k/metadata.json", {"n": 2})

    assert await read_all(store, "k/snapshot.db") == first
    assert await store.get_json("k/metadata.json") == {"n": 1}
    assert s3.uploads(bucket) == []  # the refused upload was aborted


async def test_a_failing_stream_aborts_the_upload(s3: S3Procs) -> None:
    bucket = s3.new_bucket()
    store = ObjectStore(s3.config(bucket))

    async def broken() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield os.urandom(PART)
        raise RuntimeError("snapshot stream broke")

    with pytest.raises(RuntimeError, match="snapshot stream broke"):
        await store.upload("f/snapshot.db", broken(), part_size=PART)

    assert s3.uploads(bucket) == []
    assert s3.keys(bucket) == []


async def test_wrong_credentials_name_the_cause(s3: S3Procs) -> None:
    bucket = s3.new_bucket()
    wrong = s3.config(bucket, credentials=Credentials(s3.access_key, "not-the-secret"))
    store = ObjectStore(wrong)

    with pytest.raises(BadCredentials, match="refused the credentials"):
        await store.upload("c/snapshot.db", chunks_of(os.urandom(1000)), part_size=PART)

    assert s3.uploads(bucket) == []
    assert s3.keys(bucket) == []


async def test_missing_bucket_names_the_cause(s3: S3Procs) -> None:
    store = ObjectStore(s3.config("no-such-bucket"))

    with pytest.raises(BucketMissing, match="bucket 'no-such-bucket' does not exist"):
        await store.upload("x/snapshot.db", chunks_of(os.urandom(1000)), part_size=PART)


async def test_listing_and_deleting_backups_for_retention(s3: S3Procs) -> None:
    bucket = s3.new_bucket()
    store = ObjectStore(s3.config(bucket))
    t0 = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.UTC)
    keys = [BackupKey("pre", "ns", "demo", t0 + dt.timedelta(minutes=m), 10 + m)
            for m in (2, 0, 1)]
    # A key named to the second before a millisecond key of the same second (by name it sorts
    # after it: '.' < 'Z').
    keys.append(BackupKey("pre", "ns", "demo", t0 + dt.timedelta(minutes=4, milliseconds=500), 14))
    keys.append(BackupKey.parse("pre", "ns", "demo", "pre/ns/demo/20261127T030400Z-"
                                + "13".zfill(19) + "/"))
    for key in keys:
        await store.upload(key.snapshot(), chunks_of(b"x" * 100), part_size=PART)
        await store.put_json(key.metadata, {})
    unfinished = BackupKey("pre", "ns", "demo", t0 + dt.timedelta(minutes=5), 20)
    await store.upload(unfinished.snapshot(), chunks_of(b"y"), part_size=PART)  # no metadata

    listed = await store.list_backups("pre", "ns", "demo")
    assert [b.revision for b in listed] == [10, 11, 12, 13, 14]  # oldest first, only complete

    assert await store.delete_backup(listed[0]) == 2
    assert [b.revision for b in await store.list_backups("pre", "ns", "demo")] == [11, 12, 13, 14]
    assert not any(k.startswith(listed[0].dir) for k in s3.keys(bucket))


async def test_server_stopped_mid_upload(tmp_path: Path) -> None:
    with S3Procs(tmp_path / "s3") as s3:
        bucket = s3.new_bucket()
        retrier = AbortRetrier()
        store = ObjectStore(s3.config(bucket), connect_timeout=1, max_attempts=2,
                            on_abort_failed=retrier.add)
        first_part_stored = asyncio.Event()

        async def stream() -> AsyncIterator[bytes]:
            yield os.urandom(PART)
            await first_part_stored.wait()
            assert len(s3.uploads(bucket)) == 1
            s3.stop()  # the server goes away while the upload is open
            for _ in range(2):
                yield os.urandom(PART)

        with pytest.raises(EndpointDown, match=r"did not answer.*check that the server runs"):
            await store.upload("s/snapshot.db", stream(), part_size=PART, parts_in_flight=1,
                               on_part=lambda n: first_part_stored.set())

        assert len(retrier) == 1  # the abort failed too: kept for a retry
        assert await retrier.retry() == 1  # still down
        s3.start()  # back on the same port with the same data
        assert len(s3.uploads(bucket)) == 1  # the orphan exists until the retry runs
        assert await retrier.retry() == 0
        assert s3.uploads(bucket) == []
        assert s3.keys(bucket) == []
