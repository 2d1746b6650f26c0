"""A big pass run by a writer process, its batches merged here in SQL: the service's catch-up.

The idea: in a serving process, every bit of Python a pass runs (unpickling the parsers' results,
building each batch, the commit's statements) holds the GIL that the event loop needs. Measured
beside a 1 GiB catch-up, a quiet cco process answered `/api/stats` with a p99 of 1.5 ms and the
catching-up one 2.7 ms (BENCHMARKS.md, session 14). So a pass big enough for parser processes runs
in a child process of its own, with its parsers: it reads, parses and builds each commit's batch
(calls merged, file states, rejects, events) as the in-process pass would, writes it as a few
Parquet files and names them over a pipe. This process then merges each batch in one
transaction of SQL (Index.commit_staged), which DuckDB runs without the GIL.

Offsets still commit with their rows: a batch's file states are merged in the same transaction as
its calls, so a batch not yet merged (the service stopped, the writer died) was never committed,
and its bytes are read again by the next pass.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

from indexer import ingest
from indexer.columns import TEXT_COLUMNS, CallColumns
from indexer.errors import CcoError, WorkerDied
from indexer.ingest import RESULT_POLL_S, ParserPool, Planned, Progress, Stopped, SyncReport
from indexer.merge import decoded, merged_columns
from indexer.runfile import left_behind
from indexer.store import Index, batch_tables, sql_text, state_arrays
from indexer.tail import FileState, Reads
from indexer.worker import Chunk, end_with

WRITER_DIED = (
    "the pass's writer process ended in the middle of the pass (killed, or out of memory?); "
    "what was committed is kept, the next pass reads the rest"
)
# A staged batch's calls as `calls` rows, each text column typed even where a batch has no text
# in it (a column of nulls only would otherwise be stored as a number).
_STAGED_CALLS = f"SELECT * REPLACE ({', '.join(f'{c}::VARCHAR AS {c}' for c in TEXT_COLUMNS)}) FROM ({{rows}})"
_STAGED_TYPES = {
    "events": "SELECT key::BIGINT AS key, ts_ms::BIGINT AS ts_ms, kind::VARCHAR AS kind, session::VARCHAR AS session, "
    "project::VARCHAR AS project, detail::VARCHAR AS detail FROM {rel}",
    "rereads": "SELECT path::VARCHAR AS path FROM {rel}",
    "gone": "SELECT path::VARCHAR AS path FROM {rel}",
    "rejects": 'SELECT path::VARCHAR AS path, "offset"::BIGINT AS "offset", reason::VARCHAR AS reason FROM {rel}',
    "files": "SELECT * FROM {rel}",
}


class PassFailed(CcoError):
    """The writer process failed (its own error output has the details)."""


def staged_sync(
    index: Index,
    todo: Planned | None,
    *,
    roots: Sequence[Path] = (),
    stopping: threading.Event | None = None,
    progress: Progress | None = None,
    helpers: Callable[[list[int]], None] | None = None,
    planned: Callable[[int, int], None] | None = None,
    tick: Callable[[], None] | None = None,
) -> SyncReport:
    """Read what `todo` plans into `index` as ingest.sync would, by a writer process (idle-class
    parsers) whose batches are merged here as they come.

    `todo` None: the writer plans the pass itself, over the whole of `roots`, against the file
    states this index holds (exported for it as Parquet): the walk of a big tree, ~0.1 s of Python
    (more beside a busy event loop), and the pickled plan then hold no GIL here. `planned`: called
    with the files and bytes it is to read, once it knows. `progress`: called with each file's
    bytes read, before the batch holding it is merged; `helpers`: called with the writer's and
    its parsers' pids once they run; `tick`: called at least every RESULT_POLL_S; `stopping`,
    when set, ends them and raises Stopped.
    """
    folder = Path(tempfile.mkdtemp(prefix=f"{index.path.name}.pass-{os.getpid()}-", dir=index.path.parent))
    states = None
    if todo is None:
        states = folder / "states.parquet"
        index.export_states(states)
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe(duplex=False)
    writer = context.Process(
        target=_write_batches,
        args=(theirs, todo, [str(r) for r in roots], states, folder, ingest.settings(), os.getpid()),
        name="cco-pass",
    )
    try:
        writer.start()
        theirs.close()
        while True:
            if stopping is not None and stopping.is_set():
                raise Stopped
            if tick is not None:
                tick()
            if not ours.poll(RESULT_POLL_S):
                continue
            try:
                kind, value = ours.recv()
            except EOFError:
                raise WorkerDied(WRITER_DIED) from None
            if kind == "read":
                for n in value:
                    if progress is not None:
                        progress(n)
            elif kind == "batch":
                index.commit_staged(value)
                for path in value.values():
                    path.unlink(missing_ok=True)
            elif kind == "helpers":
                if helpers is not None and writer.pid is not None:
                    helpers([writer.pid, *value])
            elif kind == "planned":
                if planned is not None:
                    planned(*value)
            elif kind == "done":
                report: SyncReport = value
                break
            elif kind == "died":
                raise WorkerDied(value)
            else:
                raise PassFailed(f"the pass's writer process failed: {value}")
    finally:
        if writer.pid is not None:
            writer.kill()  # its forked parsers end with it
            writer.join()
        ours.close()
        shutil.rmtree(folder, ignore_errors=True)
    _stop_resource_tracker()  # after a pass that ended well only: never in a shutdown's way
    return report


def _stop_resource_tracker() -> None:
    """End the process that multiprocessing's spawn starts beside this one, which would otherwise
    stay for the service's life (13 MB RSS). It tracks named semaphores: the writer's forked
    parsers name none, and the service, whose passes that need parsers all run in the writer,
    makes none itself (a process that does should not call this: what the tracker still holds
    would be unlinked under it). The next pass starts it again. Private API: where it is
    missing, the process stays."""
    tracker = getattr(resource_tracker, "_resource_tracker", None)
    stop = getattr(tracker, "_stop", None)
    if stop is not None:
        with contextlib.suppress(Exception):
            stop()


def remove_stale(db: Path) -> None:
    """Staging folders left by passes whose process is gone (killed mid-pass)."""
    for leftover in left_behind(db, "pass"):
        shutil.rmtree(leftover, ignore_errors=True)


# --- the writer process ----------------------------------------------------------------------------


def _write_batches(
    conn: Connection,
    todo: Planned | None,
    roots: list[str],
    states: Path | None,
    folder: Path,
    settings: dict[str, Any],
    parent: int,
) -> None:
    """The writer process: the pass of `todo` (None: of `roots`, planned here against the file
    `states` exported by the service), each commit's batch staged into `folder`.

    Messages, in order: ("planned", (files, bytes)) if it planned, ("helpers", parser pids), a
    ("batch", {"gone": Parquet file}) if transcripts were deleted, then ("read", [bytes of each
    file]) and ("batch", {table: Parquet file}) as sync goes (a file is counted before its batch
    comes), then ("done", SyncReport), or ("died" or "failed", a one-line message).
    """
    end_with(parent)  # never outlives the service
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service ends it
    ingest.use_settings(settings)
    ingest.COMMIT_BYTES, ingest.COMMIT_CALLS = ingest.STAGED_COMMIT_BYTES, ingest.STAGED_COMMIT_CALLS
    read: list[int] = []
    try:
        if todo is None:
            assert states is not None
            todo = ingest.plan_states(_read_states(states), [Path(r) for r in roots])
            conn.send(("planned", (len(todo.plans), todo.bytes)))
        # Forked parsers: this process has no other thread now (_read_states closed its DuckDB),
        # and they start with its modules.
        pool = ParserPool(idle=True, fork=True)
        try:
            chunks = ingest.start_reading(todo.plans, pool)
            conn.send(("helpers", pool.pids()))
            stager = _Stager(folder, conn, read)
            # sync only plans (the one use of a real Index) when not given `planned`.
            committer = cast("Index", stager)
            report = ingest.sync(committer, [], planned=todo, chunks=_counted(chunks, conn, read), progress=read.append)
        except BaseException:
            pool.terminate()
            raise
        pool.close()
        _report_read(conn, read)
        conn.send(("done", report))
    except WorkerDied as exc:
        conn.send(("died", str(exc)))
    except Exception as exc:
        traceback.print_exc()
        conn.send(("failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    finally:
        conn.close()
        os._exit(0)  # the parsers are ended with this process (their death signal)


def _read_states(path: Path) -> dict[str, FileState]:
    """The file states a service exported (Index.export_states), by path."""
    from indexer.engine import duckdb

    con = duckdb.connect(config={"threads": 1})
    try:
        rows = con.execute(f"SELECT * FROM read_parquet({sql_text(path)})").fetchall()
    finally:
        con.close()  # and its threads with it: the parsers are forked next
    return {r[0]: FileState(*r) for r in rows}


def _counted(chunks: Iterator[Chunk], conn: Connection, read: list[int]) -> Iterator[Chunk]:
    """`chunks`, each chunk's files reported once sync has counted them (and committed if due)."""
    for chunk in chunks:
        yield chunk
        _report_read(conn, read)


def _report_read(conn: Connection, read: list[int]) -> None:
    """Send the files counted since the last report (their bytes), and forget them."""
    if read:
        conn.send(("read", list(read)))
        read.clear()


class _Stager:
    """What sync commits to in the writer process: each commit's batch as Parquet files."""

    deferring = False

    def __init__(self, folder: Path, conn: Connection, read: list[int]) -> None:
        from indexer.engine import duckdb

        self.folder = folder
        self.conn = conn
        self.read = read  # files counted and not yet reported: reported before the batch holding them
        self.con = duckdb.connect(config={"threads": 1})
        self.batches = 0

    def mark_gone(self, paths: Sequence[str]) -> None:
        """Staged as a batch of its own, which sync makes before any other."""
        import numpy as np

        if paths:
            self.batches += 1
            arrays = {"path": np.array(paths, dtype=object)}
            gone = self._stage("gone", arrays, _STAGED_TYPES["gone"].format(rel="staged_gone"))
            self.conn.send(("batch", {"gone": gone}))

    def commit(self, reads: Sequence[Reads], columns: Sequence[CallColumns] = ()) -> None:
        self.batches += 1
        rows = [c for r in reads for c in r.calls]
        calls = merged_columns(CallColumns.concat([*columns, CallColumns.from_rows(rows)]))
        tables = batch_tables(reads)
        if any(r.states for r in reads):
            tables["files"] = state_arrays(reads)
        parts: dict[str, Path] = {}
        if len(calls):
            rows_sql = _STAGED_CALLS.format(rows=decoded("staged_calls", codes=False))
            parts["calls"] = self._stage("calls", calls.texts(), rows_sql)
        for name, arrays in tables.items():
            parts[name] = self._stage(name, arrays, _STAGED_TYPES[name].format(rel=f"staged_{name}"))
        _report_read(self.conn, self.read)
        self.conn.send(("batch", parts))

    def _stage(self, name: str, arrays: dict[str, Any], select: str) -> Path:
        path = self.folder / f"{self.batches}-{name}.parquet"
        self.con.register(f"staged_{name}", arrays)
        try:
            self.con.execute(f"COPY ({select}) TO {sql_text(path)} (FORMAT parquet)")
        finally:
            self.con.unregister(f"staged_{name}")
        return path
