"""zstd over async byte streams (the `zstandard` bindings: maintained, and they release the GIL,
so each batch is (de)compressed in a worker thread while the event loop keeps serving)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import anyio.to_thread
import zstandard

COMPRESSIONS = ("", "zstd")
BATCH = 1024 * 1024  # bytes gathered before a thread hop: few hops, little memory


async def compress(chunks: AsyncIterable[bytes], level: int = 3) -> AsyncIterator[bytes]:
    """CHUNKS as one zstd frame."""
    obj = zstandard.ZstdCompressor(level=level).compressobj()
    async for batch in _batched(chunks):
        out = await anyio.to_thread.run_sync(obj.compress, batch)
        if out:
            yield out
    yield obj.flush()


async def decompress(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    """The bytes of one zstd frame; a frame cut short raises ValueError."""
    obj = zstandard.ZstdDecompressor().decompressobj()
    async for batch in _batched(chunks):
        out = await anyio.to_thread.run_sync(obj.decompress, batch)
        if out:
            yield out
    if not obj.eof:
        raise ValueError("zstd stream ended before its frame did (truncated object)")


async def _batched(chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    pending: list[bytes] = []
    size = 0
    async for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= BATCH:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)
