"""One catch-up pass: scan the sources, read what is new, commit it in bulk transactions.

The idea: scanning is cheap (stat plus two small reads per changed file); reading and parsing is
the cost, so big passes fan out to worker processes, one per core (parsing holds the GIL; separate processes
keep both cores busy and keep a serving process's event loop free) while this process commits
finished batches. Workers hand their calls over as column arrays (indexer/columns.py), so what
is left for this process per batch is a few buffer copies and SQL that runs without the GIL.
Small passes, the common case in a running service, stay in-process.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import multiprocessing
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from indexer.columns import CallColumns
from indexer.errors import WorkerDied
from indexer.sources import iter_transcripts
from indexer.tail import FileState, ReadPlan, Reads, plan_read, read_plan
from indexer.worker import Chunk, read_task, start_worker, warm_up

if TYPE_CHECKING:  # the store (and DuckDB) load only where an index is opened: a rebuild's parsers
    from indexer.store import Index  # are forked, and given their work, before it loads them

PARALLEL_BYTES = 8 << 20  # below this, worker start-up costs more than it saves
TASK_BYTES = 8 << 20  # small files are grouped into tasks of about this many bytes ...
# ... and at most this many files: the serving process unpickles a task's result in one call that
# holds the GIL (~15 us a file), so a task of 500 small files would stall its event loop ~8 ms.
TASK_FILES = 48
# Rows wait in this process until their commit: 64 MiB / 50 k calls keep ~20 MB of CallRows (the
# main process peaked at ~225 MB with 256 MiB / 200 k, ~185 MB now, rebuild time unchanged).
COMMIT_BYTES = 64 << 20  # commit after about this many bytes read ...
COMMIT_CALLS = 50_000  # ... or this many call lines, whichever first
# A service's big pass, run by a writer process (staged.py), commits in bigger batches: merging one
# in the serving process holds the GIL a few ms to parse and bind its statements (DuckDB), so
# fewer batches keep requests waiting less often. Watched 1 GiB catch-up, 6 rounds each:
# /api/stats p99 (corrected) median 1.0 -> 0.6 ms; the writer's peak RSS 95 -> 106 MB.
STAGED_COMMIT_BYTES = 160 << 20
STAGED_COMMIT_CALLS = 128_000
# A rebuild's fresh file (Index.deferring) sets its calls aside until the end, so a commit holds
# only file states, rejects and events: it commits after this many files (a few MB of states),
# which is once, at the end, for most trees. Each commit in the middle cost the writer ~20 ms of
# CPU beside busy parsers (1 GiB tree: 9 commits, 182 ms).
DEFERRED_COMMIT_FILES = 20_000
# ... and any pass commits once this many rejected lines wait: a damaged tree's short bad lines
# (1.5 M in 24 MiB) held ~22 bytes of memory per byte read until the next commit.
COMMIT_REJECTS = 50_000
# Calls waiting for a commit come in as many column parts as tasks: each run of this many is joined
# into one. A rebuild's 193 parts of a 1 GiB tree, joined only at its end, cost that end 20 ms and
# its peak RSS 9 MB more (hundreds of small arrays). Each run is joined apart from the parts already
# joined: with them, each join sorted the vocabulary of every call so far again (80-100 ms in all).
JOIN_PARTS = 32

Progress = Callable[[int], None]
T = TypeVar("T")
# What a pass's work depends on here, which a pass run by another process (staged.py) takes along.
_SETTINGS = (
    "PARALLEL_BYTES",
    "TASK_BYTES",
    "TASK_FILES",
    "COMMIT_BYTES",
    "COMMIT_CALLS",
    "STAGED_COMMIT_BYTES",
    "STAGED_COMMIT_CALLS",
    "COMMIT_REJECTS",
    "read_task",
)


def settings() -> dict[str, Any]:
    """This module's settings as they are now (a test may have changed them)."""
    return {name: globals()[name] for name in _SETTINGS}


def use_settings(values: dict[str, Any]) -> None:
    """Take another process's `settings()`."""
    globals().update((name, values[name]) for name in _SETTINGS)


@dataclass
class SyncReport:
    """What one pass did."""

    files_seen: int = 0
    files_read: int = 0
    files_gone: int = 0
    bytes_read: int = 0
    lines: int = 0
    call_lines: int = 0
    rejected: int = 0
    seconds: float = 0.0
    # Transcripts left unread because their path is not UTF-8 (the index's text is; Claude Code
    # never names files so): how many, and one of them as the terminal can print it.
    files_unnamed: int = 0
    unnamed_example: str | None = None
    # Transcripts, or folders of them, that exist but may not be read (permissions): how many, one
    # of them. Files already indexed below such a folder are not marked gone.
    files_unreadable: int = 0
    unreadable_example: str | None = None


@dataclass
class Planned:
    """What a pass will read: plans for files with new bytes, paths that disappeared, files seen."""

    plans: list[ReadPlan]
    gone: list[str]
    seen: int
    unnamed: list[str] = field(default_factory=list)  # paths skipped: not UTF-8 (see SyncReport)
    unreadable: list[str] = field(default_factory=list)  # files and folders skipped: no permission

    @functools.cached_property
    def bytes(self) -> int:
        """Bytes not yet read (the plans are not changed once made)."""
        return sum(p.size - p.start for p in self.plans)


class TooMany(Exception):
    """A walk met more transcripts than its caller would plan in its own process (plan_states)."""


def plan(index: Index, roots: Iterable[Path], only: set[str] | None = None) -> Planned:
    """Plans for files with new bytes, paths that disappeared, and the number of files seen.

    With `only` (a watcher naming the files that changed) just those paths are looked at: no walk
    of the tree and no load of every file's state, so a one-line append costs a few stat calls.
    """
    if only is None:
        return plan_states(index.file_states(), roots)
    under_roots = _under(roots)
    found = [(p, st) for p in sorted(only) if under_roots(p) and (st := _stat_jsonl(p)) is not None]
    return planned(found, index.file_states(p for p in only if under_roots(p)), under_roots)


def plan_states(
    states: dict[str, FileState],
    roots: Iterable[Path],
    most: int | None = None,
    each: Callable[[ReadPlan], None] | None = None,
) -> Planned:
    """`plan` of the whole tree against `states` (every file state an index holds): what a pass's
    writer process plans with the states its service exported (staged.py). `most`: raise TooMany
    once the walk meets more transcripts than that; `each`: called with each plan as the walk
    makes it."""
    unlisted: list[str] = []
    found = iter_transcripts(roots, unlisted)
    if most is not None:
        found = _at_most(found, most)
    return planned(found, states, _under(roots), unlisted, each)


def _under(roots: Iterable[Path]) -> Callable[[str], bool]:
    """Whether a path is below one of `roots`."""
    prefixes = tuple(str(r) + os.sep for r in roots)
    return lambda path: path.startswith(prefixes)


def _at_most(found: Iterator[T], most: int) -> Iterator[T]:
    """`found`, raising TooMany where it would give more than `most` items."""
    for i, item in enumerate(found):
        if i == most:
            raise TooMany
        yield item


def plan_fresh(roots: Iterable[Path], each: Callable[[ReadPlan], None] | None = None) -> Planned:
    """`plan` for an index that holds nothing yet (a rebuild's fresh file): every transcript, whole.
    `each`: called with each plan as the walk makes it."""
    return plan_states({}, roots, each=each)


def plan_and_start(roots: Iterable[Path], pool: ParserPool) -> tuple[Planned, Iterator[Chunk]]:
    """A rebuild's plan (plan_fresh) and its reads by `pool`, begun while the tree is walked.

    A file of TASK_BYTES or more, a task of its own (_tasks), is given to the parsers as soon as
    the walk finds it; the rest, grouped largest first, once the walk is done. So the parsers are
    busy during the walk (~85 ms for the 1 GiB tree), and the last tasks are still small ones.
    """
    early: set[concurrent.futures.Future[Chunk]] = set()

    def each(p: ReadPlan) -> None:
        if p.size - p.start >= TASK_BYTES:
            early.update(pool.submit(read_task, [[p]]))

    todo = plan_fresh(roots, each)
    if not early:  # no big file: as any pass (a small tree is read in this process)
        return todo, start_reading(todo.plans, pool)
    rest = [p for p in todo.plans if p.size - p.start < TASK_BYTES]
    return todo, pool.finished(early | pool.submit(read_task, _tasks(rest)))


def planned(
    found: Iterable[tuple[str, os.stat_result]],
    states: dict[str, FileState],
    under_roots: Callable[[str], bool],
    unlisted: list[str] | None = None,
    each: Callable[[ReadPlan], None] | None = None,
) -> Planned:
    """`plan` for files `found` (path, stat) against stored `states`; `under_roots` tells which
    stored paths this pass covers (those not found are gone, unless below a folder in `unlisted`,
    which could not be listed: filled while `found` is consumed). `each`: called with each plan
    as it is made."""
    plans: list[ReadPlan] = []
    seen: set[str] = set()
    unnamed: list[str] = []
    unreadable: list[str] = []
    for path, st in found:
        if not path.isascii() and not _utf8(path):
            unnamed.append(path)
            continue
        seen.add(path)
        p = plan_read(path, st, states.get(path))
        if p is not None:
            if not _readable(path, st):
                unreadable.append(path)  # kept as it is: read once it may be
                continue
            plans.append(p)
            if each is not None:
                each(p)
    out_of_reach = tuple(d.rstrip(os.sep) + os.sep for d in unlisted or ())
    gone = [
        p
        for p, s in states.items()
        if not s.gone and p not in seen and under_roots(p) and not p.startswith(out_of_reach)
    ]
    return Planned(plans, gone, len(seen), unnamed, [*unreadable, *(unlisted or ())])


def _readable(path: str, st: os.stat_result) -> bool:
    """Whether this process may read the file: a file of its own with the owner's read bit is
    (no access(2) call, ~1.5 us a file), anything else is asked of the kernel."""
    return (st.st_uid == _EUID and bool(st.st_mode & stat.S_IRUSR)) or os.access(path, os.R_OK)


_EUID = os.geteuid() if hasattr(os, "geteuid") else -1


def _utf8(path: str) -> bool:
    """Whether `path` is text DuckDB can store: a name of bytes that are not UTF-8 decodes to lone
    surrogates (Python's file-system encoding), which no UTF-8 column takes."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _stat_jsonl(path: str) -> os.stat_result | None:
    """The stat of a transcript file named by a watcher, or None if it is not (or no longer) one."""
    if not path.endswith(".jsonl"):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _tasks(plans: list[ReadPlan]) -> list[list[ReadPlan]]:
    """Largest files first, each alone; small ones grouped (TASK_BYTES, TASK_FILES), so the workers
    finish together."""
    ordered = sorted(plans, key=lambda p: p.size - p.start, reverse=True)
    tasks: list[list[ReadPlan]] = []
    group: list[ReadPlan] = []
    group_bytes = 0
    for p in ordered:
        group.append(p)
        group_bytes += p.size - p.start
        if group_bytes >= TASK_BYTES or len(group) >= TASK_FILES:
            tasks.append(group)
            group, group_bytes = [], 0
    if group:
        tasks.append(group)
    return tasks


RESULT_POLL_S = 0.1  # how often a pass waiting on its parser processes looks at them
WORKER_DIED = (
    "a parser process ended in the middle of the pass (killed, or out of memory?); "
    "what was committed is kept, run it again for the rest"
)


class Stopped(Exception):
    """A pass abandoned at shutdown (its uncommitted reads are read again next time)."""


def can_fork() -> bool:
    """Whether this process may fork parser processes: Linux, and no other thread, Python's or a
    library's (a thread holding a lock at the fork leaves it locked forever in the child)."""
    try:
        return sys.platform == "linux" and len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


class ParserPool:
    """Parser processes (spawned: safe next to threads and an open DuckDB; see start_worker for
    `idle`), whose results are awaited in short slices.

    With `fork` (a command that makes its pool before anything starts a thread: a rebuild), they
    are forked instead where can_fork allows: a fork has cco's modules loaded already, while a
    spawned process starts an interpreter and imports them. In a 1 GiB rebuild the parsers used
    0.3-0.7 s less CPU and 37 MB less memory each, and the first results came 0.2 s sooner.

    Built on ProcessPoolExecutor, not multiprocessing.Pool: a Pool replaces a worker that dies
    (killed, out of memory) but loses its task, so imap_unordered waits for it forever, and a
    worker killed while it holds the task queue's lock deadlocks even Pool.terminate. The executor
    notices a dead worker, ends the others and fails what is pending (BrokenProcessPool), which
    becomes WorkerDied here: what was committed stays, the next pass reads the rest. `stopping`,
    when set, raises Stopped instead of waiting out a worker's current task (seconds for a big file).
    """

    def __init__(
        self,
        processes: int | None = None,
        idle: bool = False,
        stopping: threading.Event | None = None,
        fork: bool = False,
    ) -> None:
        self.processes = processes or os.cpu_count() or 2
        self.forked = fork and can_fork()
        self._executor = concurrent.futures.ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("fork" if self.forked else "spawn"),
            initializer=start_worker,
            # Forked parsers end with this process (its main thread forks them all at once).
            initargs=(idle, os.getpid() if self.forked else None),
        )
        self._stopping = stopping
        self._reaper: threading.Thread | None = None  # see close()

    def pids(self) -> list[int]:
        """The processes started so far."""
        return list(self._workers())

    def _workers(self) -> dict[int, Any]:
        """The executor's worker processes by pid. It has no public way to list them; its
        `_processes` is a stable attribute (None once it is shut down)."""
        return dict(getattr(self._executor, "_processes", None) or {})

    def warm(self) -> None:
        """Start the processes now (a forked pool starts them all at its first task), not at the
        first real task; their answers are not waited for."""
        for _ in range(self.processes):
            self._executor.submit(warm_up)

    def imap_unordered(self, func: Callable[[Any], T], iterable: Iterable[Any]) -> Iterator[T]:
        """func(item) for each item, in the order they finish (as multiprocessing.Pool's).

        Every item is submitted now, before the first result is asked for: a caller can start
        the work and then do its own (a rebuild opens its index files meanwhile).
        """
        return self.finished(self.submit(func, iterable))

    def submit(self, func: Callable[[Any], T], items: Iterable[Any]) -> set[concurrent.futures.Future[T]]:
        """func(item) for each item, begun now; `finished` awaits them."""
        try:
            # A pool started ahead of its work (warm) may have lost a process already, and then
            # submit itself raises BrokenProcessPool.
            return {self._executor.submit(func, item) for item in items}
        except BrokenProcessPool:
            raise WorkerDied(WORKER_DIED) from None
        except Exception:
            # A worker that died while submit was still starting the others: the executor, broken,
            # closes its queues and pipes, and the next process to start fails on them (OSError
            # "handle is closed", ValueError "bad value(s) in fds_to_keep", as the race falls).
            if self._lost_a_worker() or getattr(self._executor, "_broken", False):
                raise WorkerDied(WORKER_DIED) from None
            raise

    def finished(self, pending: set[concurrent.futures.Future[T]]) -> Iterator[T]:
        """The results of `pending` (submit), in the order they finish."""
        try:
            while pending:
                done, pending = concurrent.futures.wait(
                    pending, timeout=RESULT_POLL_S, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in done:
                    yield future.result()
                if self._stopping is not None and self._stopping.is_set():
                    raise Stopped
                if not done and self._lost_a_worker():
                    raise WorkerDied(WORKER_DIED)
        except BrokenProcessPool:
            raise WorkerDied(WORKER_DIED) from None
        # What is pending when this ends early is not cancelled: every such caller terminates the
        # pool, which fails it (see terminate).

    def _lost_a_worker(self) -> bool:
        """Whether a worker has died (killed: a clean end exits 0). The executor sees that itself,
        except when the worker was killed halfway through sending a result: its manager thread then
        waits for the rest of the message, for good (see terminate)."""
        return any(p.exitcode not in (None, 0) for p in self._workers().values())

    def close(self) -> None:
        """No more work: the workers end once idle (join waits for that)."""
        # The thread that reaps the processes once they end, which the executor forgets when shut
        # down without waiting (a later shutdown(wait=True) then waits for nothing).
        self._reaper = getattr(self._executor, "_executor_manager_thread", None)
        self._executor.shutdown(wait=False)

    def join(self, reap: bool = False) -> None:
        """Wait for the pool's own threads; with `reap`, also until the workers have ended and
        are reaped (their CPU time is then this process's children's). Without it a pass goes
        on at once: idle-class parsers may take as long to end as other work keeps the cores
        busy. A command that ends right after (a rebuild, with os._exit) reaps."""
        self._executor.shutdown(wait=True)
        if reap and self._reaper is not None:
            self._reaper.join()

    def terminate(self) -> None:
        """End the workers now, in the middle of their tasks (shutdown or a failed pass)."""
        # The executor has no public way to stop a running task: its processes are ended here.
        for process in self._workers().values():
            # An idle-class process dies only as fast as it gets a core to end on (freeing its
            # memory), which on busy cores took seconds: it ends in the normal class.
            with contextlib.suppress(OSError, AttributeError, TypeError):
                os.sched_setscheduler(process.pid, os.SCHED_OTHER, os.sched_param(0))
            with contextlib.suppress(OSError):
                process.kill()
        # A worker killed halfway through sending a result (bigger than the pipe's buffer) leaves
        # the executor's manager thread reading the rest of it, and shutdown waits for that thread:
        # it would wait for good, as this process holds the pipe's write end too (the executor
        # never writes to it here). Closed, the read ends (EOF) once the workers are gone.
        queue = getattr(self._executor, "_result_queue", None)
        if queue is not None:
            with contextlib.suppress(OSError):
                queue._writer.close()
        # Not cancel_futures: the killed workers break the pool, and Python 3.11's executor then
        # fails every pending future, raising in its manager thread (a traceback, and no cleanup)
        # on one that was cancelled. The broken pool fails them all anyway.
        self._executor.shutdown(wait=True)


def start_reading(
    plans: list[ReadPlan],
    pool: ParserPool | None = None,
    workers: int | None = None,
    stopping: threading.Event | None = None,
) -> Iterator[Chunk]:
    """The reads of `plans` as they finish: by this process (a small pass), or by `pool`, whose
    parsers are given every task now (before the first result is asked for), or by a pool of
    its own, started at the first result asked for and ended after the last."""
    total = sum(p.size - p.start for p in plans)
    if (pool is None and workers == 1) or total < PARALLEL_BYTES or (len(plans) == 1 and pool is None):
        return ((Reads.of([r]), None) for r in map(read_plan, plans) if r is not None)
    if pool is not None:
        return pool.imap_unordered(read_task, _tasks(plans))
    return _read_by_own_pool(plans, workers, stopping)


def _read_by_own_pool(plans: list[ReadPlan], workers: int | None, stopping: threading.Event | None) -> Iterator[Chunk]:
    pool = ParserPool(workers, stopping=stopping)
    try:
        yield from pool.imap_unordered(read_task, _tasks(plans))
    except BaseException:  # a dead worker, shutdown, or the caller gave up: the rest is read next time
        pool.terminate()
        raise
    finally:
        pool.close()
        pool.join()


def sync(
    index: Index,
    roots: Iterable[Path],
    *,
    only: set[str] | None = None,
    pool: ParserPool | None = None,
    workers: int | None = None,
    stopping: threading.Event | None = None,
    progress: Progress | None = None,
    planned: Planned | None = None,
    chunks: Iterator[Chunk] | None = None,
) -> SyncReport:
    """Read every new complete line under `roots` into `index` (only paths in `only`, if given).

    `planned`: what `plan` found just before (a caller that needed the figures first), so the
    tree is not walked twice; `chunks`: its reads, already under way (start_reading), as a
    rebuild starts them before it opens its index files. Parser processes this call starts (a
    big pass) are niced (the service's big passes run in staged.py, with idle-class parsers).
    `stopping`: when set, a pass waiting on parser processes ends them and raises Stopped (the
    service's shutdown).
    """
    started = time.perf_counter()
    roots = list(roots)
    todo = planned if planned is not None else plan(index, roots, only)
    plans = todo.plans
    report = SyncReport(
        files_seen=todo.seen,
        files_gone=len(todo.gone),
        files_unnamed=len(todo.unnamed),
        files_unreadable=len(todo.unreadable),
    )
    if todo.unnamed:
        report.unnamed_example = todo.unnamed[0].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if todo.unreadable:
        report.unreadable_example = todo.unreadable[0].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    index.mark_gone(todo.gone)
    deferring = index.deferring
    pending: list[Reads] = []
    pending_columns: list[CallColumns] = []
    pending_bytes = pending_calls = pending_rows = pending_rejects = pending_files = joined = 0

    def flush() -> None:
        nonlocal pending, pending_columns, pending_bytes, pending_calls, pending_rows, pending_rejects, pending_files
        nonlocal joined
        if pending:
            index.commit(pending, pending_columns)
        pending, pending_columns = [], []
        pending_bytes = pending_calls = pending_rows = pending_rejects = pending_files = joined = 0

    if chunks is None:
        chunks = start_reading(plans, pool, workers, stopping)
    for reads, columns in chunks:
        if columns is not None:
            pending_columns.append(columns)
            if len(pending_columns) - joined >= JOIN_PARTS:  # the parts not joined yet, into one
                pending_columns[joined:] = [CallColumns.concat(pending_columns[joined:])]
                joined += 1
        pending.append(reads)
        read = sum(reads.read)
        report.files_read += len(reads.read)
        report.bytes_read += read
        report.lines += reads.lines
        report.call_lines += reads.call_lines
        report.rejected += len(reads.rejects)
        if progress:
            for n in reads.read:
                progress(n)
        pending_files += len(reads.read)
        pending_bytes += read
        pending_calls += reads.call_lines
        pending_rows += len(reads.calls)  # read in this process (a parser process sends columns)
        pending_rejects += len(reads.rejects)
        if pending_rejects >= COMMIT_REJECTS or (
            # a rebuild's fresh file: its calls are set aside as columns, but rows read here wait as rows
            pending_files >= DEFERRED_COMMIT_FILES or pending_rows >= COMMIT_CALLS
            if deferring
            else pending_bytes >= COMMIT_BYTES or pending_calls >= COMMIT_CALLS
        ):
            flush()
        if stopping is not None and stopping.is_set():
            raise Stopped  # between commits: what was read and not committed is read again next time
    flush()
    report.seconds = time.perf_counter() - started
    return report
