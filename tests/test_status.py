"""`index_status`: the index summary, read through priced_calls like every other total."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from indexer.ingest import sync
from indexer.pricing import load_book
from indexer.status import index_status
from indexer.store import Index

RULES = Path(__file__).resolve().parent.parent / "fixtures" / "rules"


def test_status_of_the_samples(tmp_path: Path, samples_tree: Path) -> None:
    files = sorted((samples_tree / "projects").rglob("*.jsonl"))
    with Index(tmp_path / "index.duckdb") as index:
        sync(index, [samples_tree / "projects"])
        s = index_status(index, load_book(None))
        cost = index.con.execute("SELECT sum(cost_calculated) FROM priced_calls").fetchone()
    assert (s.files_live, s.files_gone, s.calls, s.failed_calls, s.rejected_lines, s.lines) == (4, 0, 15, 0, 0, 156)
    assert (s.input_tokens, s.output_tokens, s.cache_creation_tokens, s.cache_read_tokens) == (
        2558,
        1666,
        79835,
        601758,
    )
    assert s.total_tokens == 685817
    assert s.bytes_indexed == sum(f.stat().st_size for f in files)
    assert s.unpriced_models == {}  # every sample model has a bundled price
    assert cost is not None and s.total_cost is not None
    assert abs(s.total_cost - cost[0]) < 1e-9 and s.total_cost > 0  # no costUSD in the samples
    assert s.last_ingest is not None and s.db_size > 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", s.last_ingest)  # as health prints it


def test_status_of_the_rule_fixtures(tmp_path: Path) -> None:
    roots = [p / "projects" for p in sorted(RULES.iterdir()) if p.is_dir()]
    with Index(tmp_path / "index.duckdb") as index:
        sync(index, roots)
        s = index_status(index, load_book(None))
    # fixtures/rules/README.md, "all 18 together"
    assert (s.calls, s.failed_calls, s.rejected_lines, s.lines, s.files_live) == (28, 1, 14, 63, 21)
    assert (s.input_tokens, s.output_tokens, s.cache_creation_tokens, s.cache_read_tokens) == (245, 1126, 3670, 4550)
    assert s.total_tokens == 9591


def test_deleted_files_count_as_gone_and_keep_their_calls(tmp_path: Path, samples_tree: Path) -> None:
    with Index(tmp_path / "index.duckdb") as index:
        sync(index, [samples_tree / "projects"])
        (samples_tree / "projects" / "-home-marco-spotter" / "tool_heavy.jsonl").unlink()
        sync(index, [samples_tree / "projects"])
        s = index_status(index, load_book(None))
    assert (s.files_live, s.files_gone, s.calls, s.total_tokens) == (3, 1, 15, 685817)


def test_size_counts_the_write_ahead_log_and_the_path_is_absolute(
    tmp_path: Path, samples_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a process holds the index (a running service), new rows sit in index.duckdb.wal."""
    monkeypatch.chdir(tmp_path)
    with Index(Path("index.duckdb")) as index:
        sync(index, [samples_tree / "projects"])
        wal = tmp_path / "index.duckdb.wal"
        assert wal.stat().st_size > 0
        s = index_status(index, load_book(None))
        assert s.db_size == (tmp_path / "index.duckdb").stat().st_size + wal.stat().st_size
    assert s.db == str(tmp_path / "index.duckdb")
