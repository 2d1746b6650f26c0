from __future__ import annotations

import sys

import pytest

from indexer.engine import duckdb
from indexer.memory import ENGINE_LIBRARY, _clean_mappings, drop_code_pages, release_memory, tune_malloc

linux = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/smaps")


def test_helpers_run_anywhere() -> None:
    tune_malloc()
    release_memory()


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
