"""What a parser process runs: read plans, and hand the calls back as numeric columns.

The idea: a worker process is spawned (safe beside threads and an open DuckDB), so it imports
only what parsing needs; this module and what it imports (tail, parse, columns) never load
DuckDB or the store, which would cost every worker start-up time and memory for nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal

from indexer.columns import CallColumns, call_sink
from indexer.memory import glibc, tune_malloc
from indexer.merge import merged_columns
from indexer.tail import ReadPlan, Reads, read_plan

Chunk = tuple[Reads, CallColumns | None]  # finished reads; their calls as columns (parser processes)


def read_task(plans: list[ReadPlan]) -> Chunk:
    """A worker's job: read `plans`; the calls leave as columns, not as one tuple per row, and merged
    (a streamed message writes one line per content block: about two lines a call)."""
    sink = call_sink()  # the scanner writes the calls straight into columns
    results = [r for r in (read_plan(p, sink) for p in plans) if r is not None]
    rows = [c for r in results for c in r.parsed.calls]  # without a sink (no compiled scanner)
    calls = CallColumns.from_sink(sink) if sink is not None else CallColumns.from_rows(rows)
    return Reads.of(results, calls=False), merged_columns(calls)


def warm_up() -> None:
    """A parser process's first task when its pool starts ahead of the work: what the first real
    task would import (numpy, for the columns) is then loaded."""
    import numpy  # noqa: F401


WORKER_NICE = 10  # parsers yield the cores to whoever else needs them


PR_SET_PDEATHSIG = 1  # prctl(2)


def end_with(parent: int) -> None:
    """Linux: have the kernel SIGKILL this process when `parent` (the process that started it) ends,
    so a parser never outlives a killed command, still holding its output pipes."""
    libc = glibc()
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it ended before the request took effect
        os._exit(1)


def start_worker(idle: bool = False, parent: int | None = None) -> None:
    """Set up a parser process: glibc tuned as the writer's is, and run behind the others.

    Tuned, glibc returns each freed big block (a line longer than the read buffer, a task's
    column arrays) to the OS instead of raising its thresholds and keeping the pages in the heap:
    when every read was a fresh 4 MiB block, a 1 GiB rebuild's process tree peaked at 163-167 MB
    PSS instead of 173-177 (about 5 MB less per parser).
    Behind the others: niced, or with `idle` (the service's parsers) in Linux's SCHED_IDLE class,
    which runs only on a core nothing else wants, so a catch-up never makes the serving event
    loop wait for a scheduler slice. With `parent` (a forked pool's command), it ends with it.
    """
    tune_malloc()
    if parent is not None:
        end_with(parent)
    # Ctrl-C reaches the whole process group: the command that started the parsers ends them, and
    # they print no KeyboardInterrupt tracebacks of their own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if idle and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
    if hasattr(os, "nice"):
        os.nice(WORKER_NICE)
