"""Streaming multipart upload: an async byte stream goes to S3 part by part.

Memory stays bounded whatever the stream's length: the part being filled, one part queued and
one per uploader task (`parts.peak_buffer_bytes`). Each part is hashed (sha256, in the uploader's
thread) and sent with its checksum, so the server can keep the composite checksum we check after
completion. A failure anywhere aborts the upload, so no parts stay behind. The object's own
sha256 is the caller's to take: a backup already hashes the stream to check etcd's trailer, and a
second pass over every byte on the event loop's thread cost speed (bench/backup.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from etcdop.objectstore.errors import StoreError, UploadTooLarge
from etcdop.objectstore.parts import MAX_PARTS, MIN_PART, composite_sha256

if TYPE_CHECKING:
    from etcdop.objectstore.store import ObjectStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UploadResult:
    key: str
    size: int
    parts: int
    composite_sha256: str  # what S3 keeps as ChecksumSHA256 ("<b64>-<parts>")


@dataclass(frozen=True)
class _Part:
    number: int
    etag: str
    sha256_b64: str


class MultipartStream:
    """One upload of KEY from CHUNKS; use `await MultipartStream(...).run()` once."""

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        part_size: int,
        parts_in_flight: int,
        on_part: Callable[[int], None] | None = None,
    ) -> None:
        if part_size < MIN_PART:
            raise ValueError(f"part size {part_size} is below S3's minimum of {MIN_PART} bytes")
        if parts_in_flight < 1:
            raise ValueError(f"parts in flight must be at least 1, not {parts_in_flight}")
        self._store = store
        self._key = key
        self._chunks = chunks
        self._part_size = part_size
        self._workers = parts_in_flight
        self._on_part = on_part
        self._size = 0
        self._parts: dict[int, _Part] = {}

    async def run(self) -> UploadResult:
        store, key = self._store, self._key
        created = await store.call(
            "create multipart upload",
            key,
            lambda c: c.create_multipart_upload(
                Bucket=store.bucket,
                Key=key,
                ChecksumAlgorithm="SHA256",
                ContentType="application/octet-stream",
                **store.config.sse_params(),
            ),
        )
        upload_id = str(created["UploadId"])
        log.info("multipart upload started", extra={"key": key, "bucket": store.bucket})
        try:
            await self._transfer(upload_id)
            parts = [self._parts[n] for n in sorted(self._parts)]
            await store.call(
                "complete multipart upload",
                key,
                lambda c: c.complete_multipart_upload(
                    Bucket=store.bucket,
                    Key=key,
                    UploadId=upload_id,
                    IfNoneMatch="*",  # conditional create: never replace an existing backup
                    MultipartUpload={
                        "Parts": [
                            {"PartNumber": p.number, "ETag": p.etag, "ChecksumSHA256": p.sha256_b64}
                            for p in parts
                        ]
                    },
                    **store.config.read_params(),
                ),
            )
        except BaseException as exc:
            await store.abort(key, upload_id, cause=exc)
            raise
        digests = [base64.b64decode(p.sha256_b64) for p in parts]
        return UploadResult(
            key=key,
            size=self._size,
            parts=len(parts),
            composite_sha256=composite_sha256(digests),
        )

    async def _transfer(self, upload_id: str) -> None:
        queue: asyncio.Queue[tuple[int, bytearray] | None] = asyncio.Queue(maxsize=1)
        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(self._workers):
                    tg.create_task(self._uploader(upload_id, queue))
                tg.create_task(self._producer(queue))
        except BaseExceptionGroup as group:
            raise _first_cause(group) from None

    async def _producer(self, queue: asyncio.Queue[tuple[int, bytearray] | None]) -> None:
        """Copies the chunks into one part-sized buffer at a time and hands the buffer itself
        over: no joined copy of the part beside its chunks (that doubled the producer's share
        of the peak, and a long stream met the worst case more often; bench/backup.py)."""
        size = self._part_size
        buf = bytearray(size)
        view = memoryview(buf)
        filled = 0
        number = 0

        async def emit(part: bytearray) -> None:
            nonlocal number
            number += 1
            if number > MAX_PARTS:
                raise UploadTooLarge(
                    f"upload s3://{self._store.bucket}/{self._key}: the stream needs more than "
                    f"{MAX_PARTS} parts of {size} bytes; raise the part size"
                )
            await queue.put((number, part))

        async for chunk in self._chunks:
            if not chunk:
                continue
            self._size += len(chunk)
            src = memoryview(chunk)
            while src:
                n = min(len(src), size - filled)
                view[filled : filled + n] = src[:n]
                filled += n
                src = src[n:]
                if filled == size:
                    view.release()
                    await emit(buf)
                    buf = bytearray(size)
                    view = memoryview(buf)
                    filled = 0
        view.release()
        if filled or number == 0:
            del buf[filled:]  # the last part: only what was written
            await emit(buf)
        for _ in range(self._workers):
            await queue.put(None)

    async def _uploader(
        self, upload_id: str, queue: asyncio.Queue[tuple[int, bytearray] | None]
    ) -> None:
        store, key = self._store, self._key
        while (item := await queue.get()) is not None:
            number, data = item

            def send(c: Any, number: int = number, data: bytearray = data) -> tuple[str, str]:
                digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
                resp = c.upload_part(
                    Bucket=store.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=digest,
                    **store.config.read_params(),
                )
                store.confirm(f"upload part {number}", key, digest, resp)
                return str(resp["ETag"]), digest

            etag, digest = await store.call(f"upload part {number}", key, send)
            self._parts[number] = _Part(number, etag, digest)
            del data, item
            if self._on_part is not None:
                self._on_part(number)


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that stopped the upload (a store error before a cancellation it caused)."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for sub in exc.exceptions:
                walk(sub)
        else:
            leaves.append(exc)

    walk(group)
    for exc in leaves:
        if isinstance(exc, StoreError):
            return exc
    for exc in leaves:
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return leaves[0]
