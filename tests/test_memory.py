from __future__ import annotations

import subprocess
import sys

import pytest

from indexer.engine import duckdb
from indexer.memory import ENGINE_LIBRARY, _clean_mappings, drop_code_pages, release_memory, tune_malloc

linux = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/smaps")


def test_helpers_run_anywhere() -> None:
    tune_malloc()
    release_memory()


_RSS = """
import re, sys
from pathlib import Path
from indexer.memory import release_memory, tune_malloc
def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
if sys.argv[1] == "tuned":
    tune_malloc()
first = bytes(300_000); del first  # untuned, glibc raises its mmap threshold when a mapped block is freed
base = rss()
blocks = [bytes(300_000) for _ in range(300)]  # 90 MB in 300 KB blocks
last = blocks[-1]  # kept: the heap's top stays in use, so an untuned heap cannot just shrink
del blocks
big_freed = rss()
small = [bytes(1000) for _ in range(50_000)]  # 50 MB in small ones, every 50th kept: a fragmented heap
kept = small[::50]
del small
freed = rss()
release_memory()
print(base, big_freed, freed, rss())
"""


@linux
def test_tuned_malloc_returns_big_blocks_and_release_returns_the_fragmented_heap() -> None:
    def run(mode: str) -> tuple[int, int, int]:
        """kB above the start: after freeing the big blocks, the small ones, and after release_memory."""
        out = subprocess.run([sys.executable, "-c", _RSS, mode], capture_output=True, text=True, check=True)
        base, *after = map(int, out.stdout.split())
        big, small, released = (a - base for a in after)
        return big, small, released

    plain_big, _, _ = run("plain")
    tuned_big, tuned_small, tuned_released = run("tuned")
    assert plain_big > 30_000  # untuned, glibc keeps freed 300 KB blocks in its heap
    assert tuned_big < 5_000  # tuned, they go back to the OS as they are freed
    assert tuned_small > 30_000  # freed small objects between kept ones stay resident ...
    assert tuned_released < 10_000  # ... until malloc_trim hands their pages back


@linux
def test_dropping_the_engine_code_leaves_the_engine_working() -> None:
    con = duckdb.connect()
    assert con.execute("SELECT 42").fetchall() == [(42,)]
    assert _clean_mappings(ENGINE_LIBRARY)  # the engine's text, as it is on disk
    assert drop_code_pages() > 0
    assert con.execute("SELECT sum(i) FROM range(10) t(i)").fetchall() == [(45,)]
    con.close()


@linux
def test_only_clean_read_only_mappings_are_candidates() -> None:
    # The writable and relocated (copy-on-write) mappings of the library hold pages of their own.
    with open("/proc/self/maps") as f:
        mapped = [line.split() for line in f if ENGINE_LIBRARY in line]
    writable = {tuple(int(x, 16) for x in m[0].split("-")) for m in mapped if "w" in m[1]}
    assert writable and not writable & set(_clean_mappings(ENGINE_LIBRARY))
    assert _clean_mappings("no-such-library") == []
