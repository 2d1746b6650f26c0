"""Schema migrations: a blank index gets exactly these columns; an older one is upgraded in place."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from indexer.migrations import MIGRATIONS, migrate
from indexer.store import Index

COLUMNS = {
    "calls": [
        ("key", "BIGINT"), ("msg_hash", "BIGINT"), ("ts", "TIMESTAMP"), ("model", "VARCHAR"),
        ("session", "VARCHAR"), ("project", "VARCHAR"), ("branch", "VARCHAR"), ("version", "VARCHAR"),
        ("agent_id", "VARCHAR"), ("sidechain", "BOOLEAN"), ("failed", "BOOLEAN"), ("replay", "BOOLEAN"),
        ("input_tokens", "BIGINT"), ("output_tokens", "BIGINT"), ("cache_5m_tokens", "BIGINT"),
        ("cache_1h_tokens", "BIGINT"), ("cache_read_tokens", "BIGINT"), ("web_searches", "INTEGER"),
        ("fast", "BOOLEAN"), ("cost_usd", "DOUBLE"), ("latency_ms", "BIGINT"), ("error", "VARCHAR"),
    ],
    "files": [
        ("path", "VARCHAR"), ("device", "UBIGINT"), ("inode", "UBIGINT"), ("fp_len", "INTEGER"),
        ("fp_hash", "BIGINT"), ("size", "BIGINT"), ("mtime_ns", "BIGINT"), ("offset", "BIGINT"),
        ("tail_hash", "BIGINT"), ("last_user_ms", "BIGINT"), ("lines", "BIGINT"), ("gone", "BOOLEAN"),
        ("ingested_at", "TIMESTAMP"),
    ],
    "events": [
        ("key", "BIGINT"), ("ts", "TIMESTAMP"), ("kind", "VARCHAR"), ("session", "VARCHAR"),
        ("project", "VARCHAR"), ("detail", "VARCHAR"),
    ],
    "rejects": [("path", "VARCHAR"), ("offset", "BIGINT"), ("reason", "VARCHAR")],
    "prices": [
        ("model", "VARCHAR"), ("matched", "VARCHAR"), ("tier", "VARCHAR"), ("priced", "BOOLEAN"),
        ("fast_mult", "DOUBLE"), ("web", "DOUBLE"), ("p_in", "DOUBLE"), ("p_out", "DOUBLE"),
        ("p_w5m", "DOUBLE"), ("p_w1h", "DOUBLE"), ("p_read", "DOUBLE"), ("has_lc", "BOOLEAN"),
        ("l_in", "DOUBLE"), ("l_out", "DOUBLE"), ("l_w5m", "DOUBLE"), ("l_w1h", "DOUBLE"), ("l_read", "DOUBLE"),
    ],
    "price_periods": [
        ("model", "VARCHAR"), ("matched", "VARCHAR"), ("tier", "VARCHAR"), ("priced", "BOOLEAN"),
        ("fast_mult", "DOUBLE"), ("web", "DOUBLE"), ("p_in", "DOUBLE"), ("p_out", "DOUBLE"),
        ("p_w5m", "DOUBLE"), ("p_w1h", "DOUBLE"), ("p_read", "DOUBLE"), ("has_lc", "BOOLEAN"),
        ("l_in", "DOUBLE"), ("l_out", "DOUBLE"), ("l_w5m", "DOUBLE"), ("l_w1h", "DOUBLE"), ("l_read", "DOUBLE"),
        ("since", "TIMESTAMP"), ("until", "TIMESTAMP"),
    ],
    "migrations": [("name", "VARCHAR"), ("applied_at", "TIMESTAMP")],
}  # fmt: skip
NAMES = [
    "001_calls", "002_files", "003_events_and_rejects", "004_prices", "005_calls_without_primary_key",
    "006_price_periods",
]  # fmt: skip


def schema(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[str, str]]]:
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
    return {t: [(r[0], r[1]) for r in con.execute(f'DESCRIBE "{t}"').fetchall()] for t in tables}


def applied(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT name FROM migrations ORDER BY applied_at, name").fetchall()]


def test_blank_database_gets_exactly_these_columns(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "blank.duckdb"))
    assert migrate(con) == NAMES
    assert [name for name, _ in MIGRATIONS] == NAMES
    assert schema(con) == COLUMNS
    assert applied(con) == NAMES
    assert migrate(con) == []  # idempotent
    con.close()


def test_older_schema_is_upgraded_keeping_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    assert migrate(con, MIGRATIONS[:2]) == NAMES[:2]
    con.execute(
        "INSERT INTO calls VALUES (1, 2, TIMESTAMP '2026-01-01 00:00:00', 'claude-opus-4-6', 's', '/p', NULL, NULL, "
        "NULL, false, false, false, 3, 4, 5, 6, 7, 0, false, NULL, NULL, NULL)"
    )
    assert sorted(schema(con)) == ["calls", "files", "migrations"]
    con.close()
    with Index(db) as index:  # every open migrates
        assert schema(index.con) == COLUMNS
        assert applied(index.con) == NAMES
        assert index.con.execute("SELECT key, input_tokens, cache_read_tokens FROM calls").fetchall() == [(1, 3, 7)]


def test_a_failing_migration_leaves_no_trace(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "x.duckdb"))

    def broken(c: duckdb.DuckDBPyConnection) -> None:
        c.execute("CREATE TABLE half (a INTEGER)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        migrate(con, [MIGRATIONS[0], ("002_broken", broken)])
    assert applied(con) == ["001_calls"]
    assert "half" not in schema(con)
    con.close()


def test_calls_lose_their_primary_key_and_keep_their_rows_in_time_order(tmp_path: Path) -> None:
    """005 rebuilds `calls` without the key's index (a third of the file) and sorts it by time."""
    db = tmp_path / "v4.duckdb"
    con = duckdb.connect(str(db))
    migrate(con, MIGRATIONS[:4])
    for key, day in ((7, 3), (5, 1), (6, 2)):
        con.execute(
            f"INSERT INTO calls VALUES ({key}, 0, TIMESTAMP '2026-01-0{day} 00:00:00', 'm', 's', '/p', NULL, NULL, "
            f"NULL, false, false, false, {key}, 0, 0, 0, 0, 0, false, NULL, NULL, NULL)"
        )
    assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'calls' "
                       "AND constraint_type = 'PRIMARY KEY'").fetchone() == (1,)  # fmt: skip
    con.close()
    with Index(db) as index:
        assert applied(index.con) == NAMES
        assert schema(index.con)["calls"] == COLUMNS["calls"]
        kinds = index.con.execute("SELECT constraint_type FROM duckdb_constraints() WHERE table_name = 'calls'")
        assert "PRIMARY KEY" not in {r[0] for r in kinds.fetchall()}
        assert index.con.execute("SELECT key, input_tokens FROM calls").fetchall() == [(5, 5), (6, 6), (7, 7)]
        # The replay column keeps its default: a plain insert without it still works.
        index.con.execute(
            "INSERT INTO calls BY NAME SELECT 8 AS key, 0 AS msg_hash, TIMESTAMP '2026-01-04' AS ts, 'm' AS model, "
            "'s' AS session, '/p' AS project, false AS sidechain, false AS failed, 0 AS input_tokens, "
            "0 AS output_tokens, 0 AS cache_5m_tokens, 0 AS cache_1h_tokens, 0 AS cache_read_tokens, "
            "0 AS web_searches, false AS fast"
        )
        assert index.con.execute("SELECT replay FROM calls WHERE key = 8").fetchone() == (False,)


def test_an_index_from_a_newer_version_is_refused_not_misread(tmp_path: Path) -> None:
    """A downgraded cco would misread or overwrite what a newer schema step added: it says so instead."""
    from tests.conftest import run_cco

    db = tmp_path / "index.duckdb"
    with Index(db) as index:
        index.con.execute("INSERT INTO migrations VALUES ('999_from_the_future', now())")
    for args in (
        ("index", "sync", "--source", str(tmp_path)),
        ("index", "status"),
        ("report", "daily", "--json"),
        ("index", "rebuild", "--source", str(tmp_path)),  # not replaced by this version's schema
    ):
        r = run_cco(*args, "--db", str(db))
        assert r.returncode == 2, (args, r.stderr)
        assert "written by a newer version of cco (schema step 999_from_the_future is unknown here)" in r.stderr
        assert r.stderr.count("\n") == 1
    con = duckdb.connect(str(db), read_only=True)
    assert ("999_from_the_future",) in con.execute("SELECT name FROM migrations").fetchall()
    con.close()
