"""ObjectStore: one bucket over boto3, with every blocking call run in a worker thread (anyio)
so the event loop keeps serving while bytes move."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import logging
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio.to_thread
import boto3
from botocore.config import Config

from etcdop.objectstore.config import StoreConfig
from etcdop.objectstore.errors import (
    ChecksumNotChecked,
    HashMismatch,
    ObjectMissing,
    SizeMismatch,
    StoreError,
    translate,
)
from etcdop.objectstore.keys import METADATA, BackupKey, cluster_dir
from etcdop.objectstore.multipart import MultipartStream, UploadResult

log = logging.getLogger(__name__)

T = TypeVar("T")
READ_CHUNK = 1024 * 1024


_SESSION_LOCK = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    """The one boto3 session of the process: a session per request parsed the S3 model again
    (tens of ms) and left ~12 MiB for the collector each time (the agent's idle RSS rose from
    one backup to the next). Clients are not kept: each store gets its own connection pool,
    so no connection idles between jobs for a middlebox to drop without a word."""
    return boto3.session.Session()


@dataclass(frozen=True)
class PendingAbort:
    """A multipart upload whose abort failed (the server was down): retried until it goes."""

    store: ObjectStore
    key: str
    upload_id: str


class ObjectStore:
    """Backups in one bucket. ON_ABORT_FAILED receives uploads that could not be aborted."""

    def __init__(
        self,
        config: StoreConfig,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        on_abort_failed: Callable[[PendingAbort], None] | None = None,
    ) -> None:
        self.config = config
        self.bucket = config.bucket
        self.endpoint = config.endpoint or f"s3.{config.region}.amazonaws.com"
        creds = config.credentials
        with _SESSION_LOCK:  # a session is not thread-safe; the clients it makes are
            self._client: Any = _session().client(
                "s3",
                endpoint_url=config.endpoint or None,
                region_name=config.region,
                aws_access_key_id=creds.access_key,
                aws_secret_access_key=creds.secret_key,
                aws_session_token=creds.session_token or None,
                config=Config(
                    s3={
                        "addressing_style": "path" if config.force_path_style else "auto",
                        # Every body we send carries a signed x-amz-checksum-sha256 header
                        # (parts, metadata) that the server checks, and botocore would hash each
                        # body again to sign it: a second pass over every byte of a backup.
                        # Over plain http that signature was the only integrity check a server
                        # that ignores checksums makes, so there `confirm` requires the server to
                        # echo every checksum and `head` to keep one (docs/decisions.md).
                        "payload_signing_enabled": False,
                    },
                    retries={"mode": "standard", "max_attempts": max_attempts},
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    # We send our own SHA256 per part; no second (CRC32) checksum per request.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    max_pool_connections=16,
                ),
            )
        self._on_abort_failed = on_abort_failed
        # Plain http: no TLS either, so a server that checks no checksum is refused (fail closed).
        self.checksums_required = not self.endpoint.startswith("https://") and bool(config.endpoint)

    def confirm(self, operation: str, key: str, sent: str, resp: dict[str, Any]) -> None:
        """Over plain http, the server's response to a body must echo its checksum SENT."""
        echoed = resp.get("ChecksumSHA256")
        if self.checksums_required and echoed != sent:
            raise ChecksumNotChecked(
                f"{operation} s3://{self.bucket}/{key}: the server at {self.endpoint} did not "
                f"confirm the body's sha256 (it answered {echoed or 'none'}); over plain http "
                "bodies are trusted only to a server that checks x-amz-checksum-sha256: use "
                "https, or a server that checks checksums"
            )

    async def call(self, operation: str, key: str, fn: Callable[[Any], T]) -> T:
        """FN(boto3 client) in a worker thread, its failure translated to a StoreError."""
        try:
            return await anyio.to_thread.run_sync(fn, self._client)
        except StoreError:
            raise
        except Exception as exc:
            raise translate(exc, operation, self.endpoint, self.bucket, key) from exc

    # writes ---------------------------------------------------------------------------------

    async def upload(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        part_size: int,
        parts_in_flight: int = 2,
        on_part: Callable[[int], None] | None = None,
    ) -> UploadResult:
        """Stream CHUNKS to a new object KEY (never replacing one), then check what the server
        holds against what was sent; a bad object is deleted and the error raised."""
        result = await MultipartStream(
            self,
            key,
            chunks,
            part_size=part_size,
            parts_in_flight=parts_in_flight,
            on_part=on_part,
        ).run()
        try:
            await self._check_stored(result)
        except StoreError:
            with contextlib.suppress(StoreError):
                await self.delete(key)
            raise
        return result

    async def put_json(self, key: str, document: dict[str, Any]) -> None:
        """Create the small object KEY (conditional create: fails with ObjectExists)."""
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        resp: dict[str, Any] = await self.call(
            "put",
            key,
            lambda c: c.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                ChecksumSHA256=digest,
                IfNoneMatch="*",
                **self.config.sse_params(),
            ),
        )
        self.confirm("put", key, digest, resp)

    async def abort(
        self,
        key: str,
        upload_id: str,
        cause: BaseException | None = None,
        retry: bool = False,
    ) -> bool:
        """Abort an upload so no parts stay; True when done, else (unless this is a RETRY) it
        is handed to ON_ABORT_FAILED for a later retry."""
        try:
            await self.call(
                "abort multipart upload",
                key,
                lambda c: c.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id),
            )
        except ObjectMissing:  # NoSuchUpload: already gone
            return True
        except StoreError as exc:
            if "NoSuchUpload" in exc.message:
                return True
            log.warning(
                "multipart upload not aborted yet, will retry",
                extra={"key": key, "bucket": self.bucket, "error": exc.message},
            )
            if self._on_abort_failed is not None and not retry:
                self._on_abort_failed(PendingAbort(self, key, upload_id))
            return False
        log.info(
            "multipart upload aborted",
            extra={"key": key, "bucket": self.bucket, "cause": type(cause).__name__},
        )
        return True

    async def delete(self, key: str) -> None:
        await self.call("delete", key, lambda c: c.delete_object(Bucket=self.bucket, Key=key))

    async def delete_backup(self, backup: BackupKey) -> int:
        """Delete every object of one backup (retention); the metadata goes first, so a
        half-deleted backup is never listed as complete. Returns how many were deleted."""
        keys = [k async for k in self.list_keys(backup.dir)]
        keys.sort(key=lambda k: not k.endswith(METADATA))
        for key in keys:
            await self.delete(key)
        return len(keys)

    # reads ----------------------------------------------------------------------------------

    async def head(self, key: str) -> dict[str, Any]:
        resp: dict[str, Any] = await self.call(
            "head",
            key,
            lambda c: c.head_object(
                Bucket=self.bucket, Key=key, ChecksumMode="ENABLED", **self.config.read_params()
            ),
        )
        return resp

    async def get_json(self, key: str) -> dict[str, Any]:
        body = b"".join([chunk async for chunk in self.download(key)])
        try:
            document: dict[str, Any] = json.loads(body)
        except ValueError as exc:
            raise StoreError(f"read s3://{self.bucket}/{key}: not JSON ({exc})") from exc
        return document

    async def download(self, key: str, chunk_size: int = READ_CHUNK) -> AsyncIterator[bytes]:
        """The object's bytes, CHUNK_SIZE at a time, read in a worker thread."""
        resp = await self.call(
            "get",
            key,
            lambda c: c.get_object(Bucket=self.bucket, Key=key, **self.config.read_params()),
        )
        body = resp["Body"]
        try:
            while True:
                chunk: bytes = await self.call("read", key, lambda _c: body.read(chunk_size))
                if not chunk:
                    return
                yield chunk
        finally:
            body.close()

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        token: str | None = None
        while True:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                args["ContinuationToken"] = token

            def page_of(c: Any, args: dict[str, Any] = args) -> dict[str, Any]:
                page: dict[str, Any] = c.list_objects_v2(**args)
                return page

            page = await self.call("list", prefix, page_of)
            for obj in page.get("Contents", []):
                yield str(obj["Key"])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    async def list_backups(self, prefix: str, namespace: str, cluster: str) -> list[BackupKey]:
        """The complete backups of one cluster (those with metadata), oldest first."""
        found: list[BackupKey] = []
        async for key in self.list_keys(cluster_dir(prefix, namespace, cluster)):
            if key.endswith("/" + METADATA):
                with contextlib.suppress(ValueError):
                    found.append(BackupKey.parse(prefix, namespace, cluster, key))
        return sorted(found, key=lambda b: b.order)

    async def _check_stored(self, sent: UploadResult) -> None:
        head = await self.head(sent.key)
        where = f"s3://{self.bucket}/{sent.key}"
        size = int(head.get("ContentLength", -1))
        if size != sent.size:
            raise SizeMismatch(
                f"upload {where}: the server holds {size} bytes but {sent.size} were sent; "
                "the object was deleted"
            )
        kept = head.get("ChecksumSHA256")
        if not kept and self.checksums_required:
            raise ChecksumNotChecked(
                f"upload {where}: the server at {self.endpoint} keeps no checksum of the object, "
                "so over plain http nothing checked its bytes; the object was deleted: use "
                "https, or a server that checks checksums"
            )
        if kept and kept != sent.composite_sha256:
            raise HashMismatch(
                f"upload {where}: the server's checksum {kept} differs from the parts' "
                f"{sent.composite_sha256}; the object was deleted"
            )
