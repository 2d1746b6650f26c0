"""The live service runtime: one ingest thread owns the index writer, a snapshot task feeds a ring.

The idea: nothing an HTTP request touches ever waits for ingest. Three kinds of workers:

- the ingest thread ("cco-ingest") owns the single DuckDB writer connection. It catches up at
  start-up, then sleeps until the watcher wakes it or the periodic rescan is due, and runs a sync
  pass: the scan decides what is read, events only say "look now". After a commit it prices new
  models and asks for a snapshot. A pass big enough for parser processes (the catch-up, usually) is run by a
  writer process with its parsers (indexer/staged.py): every bit of Python such a pass runs would
  hold the GIL that requests need, so this thread only merges the batches it stages, in SQL
  (DuckDB runs that without the GIL); while someone watches, that process and its parsers keep
  off one core. Once a second it checks the user's price file. Other work that needs the writer
  (`cco index status` / `sync` asked over HTTP) is queued to it as jobs.
- the snapshot task (on the event loop) runs `compute_snapshot` on its own reader cursor in a
  one-thread executor (DuckDB releases the GIL), every `interval` seconds and shortly after each
  commit, and pushes the serialised JSON bytes into a ring of 3,600 entries. `/api/stats` answers
  with the newest bytes as they are: no database work in the request.
- the watcher (indexer/watch.py): watchdog threads plus their supervisor. It starts when the
  catch-up is done: adding its watches walks every folder in Python (~0.4 s for 2,300 folders),
  which beside a catch-up's commits took the GIL from requests (`/api/stats` p99 during a 1 GiB
  catch-up 5.6 -> 4.7 ms, BENCHMARKS.md session 13). Nothing is missed: its start asks for a
  pass over the whole tree, which reads whatever changed meanwhile.

Readers see committed data only (DuckDB MVCC), so nothing is served from a half-updated state.
Shutdown (`begin_shutdown` from the signal handler, then `close`) ends SSE streams, stops the
watcher, lets the ingest thread finish its step (abandoning a catch-up: its uncommitted reads are
simply read again next time), checkpoints, closes the index and removes the run file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import orjson

from api.context import AppContext
from api.defaults import DEFAULT_HOST, DEFAULT_INTERVAL, DEFAULT_PORT, DEFAULT_RESCAN
from api.output import skipped_warnings
from indexer.activity import current
from indexer.engine import duckdb
from indexer.errors import CcoError, ServiceError
from indexer.ingest import PARALLEL_BYTES, Planned, Stopped, SyncReport, TooMany, plan, plan_states, planned, sync
from indexer.memory import drop_code_pages, release_memory
from indexer.metrics import Memo, iso_utc
from indexer.paths import pricing_file
from indexer.price_watch import PriceWatcher, file_signature
from indexer.pricing import apply_prices, unpriced_models
from indexer.reports import system_timezone
from indexer.runfile import RunInfo, now_iso, remove_run_file, write_run_file
from indexer.settings import load_settings, settings_file
from indexer.snapshot import compute_snapshot, local_day
from indexer.sources import iter_transcripts
from indexer.staged import remove_stale, staged_sync
from indexer.status import index_status
from indexer.store import Index
from indexer.tail import FileState
from indexer.watch import Watcher

log = logging.getLogger("cco.service")

T = TypeVar("T")

RING_SIZE = 3600  # one hour at one snapshot a second
PRICE_CHECK_S = 1.0
WAKE_COALESCE_S = 0.01  # one append makes several events; read once
LAG_TTL_S = 2.0  # between passes, health walks the tree for its lag figures at most this often
SNAPSHOT_DEBOUNCE_S = 0.03  # commits come in bursts; snapshot once after them
MAX_STREAMS = 32
# The start-up pass is planned here up to this many transcripts; beyond, by its writer process.
PLAN_HERE_FILES = 500
WATCHED_S = 5.0  # `/api/stats` asked this recently: someone follows the numbers (the monitor polls every 1-2 s)
PING_S = 15.0
JOIN_S = 0.6  # shutdown waits this long for the ingest thread, then interrupts its query ...
INTERRUPTED_JOIN_S = 0.5  # ... and waits this much more (the whole shutdown must take < 2 s)
SNAPSHOT_JOIN_S = 0.3  # a snapshot query still running at shutdown is interrupted, then waited for this long


STOPPING = "the service is shutting down"


@dataclass
class ServiceConfig:
    """Everything `cco index run` was told; defaults as its options."""

    db: Path
    roots: list[Path]
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    interval: float = DEFAULT_INTERVAL
    rescan: float = DEFAULT_RESCAN
    token: str | None = None
    allowed_hosts: list[str] = field(default_factory=list)
    machine: str = field(default_factory=socket.gethostname)
    cost_mode: str = "auto"
    supervise_s: float = 1.0
    ping_s: float = PING_S


class Ring:
    """The newest snapshots as (epoch seconds, JSON bytes), oldest dropped first. Thread-safe."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self._items: deque[tuple[float, bytes]] = deque(maxlen=size)

    def push(self, ts: float, data: bytes) -> None:
        self._items.append((ts, data))

    def latest(self) -> bytes | None:
        try:
            return self._items[-1][1]
        except IndexError:
            return None

    def latest_time(self) -> float | None:
        try:
            return self._items[-1][0]
        except IndexError:
            return None

    def between(self, start: float, end: float) -> list[bytes]:
        return [data for ts, data in list(self._items) if start <= ts <= end]

    def __len__(self) -> int:
        return len(self._items)


class StreamHub:
    """Fan-out of change messages to SSE clients; a bounded number of them. Used on the event loop."""

    def __init__(self, max_clients: int = MAX_STREAMS) -> None:
        self.max_clients = max_clients
        self.latest: bytes | None = None
        self.closed = False
        self._queues: set[asyncio.Queue[bytes | None]] = set()

    @property
    def clients(self) -> int:
        return len(self._queues)

    def full(self) -> bool:
        return len(self._queues) >= self.max_clients

    def subscribe(self) -> asyncio.Queue[bytes | None] | None:
        if self.closed or self.full():
            return None
        q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=64)
        self._queues.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[bytes | None]) -> None:
        self._queues.discard(q)

    def publish(self, data: bytes) -> None:
        """Send `data` to every client, unless it is the message they had last: a commit that
        changes nothing newer (a fork's copy of old lines) is not a change to show."""
        if data == self.latest:
            return
        self.latest = data
        for q in list(self._queues):
            if q.full():  # a stalled client loses its oldest message, never blocks the others
                with suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(data)

    def close(self) -> None:
        """End every stream (shutdown)."""
        self.closed = True
        for q in list(self._queues):
            with suppress(asyncio.QueueEmpty):
                while q.full():
                    q.get_nowait()
            q.put_nowait(None)


@dataclass
class CatchUp:
    """Progress of the start-up catch-up (health shows it)."""

    running: bool = False
    done: bool = False
    files: int = 0
    files_done: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None

    def as_json(self) -> dict[str, Any]:
        # bytes_total is 0 until the pass is planned (by its writer process, for a big tree).
        fraction = 1.0 if self.done else min(1.0, self.bytes_done / self.bytes_total) if self.bytes_total else 0.0
        return {
            "running": self.running,
            "done": self.done,
            "files": self.files,
            "files_done": self.files_done,
            "bytes_total": self.bytes_total,
            "bytes_done": self.bytes_done,
            "fraction": round(fraction, 4),
            "started": self.started,
            "finished": self.finished,
            "seconds": self.seconds,
        }


@dataclass
class _Job:
    fn: Callable[[], Any]
    future: concurrent.futures.Future[Any]
    anytime: bool  # may run between reads of a catch-up (does not read transcripts itself)


def _log_failure(what: str, exc: Exception) -> None:
    """One line for a failure the message explains (a CcoError: a parser process died, the disk is
    full, ...); the traceback for anything else, which is a bug."""
    if isinstance(exc, CcoError):
        log.error("%s: %s", what, exc)
    else:
        log.exception(what)


def _usable_cpus() -> frozenset[int]:
    """The cores this thread may run on (none known: not Linux)."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return frozenset()


class _CountingIndex(Index):
    """The service's writer: says when each commit is done, so memoized answers are not served stale."""

    def __init__(self, path: Path, committed: Callable[[], None]) -> None:
        super().__init__(path)
        self._committed = committed

    def commit(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().commit(*args, **kwargs)
        finally:
            self._committed()

    def commit_staged(self, parts: dict[str, Path]) -> None:
        try:
            super().commit_staged(parts)
        finally:
            self._committed()


def report_json(report: SyncReport) -> dict[str, Any]:
    return {
        "files_seen": report.files_seen,
        "files_read": report.files_read,
        "files_gone": report.files_gone,
        "bytes_read": report.bytes_read,
        "lines": report.lines,
        "call_lines": report.call_lines,
        "rejected": report.rejected,
        "seconds": round(report.seconds, 4),
        "files_unnamed": report.files_unnamed,
        "unnamed_example": report.unnamed_example,
        "files_unreadable": report.files_unreadable,
        "unreadable_example": report.unreadable_example,
    }


def lag(states: dict[str, FileState], roots: list[Path]) -> tuple[int, int]:
    """(files lagging, bytes not yet read) against the stored `states`: stat plus a tiny read per changed file."""
    todo = planned(iter_transcripts(roots), states, lambda _path: False)  # gone files are not lag
    return len(todo.plans), todo.bytes


class LiveService:
    """The running service: open it, start its threads, serve its app, close it."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.port = config.port
        self.ring = Ring()
        self.hub = StreamHub(MAX_STREAMS)
        self.catch_up = CatchUp()
        self.prices = PriceWatcher(pricing_file())
        # The cost mode follows `cco config set cost-mode` while running, as prices follow pricing.toml.
        self._settings = settings_file()
        self._settings_seen = file_signature(self._settings)
        self._context: AppContext | None = None
        self._tz = ZoneInfo(system_timezone())  # the day of `today`; health names it (its key)
        self.watcher = Watcher(config.roots, self.wake, supervise_s=config.supervise_s)
        self.index: Index | None = None
        self.last_ingest: str | None = None
        self.ingest_error: str | None = None
        # The memo's version is a count of our own writes (we are the only writer): no query per lookup.
        self._generation = 0
        self._memo = Memo(version=lambda _con: self._generation)
        self._started = time.monotonic()
        self._reader_root: duckdb.DuckDBPyConnection | None = None
        self._reader_lock = threading.Lock()
        self._snap_con: duckdb.DuckDBPyConnection | None = None
        self._snap_thread: int | None = None  # the snapshot thread (native id), once it runs
        self._snap_pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="cco-snapshot", initializer=self._snapshot_thread_started
        )
        self._snap_lock = threading.Lock()  # held while a snapshot or stream message reads the index
        self.busy_at_exit = False  # a thread was still inside DuckDB when close() gave up waiting
        self._snap_key: tuple[Any, ...] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None  # the event loop's thread (native id), once it runs
        self._snap_wanted: asyncio.Event | None = None
        self._signal = threading.Event()  # something for the ingest thread to do
        self._dirty = True  # a transcript may have changed
        # ... namely these (None: unknown, scan the tree); guarded by _dirty_lock
        self._dirty_paths: set[str] | None = None
        self._dirty_lock = threading.Lock()
        self._lag_cache: tuple[float, tuple[int, int]] | None = None  # (when, lag()) for health
        # The writer's file states after its last pass, for health's lag: the writer keeps them
        # anyway, and loading every row again per health call cost ~5 MB of heap that stayed.
        self._known: dict[str, FileState] | None = None
        # The next whole-tree pass is planned as the start-up pass is (_plan_tree): the one the
        # watcher's start asks for (see _start_watcher).
        self._writer_plans_next = False
        self._stopping = threading.Event()
        self._skipped_logged = (0, 0)
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._ingest: threading.Thread | None = None
        self._helpers: list[int] = []  # a big pass's writer process and its parsers, while it runs
        self.last_asked = float("-inf")  # (monotonic) when `/api/stats` was last asked for
        self._cpus = _usable_cpus()  # what its threads (they inherit it) and processes may use
        self._sparing = False  # the ingest thread and a big pass's processes keep off one core
        self._run_file = False
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------------------

    def open(self, locked: Callable[[], None] | None = None) -> None:
        """Open the index (taking its lock; then `locked` is called), price it and take the first
        snapshot from what it holds."""
        self.index = _CountingIndex(self.config.db, self._count_write)
        try:
            remove_stale(self.config.db)  # staging files of a big pass the service was killed in
            if locked is not None:
                locked()
            # DuckDB's allocator keeps the pages a query freed until its next allocation; its
            # background thread returns them after about a second, so the peak of a commit or an
            # all-time scan does not stay resident in a process that is mostly idle (~15 MB).
            self.index.con.execute("SET allocator_background_threads = true")
            apply_prices(self.index.con, self.prices.book, all_models=True)
            self._reader_root = self.index.con.cursor()
            self._snap_con = self._reader_root.cursor()
            first = self._snapshot()  # the stream's first message follows once serving (not needed to answer)
            if first is not None:
                self.ring.push(first[0], first[1])
        except BaseException:
            self._close_index()
            if self._run_file:
                remove_run_file(self.config.db, os.getpid())
                self._run_file = False
            raise

    def write_run_file(self) -> None:
        info = RunInfo(
            pid=os.getpid(),
            port=self.port,
            host=self.config.host,
            token=bool(self.config.token),
            started=now_iso(),
            db=str(self.config.db.resolve()),
        )
        write_run_file(self.config.db, info)
        self._run_file = True

    def start(self) -> None:
        """Start the ingest thread: the catch-up, then the watcher, then passes as it wakes them."""
        self._ingest = threading.Thread(target=self._ingest_main, name="cco-ingest", daemon=True)
        self._ingest.start()

    def _start_watcher(self) -> None:
        try:
            self.watcher.start()
        except OSError as exc:  # e.g. a root we cannot read: the rescan still keeps us current
            self.watcher.last_failure = f"file watcher did not start: {exc}"
            log.warning("%s; relying on the %g s rescan", self.watcher.last_failure, self.config.rescan)
        # What changed before the watches were in place is read now, not at the next rescan, by a
        # pass planned as the start-up pass was (right after it, requests would wait on a walk here).
        self._writer_plans_next = True
        self.wake()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The event-loop side (the app's lifespan): the snapshot task."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_native_id()
        self._snap_wanted = asyncio.Event()
        task = asyncio.create_task(self._snapshot_loop(), name="cco-snapshots")
        try:
            yield
        finally:
            self.hub.close()
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            self._loop = None

    def begin_shutdown(self) -> None:
        """Safe from a signal handler or any thread: end streams, tell the threads to stop, and
        answer the writer jobs still queued (marked 503 to their requests) now rather than when
        the ingest thread has stopped, which may be after uvicorn's graceful timeout (a request it
        then cancels gets a bare 500)."""
        self._stopping.set()
        self._fail_jobs()
        self._signal.set()
        loop = self._loop
        if loop is not None:
            with suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self.hub.close)

    def close(self) -> None:
        """Stop everything, checkpoint and close the index, remove the run file (a batch still being
        written after JOIN_S is interrupted: rolled back with its offsets, read again next time)."""
        if self._closed:
            return
        self._closed = True
        self.begin_shutdown()
        self.watcher.stop(timeout=0.5)
        ingest_done = True
        if self._ingest is not None:
            self._ingest.join(JOIN_S)
            if self._ingest.is_alive() and self.index is not None:
                # A long commit: abort it (rolled back with its offsets, so read again next time).
                self.index.con.interrupt()
                self._ingest.join(INTERRUPTED_JOIN_S)
            ingest_done = not self._ingest.is_alive()
        # A slow snapshot query (any reader query can be slow on odd data) must not hold up shutdown.
        if self._snap_con is not None:
            with suppress(duckdb.Error):
                self._snap_con.interrupt()
        self._snap_pool.shutdown(wait=False, cancel_futures=True)
        snapshots_done = self._snap_lock.acquire(timeout=SNAPSHOT_JOIN_S)
        try:
            if ingest_done and snapshots_done:
                self._close_index()  # a snapshot that was waiting for the lock then finds no cursor
            else:
                # Closing a connection another thread is using could crash; every commit so far is
                # durable, the one in flight is rolled back when the index is next opened.
                self.busy_at_exit = True
                if not ingest_done:
                    log.warning("ingest still busy at shutdown; leaving its last batch for the next run")
                else:
                    log.warning("a snapshot query still running at shutdown; the index is closed by the exit")
        finally:
            if snapshots_done:
                self._snap_lock.release()
        if self._run_file:
            remove_run_file(self.config.db, os.getpid())
            self._run_file = False

    def _close_index(self) -> None:
        for con in (self._snap_con, self._reader_root):
            if con is not None:
                with suppress(duckdb.Error):
                    con.close()
        self._snap_con = self._reader_root = None
        if self.index is not None:
            self.index.close()  # checkpoints, then releases the file lock
            self.index = None

    # --- what routes use -----------------------------------------------------------------------

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A fresh read cursor (close it when done); never blocks on the writer."""
        with self._reader_lock:
            if self._reader_root is None:
                raise ServiceError("the index is closed")
            return self._reader_root.cursor()

    def context(self) -> AppContext:
        """What the app's routes read (kept: a changed cost mode reaches them through it)."""
        self._context = AppContext(
            db_path=self.config.db,
            reader=self.reader,
            book=lambda: self.prices.book,
            machine=self.config.machine,
            port=self.port,
            cost_mode=self.config.cost_mode,
            # the address it serves on, when it is one machine's address (not 0.0.0.0 or ::): the
            # name other cco commands use through the run file
            allowed_hosts=[*self.config.allowed_hosts, *([] if _wildcard(self.config.host) else [self.config.host])],
            token=self.config.token,
            memo=self._memo,
        )
        return self._context

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._started

    def wake(self, paths: list[str] | None = None) -> None:
        """Transcripts `paths` (None: any) may have changed (called from watcher threads)."""
        with self._dirty_lock:
            if paths is None or self._dirty_paths is None:
                self._dirty_paths = None
            else:
                self._dirty_paths.update(paths)
            self._dirty = True
        self._signal.set()

    def _lag(self) -> tuple[int, int]:
        """(files lagging, bytes behind) for health: the catch-up's own count until the first pass
        is done (a walk of the tree would hold the GIL ~0.1 s per request), else a walk, kept until
        the next pass or for LAG_TTL_S."""
        cu, known = self.catch_up, self._known
        if cu.running or known is None:
            return max(0, cu.files - cu.files_done), max(0, cu.bytes_total - cu.bytes_done)
        now = time.monotonic()
        if self._lag_cache is None or now - self._lag_cache[0] > LAG_TTL_S:
            self._lag_cache = (now, lag(known, self.config.roots))
        return self._lag_cache[1]

    def _take_dirty(self) -> set[str] | None:
        """The paths woken for since the last call (None: scan the tree), clearing them."""
        with self._dirty_lock:
            paths, self._dirty, self._dirty_paths = self._dirty_paths, False, set()
        return paths

    @property
    def stopping(self) -> bool:
        """Shutdown has begun: a request it cannot answer now is answered 503 and marked so (a
        command then waits for the service to let go of the index and reads the file itself)."""
        return self._stopping.is_set()

    async def call_writer(self, fn: Callable[[], T], *, anytime: bool = False) -> T:
        """Run `fn` on the ingest thread (the only one that may write) and wait for its result."""
        ingest = self._ingest
        if self._stopping.is_set() or ingest is None or not ingest.is_alive():
            raise ServiceError(STOPPING)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put(_Job(fn, future, anytime))
        self._signal.set()
        return await asyncio.wrap_future(future)

    def status_json(self, mode: str | None = None) -> dict[str, Any]:
        """`cco index status --json` as the service sees it (runs on the ingest thread)."""
        index = self._writer()
        if apply_prices(index.con, self.prices.book, all_models=False):  # as index_status would, but counted
            self._changed()
        status = index_status(index, self.prices.book, mode or self.config.cost_mode, apply=False)
        return {k: getattr(status, k) for k in status.__dataclass_fields__}

    def sync_now(self) -> dict[str, Any]:
        """One pass now (runs on the ingest thread)."""
        report = self._pass()
        if report is None:
            raise ServiceError(self.ingest_error or "sync failed")
        return report_json(report)

    def health(self) -> dict[str, Any]:
        """Everything /api/metrics/health shows; runs in a worker thread with its own cursor."""
        index: dict[str, Any] = {"ok": True, "path": str(self.config.db.absolute()), "error": None}
        files_lagging = bytes_lag = rejected = 0
        unpriced: dict[str, int] = {}
        last_ingest = self.last_ingest
        try:
            con = self.reader()
            try:
                files_lagging, bytes_lag = self._lag()
                rejected = (con.execute("SELECT count(*) FROM rejects").fetchone() or (0,))[0]
                unpriced = unpriced_models(con)
                if last_ingest is None:
                    row = con.execute("SELECT max(ingested_at) FROM files").fetchone()
                    last_ingest = iso_utc(row[0]) if row else None
            finally:
                con.close()
        except (duckdb.Error, ServiceError) as exc:
            index = {**index, "ok": False, "error": str(exc).splitlines()[0]}
        observer = self.watcher.status()
        newest = self.ring.latest_time()
        ok = (
            index["ok"]
            and self.ingest_error is None
            and (observer["alive"] or observer["mode"] == "polling" or not observer["started"])
            and self.prices.error is None
        )
        return {
            "ok": ok,
            "index": index,
            "last_ingest": last_ingest,
            "files_lagging": files_lagging,
            "bytes_behind": bytes_lag,
            "observer": observer,
            "unpriced_models": unpriced,
            "rejected_lines": int(rejected),
            "catch_up": self.catch_up.as_json(),
            "prices": {"file": str(self.prices.path), "error": self.prices.error},
            "sources": [str(r) for r in self.config.roots],
            "timezone": self._tz.key,  # the zone of /api/stats' `today`
            # ... and that day, which the dashboard compares with its own: one zone goes by several
            # names (UTC, Etc/UTC), and another zone may share the day
            "today": dict(zip(("start", "end"), map(iso_utc, local_day(datetime.now(UTC), self._tz)), strict=True)),
            "ingest_error": self.ingest_error,
            "snapshots": {
                "count": len(self.ring),
                "interval_s": self.config.interval,
                "age_s": None if newest is None else round(time.time() - newest, 3),
            },
            "streams": self.hub.clients,
            "uptime_s": round(self.uptime_s, 3),
        }

    # --- snapshots -------------------------------------------------------------------------------

    def _want_snapshot(self) -> None:
        loop, wanted = self._loop, self._snap_wanted
        if loop is not None and wanted is not None:
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(wanted.set)

    async def _snapshot_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._snap_wanted is not None
        wanted = self._snap_wanted
        try:
            await self._publish(loop)  # the stream's first message
        except RuntimeError:  # executor shut down: we are stopping
            return
        except Exception:
            log.exception("stream message failed")
        while True:
            try:
                await asyncio.wait_for(wanted.wait(), self.config.interval)
                await asyncio.sleep(SNAPSHOT_DEBOUNCE_S)
            except TimeoutError:
                pass
            wanted.clear()
            try:
                taken = await loop.run_in_executor(self._snap_pool, self._snapshot)
                if taken is None:
                    continue
                ts, data, changed = taken
                self.ring.push(ts, data)
                if changed:
                    await self._publish(loop)  # after the ring push: it must not delay the new numbers
            except RuntimeError:  # executor shut down: we are stopping
                return
            except Exception:
                log.exception("snapshot failed")

    async def _publish(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.hub.closed:
            return
        message = await loop.run_in_executor(self._snap_pool, self._message)
        if message is not None and not self.hub.closed:
            self.hub.publish(message)

    def _snapshot(self) -> tuple[float, bytes, bool] | None:
        """(time, snapshot JSON, whether the data changed), computed on the snapshot cursor."""
        with self._snap_lock:
            con = self._snap_con
            if con is None:
                return None
            now = datetime.now(UTC)
            snap = compute_snapshot(
                con,
                now=now,
                uptime_s=self.uptime_s,
                port=self.port,
                mode=self.config.cost_mode,
                tz=self._tz,  # the zone health names, so a browser can tell whose day `today` is
                memo=self._memo,
            )
        key = (snap.total_requests, snap.messages_count, snap.total_cost, snap.total_tokens, snap.last_activity)
        changed, self._snap_key = key != self._snap_key, key
        return now.timestamp(), orjson.dumps(snap), changed

    def _message(self) -> bytes | None:
        """The stream message: {project, machine, activity} as /api/metrics/current has it."""
        with self._snap_lock:
            con = self._snap_con
            if con is None:
                return None
            return orjson.dumps(current(con, machine=self.config.machine, mode=self.config.cost_mode, memo=self._memo))

    # --- the ingest thread -------------------------------------------------------------------------

    def _writer(self) -> Index:
        if self.index is None or threading.current_thread() is not self._ingest:
            raise ServiceError("the index writer is only used on the ingest thread")
        return self.index

    def _ingest_main(self) -> None:
        try:
            self._catch_up_pass()
            # On a thread of its own: the recursive watch walks every folder (0.4 s for the 2,300
            # of the 1 GiB test tree), and jobs and wake-ups need not wait for it.
            threading.Thread(target=self._start_watcher, name="cco-watch-start", daemon=True).start()
            next_rescan = time.monotonic() + self.config.rescan
            while not self._stopping.is_set():
                timeout = max(0.0, min(PRICE_CHECK_S, next_rescan - time.monotonic()))
                if self._signal.wait(timeout):
                    self._signal.clear()
                    if self._stopping.is_set():
                        break
                    self._run_jobs(catching_up=False)
                    if self._dirty:
                        time.sleep(WAKE_COALESCE_S)
                        # Named files only: a few stat calls instead of a walk of the tree (the
                        # periodic rescan still catches whatever events were lost).
                        self._pass(self._take_dirty())
                if time.monotonic() >= next_rescan:
                    self._pass()
                    next_rescan = time.monotonic() + self.config.rescan
                self._check_prices()
                self._check_settings()
        except Stopped:
            pass
        except Exception as exc:
            self.ingest_error = f"ingest stopped: {exc}"
            log.exception("ingest thread failed")
        finally:
            self._fail_jobs()

    def _catch_up_pass(self) -> None:
        index = self._writer()
        cu = self.catch_up
        cu.started = now_iso()
        started = time.perf_counter()
        self._take_dirty()
        try:
            todo = self._plan_tree(index)
            if todo is not None:
                self._planned(len(todo.plans), todo.bytes)
            cu.running = True
            report = self._read(index, todo, self._progress)
            self._committed(report)
            log.info(
                "caught up: %d bytes from %d files in %.2f s", report.bytes_read, report.files_read, report.seconds
            )
            release_memory()
            # Most of the engine's ~40 MB of resident code only ran while opening the index (its
            # catalog of built-in functions): unmapped, it stays in the page cache (shared, and the
            # first reclaimed); what later queries run is mapped again from there as they run.
            drop_code_pages()
        except Stopped:
            raise
        except Exception as exc:
            if self._stopping.is_set():  # interrupted by shutdown: nothing is lost, nothing to report
                raise Stopped from None
            self.ingest_error = f"catch-up failed: {exc}"
            _log_failure("catch-up failed", exc)
        finally:
            cu.running, cu.done = False, not self._stopping.is_set()
            cu.finished, cu.seconds = now_iso(), round(time.perf_counter() - started, 3)

    def _plan_tree(self, index: Index) -> Planned | None:
        """A whole-tree pass's plan (the start-up pass's, the one the watcher's start asks for),
        made here when the tree is small; None when the index or the walk meets more than
        PLAN_HERE_FILES transcripts: the pass's writer process plans it then (staged_sync). Here,
        walking the 6,908 transcripts of the 1 GiB test tree took ~0.4 s beside a busy event loop
        and kept its requests waiting 2-4 ms at a time, and pickling the plan for the writer held
        the GIL 15-30 ms at once (BENCHMARKS.md, sessions 15 and 16)."""
        if index.file_count() > PLAN_HERE_FILES:
            return None  # loading every file state here would hold the GIL too
        try:
            return plan_states(index.file_states(), self.config.roots, most=PLAN_HERE_FILES)
        except TooMany:
            return None

    def _planned(self, files: int, nbytes: int) -> None:
        """The catch-up's plan is known: `files` to read, `nbytes` in all."""
        self.catch_up.files, self.catch_up.bytes_total = files, nbytes

    def _progress(self, n: int) -> None:
        """One file of the catch-up is read (`n` bytes)."""
        self.catch_up.files_done += 1
        self.catch_up.bytes_done += n
        if self._stopping.is_set():
            raise Stopped
        self._run_jobs(catching_up=True)

    def _tick(self) -> None:
        """Between the messages of a big pass's writer process (at least every RESULT_POLL_S):
        cores shared as watching asks, and the catch-up's jobs run."""
        if self._helpers:
            self._spare_a_core(self.watched())
        if self.catch_up.running:
            self._run_jobs(catching_up=True)

    def _snapshot_thread_started(self) -> None:
        """(At the first snapshot, which comes before the catch-up.)"""
        self._snap_thread = threading.get_native_id()

    def watched(self) -> bool:
        """Whether anyone follows the numbers now: `/api/stats` asked lately, or a stream open."""
        return time.monotonic() - self.last_asked < WATCHED_S or self.hub.clients > 0

    def _spare_a_core(self, spare: bool, again: bool = False) -> None:
        """Give the event loop's thread one core (the first this process may use, if it may use
        two or more) and keep the ingest thread, the snapshot thread and a big pass's writer and
        parser processes off it; or let them all use every core again (`again`: even if that is
        what was done last).

        While someone is watching: the idle-class parsers sharing the event loop's core still
        delayed its wakeups (their reads in the kernel are not preempted), and so did the writer's
        DuckDB work. `/api/stats` p99 during a 1 GiB catch-up 4.9 -> 2.9 ms. The price is the
        catch-up's speed (1.6 -> 2.7 s on 2 cores), so nobody watching, every core parses.
        (BENCHMARKS.md, session 13.) A snapshot on the event loop's core, 40-300 ms beside the
        catch-up's merges, kept requests waiting 2-6 ms at a time (session 15).
        """
        if len(self._cpus) < 2 or (spare == self._sparing and not again):
            return
        first = min(self._cpus)
        others = self._cpus - {first} if spare else self._cpus
        pinned = [(0, others)]  # 0: this thread (the ingest thread)
        pinned += [(pid, others) for pid in self._helpers]
        if self._snap_thread is not None:
            pinned.append((self._snap_thread, others))
        if self._loop_thread is not None:
            pinned.append((self._loop_thread, frozenset([first]) if spare else self._cpus))
        for who, cpus in pinned:
            with suppress(OSError):  # a parser that has ended
                os.sched_setaffinity(who, cpus)
        self._sparing = spare

    def _pass(self, only: set[str] | None = None) -> SyncReport | None:
        index = self._writer()
        by_writer, self._writer_plans_next = self._writer_plans_next, False
        try:
            todo = self._plan_tree(index) if by_writer and only is None else plan(index, self.config.roots, only)
            report = self._read(index, todo)
        except Exception as exc:  # e.g. disk full; the next wake or rescan tries again
            if self._stopping.is_set():
                raise Stopped from None
            self.ingest_error = f"sync failed: {exc}"
            _log_failure("sync failed", exc)
            return None
        self.ingest_error = None
        self._committed(report)
        return report

    def _read(self, index: Index, todo: Planned | None, progress: Callable[[int], None] | None = None) -> SyncReport:
        """Read what `todo` plans: in this thread, or, big enough for parser processes, by a writer
        process (staged_sync) while this thread merges its batches; `todo` None: a pass of the
        whole tree, which the writer plans."""
        if todo is not None and todo.bytes < PARALLEL_BYTES:
            return sync(index, self.config.roots, progress=progress, planned=todo)
        self._spare_a_core(self.watched())  # before the writer starts: its processes start with it
        try:
            return staged_sync(
                index,
                todo,
                roots=self.config.roots,
                stopping=self._stopping,
                progress=progress,
                helpers=self._started_helpers,
                planned=self._planned if self.catch_up.running else None,
                tick=self._tick,
            )
        finally:
            self._helpers = []
            self._spare_a_core(False)

    def _started_helpers(self, pids: list[int]) -> None:
        """A big pass's writer process and parsers run: they started on the cores this thread had
        then, pinned again in case someone began or stopped watching since."""
        self._helpers = pids
        self._spare_a_core(self._sparing, again=True)

    def _committed(self, report: SyncReport) -> None:
        # Logged when a pass finds a new number of such files; a pass that looked at a few files only
        # (a watcher's) finds none and changes nothing, so the rescans do not repeat it.
        skipped = (report.files_unnamed, report.files_unreadable)
        if any(skipped) and skipped != self._skipped_logged:
            self._skipped_logged = skipped
            for warning in skipped_warnings(report):
                log.warning("%s", warning)
        self._known = self._writer().file_states()  # a copy: the writer goes on changing its own
        self._lag_cache = None
        if report.files_read or report.files_gone:
            apply_prices(self._writer().con, self.prices.book, all_models=False)
            self.last_ingest = now_iso()
            self._changed()

    def _check_prices(self) -> None:
        try:
            if self.prices.check():
                apply_prices(self._writer().con, self.prices.book, all_models=True)
                log.info("prices reloaded from %s", self.prices.path)
                self._changed()
        except Exception:
            log.exception("applying new prices failed")

    def _check_settings(self) -> None:
        """Take up a changed default cost mode (config.toml), for every answer not given ?mode; a file
        that cannot be read or is wrong keeps the mode in force (and is logged), never the thread."""
        seen = file_signature(self._settings)
        if seen == self._settings_seen:
            return
        self._settings_seen = seen
        try:
            if isinstance(seen, str):  # cannot be looked at: told once, as the signature stays
                raise CcoError(seen)
            mode = load_settings(self._settings)["cost_mode"]
        except CcoError as exc:
            log.warning("%s; keeping cost mode %s", exc, self.config.cost_mode)
            return
        if mode != self.config.cost_mode:
            self.config.cost_mode = mode
            if self._context is not None:
                self._context.cost_mode = mode
            log.info("cost mode is now %s (%s)", mode, self._settings)
            self._changed()

    def _count_write(self) -> None:
        """A commit or price change is done: answers memoized before it are stale from now on."""
        self._generation += 1

    def _changed(self) -> None:
        """The index changed: new memo version, new snapshot soon."""
        self._count_write()
        self._want_snapshot()

    def _run_jobs(self, *, catching_up: bool) -> None:
        deferred: list[_Job] = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if catching_up and not job.anytime:
                deferred.append(job)
                continue
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                job.future.set_result(job.fn())
            except Exception as exc:
                job.future.set_exception(exc)
        for job in deferred:
            self._jobs.put(job)

    def _fail_jobs(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(ServiceError(STOPPING))


def _wildcard(host: str) -> bool:
    """True for an address that means every interface (0.0.0.0, ::, or empty)."""
    return host.strip("[]") in ("", "0.0.0.0", "::")
