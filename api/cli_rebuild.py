"""`cco index rebuild`: recreate the index from the transcripts, without typer in the process.

The idea: a rebuild's peak memory is its own process's, and typer (with click and rich) would
sit in it for nothing (~14 MB of a ~150 MB peak on a 1 GiB tree). An ordinary command line is
read by `options.read`; typer's command, built from the same declarations, takes `--help` and
mistakes. rich is imported only to draw the progress bar on a terminal.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from api.interrupt import interruptible
from api.options import DB, SOURCE, Opt, roots_of, typer_command
from api.output import skipped_warnings
from indexer.errors import CcoError
from indexer.paths import db_path, pricing_file

REBUILD_OPTIONS: dict[str, Opt] = {"source": SOURCE, "db": DB}
REBUILD_HELP = "Recreate the index from the transcripts, keeping history only the old index still has."


def rebuild_command() -> Callable[..., None]:
    """`cco index rebuild` as typer's command (for --help and command lines `options.read` leaves to it)."""
    return typer_command(REBUILD_OPTIONS, tuple(REBUILD_OPTIONS), REBUILD_HELP, lambda values: run_rebuild(**values))


def run_rebuild(source: list[Path] | None, db: Path | None) -> None:
    """Rebuild the index at `db` (default: the data folder's) from `source`, and say what it did."""
    began = time.perf_counter()
    from indexer.memory import tune_malloc

    tune_malloc()  # before the parser pool's threads start: fewer arenas, freed blocks returned
    import numpy  # noqa: F401  # for the parsers' columns: loaded once, before they are forked

    from indexer.errors import WorkerDied
    from indexer.ingest import ParserPool, Stopped, plan_and_start

    # The parsers start first, forked while this process has no other thread (ParserPool), and
    # before DuckDB is loaded (they never use it). The tree is walked and the parsers given their
    # tasks; meanwhile this process loads DuckDB and opens the index files.
    # Fewer garbage collections: a rebuild makes millions of short-lived objects and few cycles
    # (still collected, less often). What is loaded by now is frozen: neither this process nor
    # the parsers forked from it scan it again (which would also copy its pages into each fork).
    # 1 GiB tree, 8 interleaved pairs: median 1.60 s against 1.68.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    # Ctrl-C, and SIGTERM (a `timeout`, a service manager), set an event the rebuild checks
    # (between waits and commits; the old index is never touched before the end): a
    # KeyboardInterrupt inside a DuckDB statement surfaced as "Query interrupted" with a traceback
    # (1 run in 7 in an audit), and SIGTERM left the temporary file behind.
    with interruptible(signal.SIGINT, signal.SIGTERM) as stopping:
        pool = ParserPool(fork=True, stopping=stopping)
        pool.warm()
        try:
            roots = roots_of(source)
            path = db_path(db)
            try:
                started = plan_and_start(roots, pool)
            except WorkerDied:
                raise WorkerDied.in_rebuild(path) from None
            todo = started[0]
            from indexer.pricing import PriceBook, load_book
            from indexer.rebuild import rebuild

            book: PriceBook | None = None
            with suppress(CcoError):  # a broken pricing.toml: the next status or report says what is wrong
                book = load_book(pricing_file())
            if sys.stderr is not None and sys.stderr.isatty():
                report = _with_progress_bar(
                    lambda progress: rebuild(
                        path, roots, progress=progress, book=book, stopping=stopping, started=started
                    ),
                    todo.bytes,
                )
            else:  # no stray output into logs and pipes
                report = rebuild(path, roots, book=book, stopping=stopping, started=started)
        except Stopped:
            pool.terminate()
            print(f"cco: interrupted; {path} is unchanged", file=sys.stderr)
            raise SystemExit(130) from None
        except BaseException:
            pool.terminate()
            raise
    pool.close()
    pool.join(reap=True)  # before os._exit below
    s = report.sync
    took = time.perf_counter() - began
    print(
        f"rebuilt {path}: {s.files_read} files, {s.bytes_read:,} bytes, {s.call_lines:,} call lines, "
        f"{s.rejected} rejected, {report.salvaged_calls:,} calls salvaged from the old index ({took:.2f} s)"
    )
    for warning in skipped_warnings(s):
        print(f"cco: warning: {warning}", file=sys.stderr)
    if report.salvage_error:
        lost = report.unsalvaged_files
        covered = "number of files unknown" if lost is None else f"{lost} file(s) no longer whole on disk"
        print(
            f"cco: warning: history not on disk could not be salvaged from the old index ({covered}): "
            f"{report.salvage_error}",
            file=sys.stderr,
        )
    elif report.old_damage:
        print(
            f"cco: note: the old index was damaged ({report.old_damage}); all the history it held was read and kept",
            file=sys.stderr,
        )
    # Done: the index is replaced and closed, the parsers are joined. What is left is the
    # interpreter's teardown (freeing numpy, DuckDB's library and every module), ~20 ms of a 1 GiB
    # rebuild's 1.2 s that nothing needs. A failed flush (a closed pipe) still raises first.
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:  # None: the descriptor was closed when the command started
            stream.flush()
    os._exit(0)


def _with_progress_bar(run: Callable[[Callable[[int], None]], Any], total: int) -> Any:
    """`run(progress)` under a rich progress bar on stderr, for `total` bytes."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from api.output import err_console

    columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress("[progress.description]{task.description}", *columns, console=err_console, transient=True) as bar:
        task = bar.add_task("indexing", total=total)
        return run(lambda n: bar.advance(task, n))
