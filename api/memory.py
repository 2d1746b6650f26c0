"""Keeping the resident memory of `cco index run` small: glibc's allocator.

The idea: much of what the long-running service holds beyond its data is slack, not use: glibc
keeps freed memory in per-thread arenas and below a heap top it seldom trims. Each helper is a
no-op where its facility is missing (not Linux, not glibc).
"""

from __future__ import annotations

import ctypes
import sys
from functools import cache

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MALLOC_ARENAS = 2  # glibc's default is 8 per core: each thread that allocates may get its own
MALLOC_THRESHOLD = 128 * 1024


@cache
def _libc() -> ctypes.CDLL | None:
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  # glibc, not musl
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc() -> None:
    """Fewer glibc arenas, and big blocks always mapped apart and the heap top always trimmed.

    Call before any thread starts (an arena is given to a thread at its first allocation). With
    the thresholds fixed, glibc does not raise them after a big block is freed (its default),
    so a report's megabytes of JSON go back to the OS when freed instead of staying in the heap.
    """
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
        libc.mallopt(M_MMAP_THRESHOLD, MALLOC_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, MALLOC_THRESHOLD)


def release_memory() -> None:
    """Give freed heap back to the OS after a big catch-up (glibc keeps it otherwise)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
