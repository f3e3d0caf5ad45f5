"""Checks an etcd snapshot stream's own checksum while the bytes pass.

The format, from etcd's source (server/etcdserver/api/v3rpc/maintenance.go, `Snapshot`, the same
in 3.5 and 3.6): the member sends its bbolt database in chunks (32 KiB, `snapshotSendBufferSize`)
while hashing them with sha256, then one last message whose blob is `h.Sum(nil)`: the 32-byte
sha256 of every byte before it. `etcdctl snapshot save` writes the stream as is, and
`etcdutl snapshot restore` (etcdutl/snapshot/v3_snapshot.go) tells a snapshot with a digest from
a copied db file by `hasChecksum(n) = n % 512 == sha256.Size`: a bbolt file is whole pages (a
multiple of 512), so the digest is what makes the size 32 more than one. Restore then cuts the
last 32 bytes and compares them with the sha256 of the rest.

So the check keeps the last 32 bytes seen in a small ring, hashes everything that falls out of
it, and at the end requires both the size rule and the digest: a stream cut short, padded or
altered anywhere fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator

DIGEST_SIZE = 32  # sha256.Size
SECTOR = 512


class SnapshotCorrupt(Exception):
    """The snapshot stream does not end with the sha256 of its bytes: never store it as good."""


class TrailerVerifier:
    """Feed every byte with `update`, then `finish()`; holds DIGEST_SIZE bytes at most."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._tail = b""
        self.size = 0  # bytes seen, trailer included

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if len(chunk) >= DIGEST_SIZE:
            self._hash.update(self._tail)
            self._hash.update(memoryview(chunk)[: len(chunk) - DIGEST_SIZE])
            self._tail = chunk[-DIGEST_SIZE:]
            return
        joined = self._tail + chunk
        cut = len(joined) - DIGEST_SIZE
        if cut > 0:
            self._hash.update(joined[:cut])
            self._tail = joined[cut:]
        else:
            self._tail = joined

    def finish(self) -> str:
        """The hex sha256 of the database (the digest the stream ended with); raises
        SnapshotCorrupt when the stream is not a whole snapshot."""
        if self.size % SECTOR != DIGEST_SIZE:
            raise SnapshotCorrupt(
                f"snapshot stream of {self.size} bytes is not a whole database plus its "
                f"{DIGEST_SIZE}-byte sha256 (size % {SECTOR} must be {DIGEST_SIZE}): "
                "it was cut short or padded"
            )
        actual = self._hash.digest()
        if actual != self._tail:
            raise SnapshotCorrupt(
                f"snapshot stream ends with sha256 {self._tail.hex()} but its "
                f"{self.size - DIGEST_SIZE} database bytes hash to {actual.hex()}: "
                "the bytes were altered on the way"
            )
        return actual.hex()

    def stream_sha256(self) -> str:
        """The hex sha256 of every byte seen, trailer included: the stored object's digest when
        the stream is stored as is, without hashing it a second time."""
        whole = self._hash.copy()
        whole.update(self._tail)
        return whole.hexdigest()


async def verified(chunks: AsyncIterable[bytes], verifier: TrailerVerifier) -> AsyncIterator[bytes]:
    """CHUNKS passed through unchanged; raises SnapshotCorrupt after the last one when the
    trailer does not match, so a consumer never completes on a bad stream."""
    async for chunk in chunks:
        verifier.update(chunk)
        yield chunk
    verifier.finish()
