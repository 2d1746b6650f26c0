"""Keeping resident memory small in the processes that hold much: the service, a rebuild, their parsers.

The idea: most of what the long-running service holds beyond its data is slack, not use. glibc
keeps freed memory in per-thread arenas and below a heap top it seldom trims, and the DuckDB
library leaves ~40 MB of its code mapped that only ran once (building its catalog of built-in
functions at open). Each helper is a no-op where its facility is missing (not Linux, not glibc).
"""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import suppress
from functools import cache

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MALLOC_ARENAS = 2  # glibc's default is 8 per core: each thread that allocates may get its own
MALLOC_THRESHOLD = 128 * 1024
MADV_DONTNEED = 4
ENGINE_LIBRARY = "_duckdb"
OWN_PAGES = ("Anonymous:", "Private_Dirty:", "Shared_Dirty:")  # smaps fields of pages not the file's as on disk


@cache
def glibc() -> ctypes.CDLL | None:
    """glibc, loaded once; None elsewhere (not Linux, or another C library such as musl)."""
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  # glibc, not musl
    except (OSError, AttributeError):
        return None
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def tune_malloc() -> None:
    """Fewer glibc arenas, and big blocks always mapped apart and the heap top always trimmed; no BLAS threads.

    Call before any thread starts (an arena is given to a thread at its first allocation). With
    the thresholds fixed, glibc does not raise them after a big block is freed (its default),
    so a report's megabytes of JSON go back to the OS when freed instead of staying in the heap.
    """
    # numpy's OpenBLAS starts a thread per core when it loads, which cco never uses (no linear
    # algebra): in a 1 GiB rebuild those threads spun for ~5% of all CPU samples (perf, 3
    # processes). Read when the library loads, and inherited by the parser processes.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    libc = glibc()
    if libc is not None:
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
        libc.mallopt(M_MMAP_THRESHOLD, MALLOC_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, MALLOC_THRESHOLD)


def release_memory() -> None:
    """Give freed heap back to the OS after a big catch-up (glibc keeps it otherwise)."""
    libc = glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _clean_mappings(fragment: str) -> list[tuple[int, int]]:
    """(start, end) of the read-only mappings of files whose path holds `fragment` with no page of
    their own: no copy-on-write page, nothing dirty, so every page is the file's, as on disk."""
    found: dict[tuple[int, int], bool] = {}  # range -> clean so far
    current: tuple[int, int] | None = None
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.split()
            if not parts[0].endswith(":"):  # a mapping's header: range perms offset dev inode [path]
                current = None
                if len(parts) >= 6 and fragment in parts[5] and parts[1] in ("r-xp", "r--p"):
                    start, end = (int(x, 16) for x in parts[0].split("-"))
                    current = (start, end)
                    found[current] = True
            elif current is not None and parts[0] in OWN_PAGES and int(parts[1]):
                found[current] = False
    return [r for r, clean in found.items() if clean]


def drop_code_pages(fragment: str = ENGINE_LIBRARY) -> int:
    """Unmap the resident pages of the library whose path holds `fragment`; the bytes unmapped.

    Its code that ran once stays out of the service's resident set; code still in use is mapped
    again at its next call from the page cache (a minor fault, no disk read while the file is
    cached). Only clean, read-only, file-backed mappings are touched: for them MADV_DONTNEED
    just forgets the mapping of each page (never data: a private page of its own would be lost,
    so mappings with any are skipped).
    """
    libc = glibc()
    if libc is None:
        return 0
    dropped = 0
    with suppress(OSError):
        for start, end in _clean_mappings(fragment):
            if libc.madvise(start, end - start, MADV_DONTNEED) == 0:
                dropped += end - start
    return dropped
