"""`cco index rebuild`: a fresh index from the transcripts, plus the history only the old index has.

The idea: build into a temporary file beside the index, copy in what the old index still knows
and the transcripts no longer hold (files deleted by Claude Code's cleanup, files rewritten
shorter), merging by call identity with the same rules as ingest, then atomically rename the new
file over the old one. A crash at any point leaves the old index untouched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb

from indexer.errors import CcoError, IndexLocked
from indexer.ingest import Progress, SyncReport, sync
from indexer.store import Index

_SALVAGE_CALLS = """
INSERT INTO calls SELECT * FROM old.calls
ON CONFLICT (key) DO UPDATE SET
    ts = least(calls.ts, excluded.ts),
    input_tokens = greatest(calls.input_tokens, excluded.input_tokens),
    output_tokens = greatest(calls.output_tokens, excluded.output_tokens),
    cache_5m_tokens = greatest(calls.cache_5m_tokens, excluded.cache_5m_tokens),
    cache_1h_tokens = greatest(calls.cache_1h_tokens, excluded.cache_1h_tokens),
    cache_read_tokens = greatest(calls.cache_read_tokens, excluded.cache_read_tokens),
    web_searches = greatest(calls.web_searches, excluded.web_searches),
    cost_usd = greatest(calls.cost_usd, excluded.cost_usd),
    latency_ms = least(calls.latency_ms, excluded.latency_ms),
    failed = calls.failed OR excluded.failed,
    fast = calls.fast OR excluded.fast,
    error = coalesce(calls.error, excluded.error)
"""


@dataclass
class RebuildReport:
    sync: SyncReport
    salvaged_calls: int
    salvage_error: str | None


def _check_old(db: Path) -> str | None:
    """Migrate the old index so its columns match; the reason it cannot be used, if any.

    A lock is not such a reason: replacing an index a running service holds would lose its writes.
    """
    if not db.exists():
        return None
    try:
        Index(db).close()
    except IndexLocked:
        raise
    except CcoError as exc:
        return str(exc)
    return None


def _salvage(new: Index, old_path: Path) -> tuple[int, str | None]:
    """Copy into `new` what only the old index holds; (calls added, reason it could not)."""
    con = new.con
    before = (con.execute("SELECT count(*) FROM calls").fetchone() or (0,))[0]
    try:
        quoted = str(old_path).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS old (READ_ONLY)")
    except duckdb.Error as exc:
        return 0, str(exc).splitlines()[0]
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(_SALVAGE_CALLS)
        con.execute(
            "UPDATE calls SET replay = EXISTS (SELECT 1 FROM calls AS main WHERE main.msg_hash = calls.msg_hash "
            "AND NOT main.sidechain AND main.key <> calls.key) WHERE sidechain AND msg_hash <> 0"
        )
        con.execute("INSERT OR IGNORE INTO events SELECT * FROM old.events")
        # Files the transcripts no longer have stay listed, as gone, with their line counts.
        con.execute(
            "INSERT OR IGNORE INTO files SELECT * REPLACE (true AS gone) FROM old.files "
            "WHERE path NOT IN (SELECT path FROM files)"
        )
        con.execute("INSERT INTO rejects SELECT * FROM old.rejects WHERE path IN (SELECT path FROM files WHERE gone)")
        con.execute("COMMIT")
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        return 0, str(exc).splitlines()[0]
    finally:
        con.execute("DETACH old")
    after = (con.execute("SELECT count(*) FROM calls").fetchone() or (0,))[0]
    return after - before, None


def rebuild(db: Path, roots: list[Path], progress: Progress | None = None, workers: int | None = None) -> RebuildReport:
    """Rebuild `db` from `roots`, keeping salvageable history; replaces `db` atomically."""
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f"{db.name}.rebuild-{os.getpid()}")
    for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
        stale.unlink(missing_ok=True)
    old_error = _check_old(db)
    try:
        new = Index(tmp)
        try:
            report = sync(new, roots, progress=progress, workers=workers)
            salvaged, error = (0, old_error) if old_error or not db.exists() else _salvage(new, db)
        finally:
            new.close()
        # The old file was checkpointed by _check_old; a leftover log would be replayed into the new one.
        Path(str(db) + ".wal").unlink(missing_ok=True)
        os.replace(tmp, db)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return RebuildReport(report, salvaged, error)
