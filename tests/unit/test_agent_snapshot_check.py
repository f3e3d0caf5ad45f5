"""The in-stream check of an etcd snapshot's trailing sha256."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdop.agent.snapshot_check import SnapshotCorrupt, TrailerVerifier, verified


def snapshot(pages: int) -> bytes:
    db = os.urandom(4096 * pages)  # bbolt: whole pages
    return db + hashlib.sha256(db).digest()


def feed(data: bytes, cuts: list[int]) -> TrailerVerifier:
    v = TrailerVerifier()
    last = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        v.update(data[last:cut])
        last = cut
    v.update(data[last:])
    return v


@given(st.integers(1, 8), st.lists(st.integers(0, 10**6), max_size=30))
def test_a_whole_snapshot_passes_however_it_is_chunked(pages: int, cuts: list[int]) -> None:
    data = snapshot(pages)
    assert feed(data, cuts).finish() == hashlib.sha256(data[:-32]).hexdigest()


@given(st.integers(1, 8), st.lists(st.integers(0, 10**6), max_size=30))
def test_the_stream_digest_is_that_of_every_byte_however_it_is_chunked(
    pages: int, cuts: list[int]
) -> None:
    data = snapshot(pages)
    verifier = feed(data, cuts)
    verifier.finish()
    assert verifier.stream_sha256() == hashlib.sha256(data).hexdigest()


@given(st.integers(1, 4), st.data())
def test_any_single_byte_change_is_caught(pages: int, draw: st.DataObject) -> None:
    data = bytearray(snapshot(pages))
    at = draw.draw(st.integers(0, len(data) - 1))
    data[at] ^= draw.draw(st.integers(1, 255))
    with pytest.raises(SnapshotCorrupt, match="altered"):
        feed(bytes(data), draw.draw(st.lists(st.integers(0, 10**6), max_size=10))).finish()


@pytest.mark.parametrize("cut", [1, 31, 32, 33, 4096, 4096 + 32])
def test_a_truncated_stream_is_caught(cut: int) -> None:
    data = snapshot(3)[:-cut]
    with pytest.raises(SnapshotCorrupt):
        feed(data, [100, 5000]).finish()


def test_a_stream_without_a_digest_is_caught() -> None:
    with pytest.raises(SnapshotCorrupt, match="cut short or padded"):
        feed(os.urandom(4096 * 2), []).finish()
    with pytest.raises(SnapshotCorrupt):
        TrailerVerifier().finish()


async def test_verified_raises_after_the_last_chunk() -> None:
    data = bytearray(snapshot(2))
    data[10] ^= 1

    async def chunks() -> AsyncIterator[bytes]:
        yield bytes(data[:5000])
        yield bytes(data[5000:])

    seen = []
    with pytest.raises(SnapshotCorrupt):
        async for chunk in verified(chunks(), TrailerVerifier()):
            seen.append(chunk)
    assert b"".join(seen) == bytes(data)  # passed through unchanged, refused at the end
