"""The agent's memory between backups: what glibc's allocator keeps, given back.

A backup allocates and frees part-sized buffers (8 MiB) and thousands of 32 KiB snapshot
chunks. glibc raises its mmap threshold to the size of the largest block freed (up to 32 MiB),
so after the first backup the part buffers come from the heap, and a fragmented heap is not
returned to the system: measured with `bench/backup.py`, idle RSS went 100 -> 141 -> 160 MiB
over backups, and the peak at 512 MiB was 22 % above the one at 64 MiB. A fixed threshold keeps
part buffers in their own mappings (freed at once), and `malloc_trim` after each job returns
the free pages in the middle of the heap. Both are no-ops where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt(3) parameter numbers, from glibc's malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD = 1024 * 1024
"""Blocks this size or larger get their own mapping: every part buffer, no snapshot chunk."""
ARENA_MAX = 1
"""One heap for every thread: gRPC's and the upload threads' chunks would otherwise fragment
an arena each (measured: peak at 512 MiB +15-33 % over 64 MiB with 2 or 8 arenas, +5 % with
one, and no slower)."""


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None  # glibc


_LIBC = _glibc()


def tune_allocator() -> bool:
    """Fix the mmap threshold (which also stops glibc moving it) and the arena count; call it
    before any thread starts. True when both were set."""
    if _LIBC is None:
        return False
    done = True
    for name, param, value in (
        ("mmap threshold", M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        ("arena count", M_ARENA_MAX, ARENA_MAX),
    ):
        if not _LIBC.mallopt(ctypes.c_int(param), ctypes.c_int(value)):
            log.warning("mallopt refused a setting", extra={"setting": name, "value": value})
            done = False
    return done


def give_back() -> bool:
    """Return the heap's free pages to the system after a job; True when some were."""
    if _LIBC is None:
        return False
    return bool(_LIBC.malloc_trim(ctypes.c_size_t(0)))
