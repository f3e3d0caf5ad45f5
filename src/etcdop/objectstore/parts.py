"""Multipart arithmetic: part sizes within S3's limits, and the checksum S3 keeps of the parts."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

MIB = 1024 * 1024
MIN_PART = 5 * MIB  # S3's minimum for every part but the last
MAX_PART = 5 * 1024 * MIB
MAX_PARTS = 10_000


def part_size_for(size_hint: int, preferred: int = 8 * MIB, headroom: float = 1.5) -> int:
    """The part size to stream SIZE_HINT bytes with: PREFERRED unless the stream could outgrow
    10,000 parts, where HEADROOM allows for a database that grows while it is streamed."""
    if preferred < MIN_PART or preferred > MAX_PART:
        raise ValueError(f"part size {preferred} is outside S3's limits [{MIN_PART}, {MAX_PART}]")
    needed = int(max(size_hint, 0) * headroom) // MAX_PARTS + 1
    size = max(preferred, -(-needed // MIB) * MIB)  # whole MiB, at least PREFERRED
    if size > MAX_PART:
        raise ValueError(
            f"a {size_hint}-byte stream does not fit S3's {MAX_PARTS} parts of at most {MAX_PART}"
        )
    return size


def peak_buffer_bytes(part_size: int, parts_in_flight: int) -> int:
    """The most snapshot bytes an upload holds at once: the part being filled, one queued, and
    one in each uploader; independent of the database size."""
    return part_size * (parts_in_flight + 2)


def composite_sha256(part_digests: Iterable[bytes]) -> str:
    """The `ChecksumSHA256` S3 keeps for a multipart object: sha256 of the parts' digests, -N."""
    digests = list(part_digests)
    joined = hashlib.sha256(b"".join(digests)).digest()
    return f"{base64.b64encode(joined).decode()}-{len(digests)}"
