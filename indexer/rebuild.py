"""`cco index rebuild`: a fresh index from the transcripts, plus the history only the old index has.

The idea: build into a temporary file beside the index, copy in what the old index still knows
and the transcripts no longer hold (files deleted by Claude Code's cleanup, files rewritten),
merging by call identity with the same rules as ingest, then atomically rename the new file over
the old one. A crash at any point leaves the old index untouched.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from indexer.engine import duckdb, rollback
from indexer.errors import CcoError, IndexDenied, IndexLocked, IndexNewer, WorkerDied
from indexer.ingest import Planned, Progress, Stopped, SyncReport, plan_fresh, start_reading, sync
from indexer.memory import drop_code_pages
from indexer.merge import EVENT_UPSERT, MARK_REPLAYS, MERGE_SET, changes
from indexer.parse import MAX_COST_USD, MAX_COUNT
from indexer.pricing import PriceBook, apply_prices
from indexer.runfile import left_behind
from indexer.store import REBUILD_HINT, Index, sql_text
from indexer.worker import Chunk

# Calls only the old index has go in as they are: their lines are gone from the transcripts
# (deleted, or rewritten in place, even into a file as long as before: the index cannot tell which
# lines a file held before it was rewritten). A call both have is merged only where the merge
# rules would take something from the old row (an earlier first line, a larger count, a flag):
# its lines may have come from several files (a fork's copy, a sidechain copy) of which one is
# gone. A row whose counts or time this version would reject (see parse.py; an older version took
# such lines) is never copied, and a costUSD it would not use is read as none.
_OLD = f"""(SELECT * REPLACE (CASE WHEN cost_usd BETWEEN 0 AND {MAX_COST_USD} THEN cost_usd END AS cost_usd)
    FROM old.calls)"""
_VALID = f"""o.ts >= TIMESTAMP '2000-01-01' AND o.ts < TIMESTAMP '2100-01-01'
    AND {" AND ".join(f"o.{c} BETWEEN 0 AND {MAX_COUNT}" for c in (
        "input_tokens", "output_tokens", "cache_5m_tokens", "cache_1h_tokens", "cache_read_tokens", "web_searches"
    ))}"""  # fmt: skip
_SALVAGE_MISSING = f"INSERT INTO calls SELECT * FROM {_OLD} AS o ANTI JOIN calls USING (key) WHERE {_VALID}"
_SALVAGE_MERGE = f"""
MERGE INTO calls USING (
    SELECT o.* FROM {_OLD} AS o JOIN calls AS c ON o.key = c.key WHERE ({changes("o", "c")}) AND {_VALID}
) AS excluded ON calls.key = excluded.key
WHEN MATCHED THEN UPDATE SET {MERGE_SET}
"""


@dataclass
class RebuildReport:
    sync: SyncReport
    salvaged_calls: int
    salvage_error: str | None
    # When salvage failed: how many files the old index knew that are not on disk (None: unknown).
    unsalvaged_files: int | None = None
    # Why the old index could not be opened for writing (damaged), even if its history was read.
    old_damage: str | None = None


def _hold_old(db: Path) -> tuple[Index | None, str | None]:
    """The old index opened for writing (migrated, so its columns match) and held until it has been
    replaced: no other process can write to it meanwhile (writes a rebuild would drop), nor read a
    file about to go. (None, why) when it cannot be opened: damaged (then it is read as it can be).

    A lock is not such a reason: IndexLocked goes to the caller (replacing an index another
    process holds would lose its writes), nor are permissions (IndexDenied: a file the user made
    read-only is not replaced behind their back), nor a newer cco's schema (IndexNewer).
    """
    if not db.exists():
        return None, None
    try:
        return Index(db), None
    except (IndexLocked, IndexDenied, IndexNewer):
        raise
    except CcoError as exc:
        return None, str(exc).removesuffix(REBUILD_HINT)  # we are rebuilding


def _salvage(new: Index, old_path: Path, old_error: str | None) -> tuple[int, str | None, int | None]:
    """Copy into `new` what only the (damaged) old index holds, attached read-only; (calls added,
    what could not be, files lost). See _copy_history."""
    con = new.con
    try:
        con.execute(f"ATTACH {sql_text(old_path)} AS old (READ_ONLY)")
    except duckdb.Error as exc:
        return 0, old_error or str(exc).splitlines()[0], None
    try:
        return _copy_history(con, "old", old_error)
    finally:
        new.forget_file_states()
        con.execute("DETACH old")


def _salvage_held(held: Index, new_path: Path, book: PriceBook | None) -> tuple[int, str | None, int | None]:
    """Copy into the new index at `new_path` (closed) what only the `held` old index holds, and
    price it with `book`, from the held connection itself (DuckDB lets a process open a file once)."""
    con = held.con
    (old,) = con.execute("SELECT current_database()").fetchone() or ("",)
    con.execute(f"ATTACH {sql_text(new_path)} AS rebuilt")
    con.execute("USE rebuilt")  # unqualified names: the new index, as in the SQL above
    try:
        done = _copy_history(con, old, None)
        if book is not None:
            apply_prices(con, book)
        return done
    finally:
        con.execute(f'USE "{old}"')
        con.execute("DETACH rebuilt")


def _copy_history(
    con: duckdb.DuckDBPyConnection, old: str, old_error: str | None
) -> tuple[int, str | None, int | None]:
    """Run the salvage steps on `con`, whose unqualified tables are the new index and catalog `old`
    the old one: (calls added, what could not be copied, files lost).

    Table by table, each in its own transaction: a damaged old index often still reads, wholly or
    in part (a damaged block holds one table's data), and every call that reads is kept. Files
    lost: when the calls could not be read, how many files the old index knew whose history the
    transcripts no longer hold whole.
    """
    before = (con.execute("SELECT count(*) FROM calls").fetchone() or (0,))[0]
    problems: list[str] = []
    for table, statements in _SALVAGE_STEPS:
        con.execute("BEGIN TRANSACTION")
        try:
            for sql in statements:
                con.execute(_from_old(sql, old))
            con.execute("COMMIT")
        except duckdb.Error as exc:
            rollback(con)
            problems.append(f"{table}: {str(exc).splitlines()[0]}")
    lost = _files_not_on_disk(con, old) if problems and problems[0].startswith("calls:") else None
    after = (con.execute("SELECT count(*) FROM calls").fetchone() or (0,))[0]
    if not problems:
        return after - before, None, None
    return after - before, "; ".join(([old_error] if old_error else []) + problems), lost


def _from_old(sql: str, old: str) -> str:
    """`sql` with its `old.` tables in catalog `old`."""
    return re.sub(r"\bold\.", f'"{old}".', sql)


# What salvage copies, table by table (see _salvage); files before rejects, which follow gone files.
_SALVAGE_STEPS: list[tuple[str, list[str]]] = [
    (
        "calls",
        [_SALVAGE_MISSING, _SALVAGE_MERGE, MARK_REPLAYS.format(msg_hashes="SELECT msg_hash FROM old.calls")],
    ),
    ("events", ["INSERT INTO events SELECT * FROM old.events" + EVENT_UPSERT]),
    # Files the transcripts no longer have stay listed, as gone, with their line counts.
    (
        "files",
        [
            "INSERT OR IGNORE INTO files SELECT * REPLACE (true AS gone) FROM old.files "
            "WHERE path NOT IN (SELECT path FROM files)"
        ],
    ),
    ("rejects", ["INSERT INTO rejects SELECT * FROM old.rejects WHERE path IN (SELECT path FROM files WHERE gone)"]),
]


def _files_not_on_disk(con: duckdb.DuckDBPyConnection, old: str) -> int | None:
    """Files the (damaged) old index lists whose history the transcripts no longer hold whole
    (gone, or now shorter than what was read), if it can say."""
    try:
        row = con.execute(
            _from_old(
                """
                SELECT count(*) FROM old.files AS o LEFT JOIN files AS n ON n.path = o.path AND NOT n.gone
                WHERE o.gone OR n.path IS NULL OR o."offset" > n."offset"
                """,
                old,
            )
        ).fetchone()
    except duckdb.Error:
        return None
    return int(row[0]) if row else None


def _remove_stale(db: Path) -> None:
    """Temporary files of rebuilds that were killed (their process is gone), and our own."""
    for leftover in left_behind(db, "rebuild", own=True):
        leftover.unlink(missing_ok=True)


def rebuild(
    db: Path,
    roots: list[Path],
    progress: Progress | None = None,
    workers: int | None = None,
    book: PriceBook | None = None,
    stopping: threading.Event | None = None,
    started: tuple[Planned, Iterator[Chunk]] | None = None,
) -> RebuildReport:
    """Rebuild `db` from `roots`, keeping salvageable history; replaces `db` atomically.

    With `book`, the new index's `prices` rows are written too, so the first command to read it
    finds nothing to write (a report can then open it read-only). `started`: the plan of `roots`
    and its reads, already under way in the caller's parser processes (ingest.plan_and_start, as
    `cco index rebuild` does before it opens anything); else the pass plans and reads itself,
    in processes of its own (`workers`) if it is big. `stopping`: when set (Ctrl-C), the rebuild
    raises Stopped at its next wait, between commits or before the old index is touched,
    leaving it as it was.
    """
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f"{db.name}.rebuild-{os.getpid()}")
    _remove_stale(db)
    if started is None:
        todo = plan_fresh(roots)
        started = todo, start_reading(todo.plans, workers=workers, stopping=stopping)
    todo, chunks = started
    held, old_error = _hold_old(db)
    try:
        new = Index(tmp)
        # The engine's code that only ran to open it (its catalog of built-in functions) leaves the
        # resident set, as the service's does: the rebuild's peak RSS 141 -> 130 MB (1 GiB tree).
        drop_code_pages()
        try:
            try:
                with new.deferred_calls():
                    report = sync(new, roots, progress=progress, stopping=stopping, planned=todo, chunks=chunks)
            except WorkerDied:
                raise WorkerDied.in_rebuild(db) from None
            if stopping is not None and stopping.is_set():
                raise Stopped  # before anything of the old index is read or replaced
            salvaged, error, lost = 0, None, None
            if held is None and db.exists():  # damaged: read as it can be
                salvaged, error, lost = _salvage(new, db, old_error)
            if book is not None and held is None:
                apply_prices(new.con, book)
        finally:
            new.close()
        if held is not None:
            salvaged, error, lost = _salvage_held(held, tmp, book)
            held.con.execute("CHECKPOINT")  # the old file's own log is empty before it goes
        else:
            # A damaged old file may have left a log; it would be replayed into the new one.
            Path(str(db) + ".wal").unlink(missing_ok=True)
        os.replace(tmp, db)
    finally:
        if held is not None:
            held.con.close()  # only now: until the new file is in place, nobody else writes the old one
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return RebuildReport(report, salvaged, error, lost, old_error)
