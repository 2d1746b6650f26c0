"""The index schema, as an ordered list of named migrations applied on every open.

The idea (sqlite-utils'): each migration is a small function; it runs with its record in the
`migrations` table inside one transaction, so an index is always at a known, complete version.
Add a migration at the end; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from indexer.errors import IndexNewer

if TYPE_CHECKING:  # only the connection's type: a report process imports DuckDB's lighter core alone
    import duckdb

Migration = tuple[str, Callable[["duckdb.DuckDBPyConnection"], None]]


# Shared by 001 and 005 (which differ only in the key's constraint); frozen like the migrations.
_CALL_COLUMNS_AFTER_KEY = """
    msg_hash BIGINT NOT NULL, ts TIMESTAMP NOT NULL, model VARCHAR NOT NULL, session VARCHAR NOT NULL,
    project VARCHAR NOT NULL, branch VARCHAR, version VARCHAR, agent_id VARCHAR, sidechain BOOLEAN NOT NULL,
    failed BOOLEAN NOT NULL, replay BOOLEAN NOT NULL DEFAULT false, input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL, cache_5m_tokens BIGINT NOT NULL, cache_1h_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL, web_searches INTEGER NOT NULL, fast BOOLEAN NOT NULL, cost_usd DOUBLE,
    latency_ms BIGINT, error VARCHAR
"""


def _calls(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE TABLE calls (key BIGINT PRIMARY KEY, {_CALL_COLUMNS_AFTER_KEY})")


def _files(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE files (
            path VARCHAR PRIMARY KEY,
            device UBIGINT NOT NULL,
            inode UBIGINT NOT NULL,
            fp_len INTEGER NOT NULL,
            fp_hash BIGINT NOT NULL,
            size BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            "offset" BIGINT NOT NULL,
            tail_hash BIGINT NOT NULL,
            last_user_ms BIGINT,
            lines BIGINT NOT NULL,
            gone BOOLEAN NOT NULL DEFAULT false,
            ingested_at TIMESTAMP NOT NULL
        )
        """
    )


def _events_and_rejects(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE TABLE events (
            key BIGINT PRIMARY KEY,
            ts TIMESTAMP NOT NULL,
            kind VARCHAR NOT NULL,
            session VARCHAR NOT NULL,
            project VARCHAR NOT NULL,
            detail VARCHAR
        )
        """
    )
    con.execute('CREATE TABLE rejects (path VARCHAR NOT NULL, "offset" BIGINT NOT NULL, reason VARCHAR NOT NULL)')


def _prices(con: duckdb.DuckDBPyConnection) -> None:
    """One row per model id in `calls`, with the rates it matched (see pricing.py)."""
    con.execute(
        """
        CREATE TABLE prices (
            model VARCHAR PRIMARY KEY, matched VARCHAR, tier VARCHAR NOT NULL, priced BOOLEAN NOT NULL,
            fast_mult DOUBLE NOT NULL, web DOUBLE NOT NULL,
            p_in DOUBLE, p_out DOUBLE, p_w5m DOUBLE, p_w1h DOUBLE, p_read DOUBLE,
            has_lc BOOLEAN NOT NULL, l_in DOUBLE, l_out DOUBLE, l_w5m DOUBLE, l_w1h DOUBLE, l_read DOUBLE
        )
        """
    )


def _calls_without_primary_key(con: duckdb.DuckDBPyConnection) -> None:
    """`calls` again, without its PRIMARY KEY, rows ordered by time.

    The key's ART index was a third of the index file (~37 bytes per call); the writer merges by
    key with MERGE INTO (a hash join over the key column), which needs no index, and a few-call
    append probes the key column directly. Time order makes the time-range scans of reports and
    windows skip row groups.
    """
    con.execute(f"CREATE TABLE calls_v2 (key BIGINT NOT NULL, {_CALL_COLUMNS_AFTER_KEY})")
    con.execute("INSERT INTO calls_v2 SELECT * FROM calls ORDER BY ts")
    con.execute("DROP TABLE calls")
    con.execute("ALTER TABLE calls_v2 RENAME TO calls")


def _price_periods(con: duckdb.DuckDBPyConnection) -> None:
    """Earlier prices of a model, each with the time it was in force, [since, until): `prices` keeps
    one row per model (the price now), so a reader that predates this table prices as before."""
    con.execute(
        """
        CREATE TABLE price_periods (
            model VARCHAR NOT NULL, matched VARCHAR, tier VARCHAR NOT NULL, priced BOOLEAN NOT NULL,
            fast_mult DOUBLE NOT NULL, web DOUBLE NOT NULL,
            p_in DOUBLE, p_out DOUBLE, p_w5m DOUBLE, p_w1h DOUBLE, p_read DOUBLE,
            has_lc BOOLEAN NOT NULL, l_in DOUBLE, l_out DOUBLE, l_w5m DOUBLE, l_w1h DOUBLE, l_read DOUBLE,
            since TIMESTAMP, until TIMESTAMP NOT NULL
        )
        """
    )


MIGRATIONS: list[Migration] = [
    ("001_calls", _calls),
    ("002_files", _files),
    ("003_events_and_rejects", _events_and_rejects),
    ("004_prices", _prices),
    ("005_calls_without_primary_key", _calls_without_primary_key),
    ("006_price_periods", _price_periods),
]


def check_known(done: set[str]) -> None:
    """IndexNewer when the index had migrations this version does not know: a newer cco wrote it,
    and this one would misread or overwrite what it added (a downgrade)."""
    unknown = sorted(done - {name for name, _ in MIGRATIONS})
    if unknown:
        raise IndexNewer(
            f"the index was written by a newer version of cco (schema step {unknown[-1]} is unknown here); "
            "upgrade cco to use it"
        )


def migrate(con: duckdb.DuckDBPyConnection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply pending migrations in order; returns the names applied."""
    con.execute("CREATE TABLE IF NOT EXISTS migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    done = {row[0] for row in con.execute("SELECT name FROM migrations").fetchall()}
    check_known(done)
    applied = []
    for name, step in migrations if migrations is not None else MIGRATIONS:
        if name in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            step(con)
            con.execute("INSERT INTO migrations VALUES (?, now())", [name])
            con.execute("COMMIT")
        except BaseException:
            from indexer.engine import rollback  # here: see the TYPE_CHECKING import above

            rollback(con)
            raise
        applied.append(name)
    return applied
