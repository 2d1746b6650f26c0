"""The DuckDB index: open it safely, and commit rows together with the file offsets they came from.

The idea: one `commit` is one transaction holding a batch of files' new rows AND their new
offsets, so a crash either keeps both or neither; re-reading after a crash can then neither skip
nor repeat a line. Rows go in as numpy column arrays (no per-row Python) and are merged by call
identity, in one MERGE INTO (a hash join: the table needs no key index), with order-independent
rules (usage maxima, earliest timestamp), so reading the same call twice, from a fork copy or a
rewritten file, changes nothing. A few-call append takes a probe-and-insert path instead.
Rows are never deleted: the index outlives Claude Code's 30-day cleanup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from indexer.columns import CALL_COLUMNS, CallColumns, column_arrays
from indexer.engine import duckdb, transaction
from indexer.errors import IndexCorrupt, IndexDenied, IndexLocked, IndexNewer
from indexer.merge import (
    EVENT_UPSERT,
    MARK_REPLAYS,
    MERGE_CALLS,
    MERGED_COLUMNS,
    decoded,
    merge_batch,
    merge_calls_from,
    merged_columns,
    replays,
)
from indexer.migrations import migrate
from indexer.parse import merge_calls
from indexer.pricing import PRICED_VIEW, apply_prices, ready_to_read
from indexer.runfile import command_line
from indexer.tail import STATE_FIELDS, FileState, Reads
from schemas.records import CallRow, EventRow

if TYPE_CHECKING:
    from indexer.pricing import PriceBook

T = TypeVar("T")

# Batches up to this many calls (a running service's appends) skip the set-based upsert: the keys
# are probed, existing calls merged in Python with parse.merge_calls (the same rules) and only the
# columns that change are updated by key, new calls plain-INSERTed. `ON CONFLICT DO UPDATE` with
# 19 SET expressions costs 10-16 ms even for one row.
SMALL_BATCH = 64
SMALL_UPDATES = 4  # ... and at most this many UPDATE statements (~2-3 ms each) for calls or files
_SIDECHAIN = CALL_COLUMNS.index("sidechain")
# Stored calls by message.id hash: the batch's own calls (same message.id, same hash) and, in the
# same scan, any other call sharing a message.id with it (a replay, or the original of one).
_SELECT_CALL = (
    "SELECT key, msg_hash, epoch_ms(ts), model, session, project, branch, version, agent_id, sidechain, failed, "
    "input_tokens, output_tokens, cache_5m_tokens, cache_1h_tokens, cache_read_tokens, web_searches, fast, "
    "cost_usd, latency_ms, error, replay FROM calls WHERE {column} IN ({values})"
)
_INSERT_CALL_ROW = "(?, ?, make_timestamp(? * 1000), ?, ?, ?, ?, ?, ?, ?, ?, false, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# The stored fields of a FileState besides its path (`gone` and `ingested_at` are set by the store).
_FILE_COLUMNS = tuple(f'"{n}"' for n in STATE_FIELDS)  # "offset" is an SQL keyword
# Every stored file state, as FileState(*row) reads it.
FILE_STATES = f"SELECT path, {', '.join(_FILE_COLUMNS)}, gone FROM files"
NO_USER = -1  # last_user_ms of a file state in column arrays: none yet (a time is 2000-2100)
# Each statement of a commit that reads a batch's table, `{rel}`: registered arrays, or a staged
# batch's Parquet file (staged.py).
_INSERT_FILES = f"""
INSERT INTO files
SELECT path, device, inode, fp_len, fp_hash, size, mtime_ns, "offset", tail_hash, nullif(last_user_ms, {NO_USER}),
       lines, false, now()::TIMESTAMP
FROM {{rel}}
"""
_INSERT_EVENTS = (
    "INSERT INTO events SELECT key, make_timestamp(ts_ms * 1000), kind, session, project, detail FROM {rel}"
    + EVENT_UPSERT
)
_MARK_GONE = "UPDATE files SET gone = true WHERE path IN (SELECT path FROM {rel})"
_DELETE_REREAD_REJECTS = "DELETE FROM rejects WHERE path IN (SELECT path FROM {rel})"
_INSERT_REJECTS = 'INSERT INTO rejects SELECT path, "offset", reason FROM {rel}'
_FILE_UPSERT = """
ON CONFLICT (path) DO UPDATE SET
    device = excluded.device, inode = excluded.inode, fp_len = excluded.fp_len, fp_hash = excluded.fp_hash,
    size = excluded.size, mtime_ns = excluded.mtime_ns, "offset" = excluded."offset", tail_hash = excluded.tail_hash,
    last_user_ms = excluded.last_user_ms, lines = excluded.lines, gone = false, ingested_at = excluded.ingested_at
"""


def state_arrays(reads: Sequence[Reads]) -> dict[str, Any]:
    """The new file states of `reads` as a `files` batch (_INSERT_FILES)."""
    return _state_arrays([row for r in reads for row in r.states])


def _state_arrays(rows: Sequence[tuple[Any, ...]]) -> dict[str, Any]:
    """`files` rows (tail.state_row) as typed column arrays: DuckDB copies numbers from them without
    converting a Python object per value (and without the GIL); only paths stay objects."""
    import numpy as np

    cols = list(zip(*rows, strict=True))
    arrays: dict[str, Any] = {"path": np.array(cols[0], dtype=object)}
    for name, values in zip(STATE_FIELDS, cols[1:], strict=True):
        if name == "last_user_ms":
            values = tuple([NO_USER if v is None else v for v in values])
        arrays[name] = np.array(values, dtype="uint64" if name in ("device", "inode") else "int64")
    return arrays


REBUILD_HINT = "; run `cco index rebuild`"
_LOCK_PID = re.compile(r"PID (\d+)")
_LOCK_EXE = re.compile(r"held in (.+?) \(PID")
_CMD_LIMIT = 120


def _holder(text: str) -> str:
    """Who holds the lock, from DuckDB's message: pid plus its command line when /proc says."""
    m = _LOCK_PID.search(text)
    if not m:
        return "another process"
    pid = m.group(1)
    raw = command_line(int(pid)) or b""
    cmd = " ".join(raw.replace(b"\0", b" ").decode(errors="replace").split())  # one line, whatever it held
    if not cmd:
        held = _LOCK_EXE.search(text)
        cmd = held.group(1) if held else ""
    if len(cmd) > _CMD_LIMIT:
        cmd = cmd[: _CMD_LIMIT - 1] + "…"
    return f"process {pid} ({cmd})" if cmd else f"process {pid}"


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def is_damage(exc: duckdb.Error) -> bool:
    """Whether a DuckDB error says the file is damaged (rather than a bug in a query)."""
    damage = (duckdb.SerializationException, duckdb.InternalException, duckdb.FatalException)
    return type(exc) is duckdb.Error or isinstance(exc, damage) or "corrupt" in str(exc).lower()


def damaged(path: Path, exc: BaseException) -> IndexCorrupt | IndexDenied:
    """The error for a file DuckDB cannot use: damaged, or not ours to read or write (which a
    rebuild would not mend: the message says so instead)."""
    if "permission denied" in str(exc).lower():
        return IndexDenied(f"cannot use index {path}: {_first_line(exc)}")
    return IndexCorrupt(f"index {path} is damaged ({_first_line(exc)}){REBUILD_HINT}")


def open_connection(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, turning lock and corruption failures into one-line errors.

    With one DuckDB thread: the statements here are small (an append's probe, insert and offset;
    a service's snapshot queries) or run beside parser processes that already fill the cores, and
    a thread pool costs more CPU per statement than it saves, plus buffers per thread.
    """
    try:
        return duckdb.connect(str(path), read_only=read_only, config={"threads": 1})
    except duckdb.Error as exc:
        text = str(exc)
        if not isinstance(exc, duckdb.IOException) or "permission denied" in text.lower():
            raise damaged(path, exc) from None
        if "lock" in text.lower():
            m = _LOCK_PID.search(text)
            raise IndexLocked(
                f"index {path} is in use by {_holder(text)}; stop it or wait for it to finish",
                int(m.group(1)) if m else None,
                str(path),
            ) from None
        raise IndexCorrupt(f"cannot open index {path}: {_first_line(exc)}{REBUILD_HINT}") from None


class Index:
    """The index file, opened for writing (one process at a time) or reading."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        self.con = open_connection(path, read_only)
        self._deferred: list[CallColumns] | None = None  # calls set aside by deferred_calls()
        self._last_reads: list[Reads] = []  # deferred_calls(): the last commit's, written with the calls
        # The `files` table as far as read, kept current by this (the only) writer after each commit:
        # planning an append then costs no query. `_all_states`: every row has been read.
        self._states: dict[str, FileState] = {}
        self._all_states = False
        if not read_only:
            try:
                migrate(self.con)
                self.con.execute(PRICED_VIEW)
            except duckdb.Error as exc:
                self.con.close()
                raise damaged(path, exc) from None
            except IndexNewer as exc:
                self.con.close()
                raise IndexNewer(f"index {path}: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.con.execute("CHECKPOINT")
        self.con.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.close()
        # A file whose header opens but whose blocks are damaged fails mid-query: say so in one line.
        if isinstance(exc, duckdb.Error) and is_damage(exc):
            raise damaged(self.path, exc) from None

    def file_states(self, paths: Iterable[str] | None = None) -> dict[str, FileState]:
        """Stored states of every file, or of `paths` only."""
        sql = FILE_STATES
        if paths is None:
            if not self._all_states:
                self._states = {r[0]: FileState(*r) for r in self.con.execute(sql).fetchall()}
                self._all_states = True
            return dict(self._states)
        wanted = list(paths)
        missing = [] if self._all_states else [p for p in wanted if p not in self._states]
        if len(missing) > SMALL_BATCH:
            rows = self.con.execute(sql + " WHERE list_contains(?, path)", [missing]).fetchall()
        elif missing:  # a few paths: `IN` with parameters uses the path index
            rows = self.con.execute(
                sql + " WHERE path IN (" + ", ".join(["?"] * len(missing)) + ")", missing
            ).fetchall()
        else:
            rows = []
        self._states.update((r[0], FileState(*r)) for r in rows)
        return {p: self._states[p] for p in wanted if p in self._states}

    def forget_file_states(self) -> None:
        """Drop the cached `files` rows: for whoever changes that table other than by commit / mark_gone."""
        self._states, self._all_states = {}, False

    def file_count(self) -> int:
        """How many files the index knows (gone ones too)."""
        return int((self.con.execute("SELECT count(*) FROM files").fetchone() or (0,))[0])

    def export_states(self, path: Path) -> None:
        """Every stored file state (FILE_STATES) into a Parquet file, for a pass planned by
        another process (staged.py); DuckDB writes it without the GIL."""
        self.con.execute(f"COPY ({FILE_STATES}) TO {sql_text(path)} (FORMAT parquet)")

    def mark_gone(self, paths: Iterable[str]) -> None:
        paths = list(paths)
        if paths:  # (a list parameter: no numpy, which a serving process otherwise seldom loads)
            self.con.execute(_MARK_GONE.format(rel="(SELECT unnest(?::VARCHAR[]) AS path)"), [paths])
            for p in paths:
                if p in self._states:
                    self._states[p] = dataclasses.replace(self._states[p], gone=True)

    @contextlib.contextmanager
    def deferred_calls(self) -> Iterator[None]:
        """Within the block, commits set their calls aside; they are merged into `calls` at its end.

        Only for a rebuild into a fresh file, which a crash discards anyway (offsets commit before
        their calls here). `calls` is then written once instead of rewritten by every batch: less
        CPU, and no space left behind in the file by rewritten row groups. The rows wait as
        numeric arrays (about 130 bytes a call).
        """
        self._deferred = []
        # Each commit checkpoints, its rows written once, into the file (not into the log first and
        # the file at close): a fresh file has no readers a checkpoint would keep waiting.
        self.con.execute("SET checkpoint_threshold = '0MB'")
        try:
            yield
            parts, self._deferred = self._deferred, None
            fresh = self.con.execute("SELECT 1 FROM calls LIMIT 1").fetchone() is None
            with transaction(self.con):
                self._write_tables(self._last_reads, fresh=True)
                if fresh:
                    self._insert_in_time_order(parts)
                else:
                    self._merge_batch(CallColumns.concat(parts))
        finally:
            self._deferred, self._last_reads = None, []
            with contextlib.suppress(duckdb.Error):  # (the error that brought us here, if any, matters)
                self.con.execute("RESET checkpoint_threshold")

    @property
    def deferring(self) -> bool:
        """Whether commits set their calls aside (inside deferred_calls: a rebuild's fresh file)."""
        return self._deferred is not None

    def commit(self, reads: Sequence[Reads], columns: Sequence[CallColumns] = ()) -> None:
        """Store rows and new file states of `reads`, plus calls already in `columns`, in one transaction.

        In deferred_calls, the calls are set aside, and the rest waits for the next commit, which
        writes it first, in a transaction of its own; the last commit's goes in with the calls, in
        the block's one last transaction (a checkpoint there: 1 GiB rebuild, 20 ms less).
        """
        rows = [c for r in reads for c in r.calls]
        con = self.con
        if self._deferred is not None:
            self._write_calls(rows, columns)
            if self._last_reads:
                with transaction(con):
                    self._write_tables(self._last_reads, fresh=True)
            self._last_reads = list(reads)
            self.forget_file_states()  # a rebuild plans once: keeping them would only hold memory
            return
        with transaction(con):
            self._write_calls(rows, columns)
            self._write_tables(reads, fresh=False)
        self._states.update((state.path, state) for r in reads for state in r.file_states())

    def _write_tables(self, reads: Sequence[Reads], fresh: bool) -> None:
        """The tables of `reads` but calls, into the transaction under way. `fresh`: a rebuild's new
        file, which has no rejects before its files' first reads and meets each path once."""
        for name, arrays in batch_tables(reads, rereads=not fresh).items():
            self.con.register(f"batch_{name}", arrays)
            try:
                self.con.execute(_TABLE_SQL[name].format(rel=f"batch_{name}"))
            finally:
                self.con.unregister(f"batch_{name}")
        self._store_states(reads, fresh)

    def commit_staged(self, parts: dict[str, Path]) -> None:
        """Store a batch that a pass's writer process staged (staged.py), in one transaction: each
        part is a Parquet file of one table's rows, `calls` merged already within the batch."""
        rel = {name: f"read_parquet({sql_text(path)})" for name, path in parts.items()}
        con = self.con
        with transaction(con):
            if "gone" in rel:  # the transcripts the writer's plan found deleted (its first batch)
                con.execute(_MARK_GONE.format(rel=rel["gone"]))
            if "calls" in rel:
                con.execute(merge_calls_from(f"SELECT * FROM {rel['calls']}"))
                con.execute(MARK_REPLAYS.format(msg_hashes=f"SELECT msg_hash FROM {rel['calls']}"))
            for name in _TABLE_SQL:
                if name in rel:
                    con.execute(_TABLE_SQL[name].format(rel=rel[name]))
        self.forget_file_states()  # planning reads what it needs again

    def _write_calls(self, rows: list[CallRow], columns: Sequence[CallColumns]) -> None:
        """A commit's calls: set aside (deferred_calls), or a few by probe and insert, or one SQL merge."""
        if not columns and not self.deferring and len(rows) <= 4 * SMALL_BATCH:
            few = merge_batch(rows)
            if not few or (len(few) <= SMALL_BATCH and self._write_few_calls(few)):
                return
            rows = few
        if self._deferred is not None:  # concatenated once, at the end
            self._deferred += [*columns, CallColumns.from_rows(rows)] if rows else columns
        else:
            self._merge_batch(CallColumns.concat([*columns, CallColumns.from_rows(rows)]))

    def _merge_batch(self, batch: CallColumns) -> None:
        """Merge `batch` into `calls`."""
        if not len(batch):
            return
        batch = merged_columns(batch)
        self.con.register("batch_calls", batch.arrays)
        try:
            self.con.execute(MERGE_CALLS, [batch.vocab])
            self.con.execute(MARK_REPLAYS.format(msg_hashes="SELECT msg_hash FROM batch_calls"))
        finally:
            self.con.unregister("batch_calls")

    def _insert_in_time_order(self, parts: list[CallColumns]) -> None:
        """Insert the calls of `parts` (emptied) into an empty `calls`, time-ordered.

        The merging, the ordering and the replay flags (merge.replays) are numeric (numpy, on the
        batch arrays: no SQL hash table of every line, and no UPDATE of the rows just written,
        which left a 1 GiB tree's index 4% larger: 7.09 against 6.83 MB), and
        the text columns go in as strings (CallColumns.texts: a rebuild has no event loop that
        DuckDB's GIL-holding reads would stall), in the rows' order (no SQL sort).
        One insert, in deferred_calls' last transaction, whose commit checkpoints (checkpoint_threshold
        0), so the rows go straight into the file. Inserted in 20,000-call slices, each committed on its own, they
        went to the log first and into the file at close: 1 GiB tree, 9 interleaved rebuilds, 1.04
        against 1.07 s. The price is DuckDB holding every row uncommitted: peak RSS 127 -> 134 MB
        (130 once the file states' commit checkpointed too). (A checkpoint after each slice leaves
        a varying share of the file's blocks unused: the file came out 4-38% larger, depending on
        the slice size.)
        """
        import numpy as np

        batch = merged_columns(CallColumns.concat(parts))
        parts.clear()
        if not len(batch):
            return
        order = np.argsort(batch.arrays["ts_ms"], kind="stable")
        unsorted = batch.texts()
        del batch
        calls = {c: unsorted.pop(c)[order] for c in list(unsorted)}  # one column's copy at a time
        del order
        calls["replay"] = replays(calls)
        con = self.con
        con.register("batch_calls", calls)
        try:
            con.execute(f"INSERT INTO calls BY NAME {decoded('batch_calls', codes=False, extra=('replay',))}")
        finally:
            con.unregister("batch_calls")

    def _write_few_calls(self, calls: Sequence[CallRow]) -> bool:
        """The upsert plus replay update of `commit`, with the same result, for a few calls.

        False (nothing written) when more than SMALL_UPDATES stored calls change: one UPDATE per
        call would then cost more than the set-based upsert.
        """
        con = self.con
        hashes = ",".join({str(int(c.msg_hash)) for c in calls if c.msg_hash != 0})
        found = con.execute(_SELECT_CALL.format(column="msg_hash", values=hashes)).fetchall() if hashes else []
        no_id = ",".join(str(int(c.key)) for c in calls if c.msg_hash == 0)  # lines without message.id
        if no_id:
            found += con.execute(_SELECT_CALL.format(column="key", values=no_id)).fetchall()
        keys = {c.key for c in calls}
        stored = {r[0]: CallRow(*r[:-1]) for r in found if r[0] in keys}
        # MARK_REPLAYS only touches sidechain or flagged calls sharing a message.id with the batch:
        # when there is none (the common main-chain append) it would change nothing.
        replays = bool(hashes) and (
            any(c.sidechain for c in calls) or any(r[_SIDECHAIN] or r[-1] for r in found if r[1] != 0)
        )
        fresh = [c for c in calls if c.key not in stored]
        updates: list[tuple[CallRow, list[str]]] = []
        for c in calls:
            old = stored.get(c.key)
            if old is None:
                continue
            merged = merge_calls(old, c)
            changed = [n for n in MERGED_COLUMNS if getattr(merged, n) != getattr(old, n)]
            if changed:
                updates.append((merged, changed))
        if len(updates) > SMALL_UPDATES:
            return False
        for merged, changed in updates:
            sets = ", ".join("ts = make_timestamp(? * 1000)" if n == "ts_ms" else f"{n} = ?" for n in changed)
            con.execute(f"UPDATE calls SET {sets} WHERE key = ?", [*(getattr(merged, n) for n in changed), merged.key])
        if fresh:
            sql = "INSERT INTO calls VALUES " + ", ".join([_INSERT_CALL_ROW] * len(fresh))
            con.execute(sql, [v for c in fresh for v in c])
        if replays:
            con.execute(MARK_REPLAYS.format(msg_hashes=hashes))
        return True

    def _store_states(self, reads: Sequence[Reads], fresh: bool) -> None:
        rows = [row for r in reads for row in r.states]
        if not rows:
            return
        if len(rows) <= SMALL_UPDATES:
            # A few files (a running service's appends): update existing rows by path, insert new ones.
            sets = ", ".join(f"{n} = ?" for n in _FILE_COLUMNS)
            update = f"UPDATE files SET {sets}, gone = false, ingested_at = now()::TIMESTAMP WHERE path = ?"
            new = [row for row in rows if self.con.execute(update, [*row[1:], row[0]]).fetchone() == (0,)]
            if new:
                values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, false, now()::TIMESTAMP)"] * len(new))
                self.con.execute(f"INSERT INTO files VALUES {values}", [v for row in new for v in row])
            return
        self.con.register("batch_files", _state_arrays(rows))
        # A rebuild's fresh file meets each path once: a plain insert, at a third of the upsert's cost
        # (6,908 files in 16 batches: ~70 vs 150-220 ms).
        self.con.execute((_INSERT_FILES if fresh else _INSERT_FILES + _FILE_UPSERT).format(rel="batch_files"))
        self.con.unregister("batch_files")


# What a commit does with each of a batch's tables but calls and files, in this order (a re-read
# file's old rejects go before its new ones come).
_TABLE_SQL = {
    "events": _INSERT_EVENTS,
    "rereads": _DELETE_REREAD_REJECTS,
    "rejects": _INSERT_REJECTS,
    "files": _INSERT_FILES + _FILE_UPSERT,
}


def batch_tables(reads: Sequence[Reads], rereads: bool = True) -> dict[str, Any]:
    """The events, re-read paths and rejects of `reads` as column arrays, by table (those with
    rows only).

    Events: one per key, the copy of the session whose name sorts first (EVENT_UPSERT's rule).
    Re-reads: only a re-read (a rewritten or re-created file) can meet its own old rejects, as an
    append read starts at the committed offset and rejects commit with it; `rereads` false, for
    a fresh index, which has none.
    """
    events: dict[int, EventRow] = {}
    for e in (e for r in reads for e in r.events):
        if e.key not in events or e.session < events[e.key].session:
            events[e.key] = e
    tables: dict[str, Any] = {}
    if events:
        tables["events"] = column_arrays(list(events.values()), EventRow._fields)
    reread = [(path,) for r in reads for path in r.rereads] if rereads else []
    if reread:
        tables["rereads"] = column_arrays(reread, ("path",))
    rejects = [rj for r in reads for rj in r.rejects]
    if rejects:
        tables["rejects"] = column_arrays(rejects, ("path", "offset", "reason"))
    return tables


def sql_text(path: Path | str) -> str:
    """`path` as an SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def read_priced(path: Path, book: PriceBook, compute: Callable[[Index], T]) -> T:
    """compute(index) with `book`'s prices in force: the index at `path` opened read-only when it
    is migrated and its prices are already `book`'s (other readers then run beside it), else opened
    for writing, migrated and priced first. A missing file reads as an empty index, and no file
    is made where a mistyped path points. A locked or damaged file is a one-line error (Index).
    """
    if path.exists():
        with Index(path, read_only=True) as index:
            try:
                ready = ready_to_read(index.con, book)
            except duckdb.Error:
                ready = False  # e.g. an index from before the migrations table: migrate it below
            if ready:
                return compute(index)
    with Index(path if path.exists() else Path(":memory:")) as index:
        apply_prices(index.con, book, all_models=False)
        return compute(index)
