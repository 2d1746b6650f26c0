"""`cco index status`: totals over the whole index, counted by the shared call rules.

The idea: the `priced_calls` view (replays excluded, cost per call) is the one definition of "a call" that
status, the service and reports all read, so their totals agree by construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from indexer.engine import duckdb
from indexer.metrics import iso_utc
from indexer.pricing import PriceBook, apply_prices, cost_expr, unpriced_models
from indexer.reports import money
from indexer.store import Index
from schemas.status import IndexStatus

REJECTS_DEFAULT, REJECTS_MAX = 50, 10_000


def rejected_lines(con: duckdb.DuckDBPyConnection, limit: int = REJECTS_DEFAULT) -> dict[str, Any]:
    """`cco index rejects`: how many lines were rejected, and the first `limit` of them in file order
    (path, byte offset, reason: where to look, never what the line said)."""
    total = (con.execute("SELECT count(*) FROM rejects").fetchone() or (0,))[0]
    rows = con.execute('SELECT path, "offset", reason FROM rejects ORDER BY path, "offset" LIMIT ?', [limit]).fetchall()
    return {"total": total, "rejects": [{"path": p, "offset": o, "reason": r} for p, o, r in rows]}


def index_status(index: Index, book: PriceBook, mode: str = "auto", *, apply: bool = True) -> IndexStatus:
    """The totals of `index`; with `apply`, its prices made `book`'s first (a read-only index must
    already hold them: pricing.ready_to_read)."""
    con = index.con
    if apply:
        apply_prices(con, book, all_models=False)
    total_cost = (con.execute(f"SELECT coalesce(sum({cost_expr(mode)}), 0) FROM priced_calls").fetchone() or (0,))[0]
    calls, failed, inp, out, cache_w, cache_r = con.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE failed),
               coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),
               coalesce(sum(cache_5m_tokens + cache_1h_tokens), 0), coalesce(sum(cache_read_tokens), 0)
        FROM priced_calls
        """
    ).fetchone() or (0, 0, 0, 0, 0, 0)
    live, gone, lines, indexed, last = con.execute(
        """
        SELECT count(*) FILTER (WHERE NOT gone), count(*) FILTER (WHERE gone),
               coalesce(sum(lines), 0), coalesce(sum("offset"), 0), max(ingested_at)
        FROM files
        """
    ).fetchone() or (0, 0, 0, 0, None)
    rejected = (con.execute("SELECT count(*) FROM rejects").fetchone() or (0,))[0]
    # The file and its write-ahead log: a running service checkpoints rarely, so between checkpoints
    # its new rows are in the log (the file alone would look almost empty).
    size = sum(p.stat().st_size for p in (index.path, Path(f"{index.path}.wal")) if p.exists())
    return IndexStatus(
        db=str(index.path.absolute()),
        files_live=live,
        files_gone=gone,
        calls=calls,
        failed_calls=failed,
        input_tokens=int(inp),
        output_tokens=int(out),
        cache_creation_tokens=int(cache_w),
        cache_read_tokens=int(cache_r),
        total_tokens=int(inp + out + cache_w + cache_r),
        total_cost=money(total_cost),  # as reports print costs, so the totals compare equal
        rejected_lines=rejected,
        lines=int(lines),
        bytes_indexed=int(indexed),
        db_size=size,
        last_ingest=iso_utc(last),  # as health prints it
        unpriced_models=unpriced_models(con),
    )
