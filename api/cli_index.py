"""`cco index …`: rebuild, sync and status of the transcript index.

While `cco index run` holds the index (DuckDB allows one process), `sync` and `status` ask that
service instead of opening the file; `rebuild` replaces the file, so it needs the service stopped.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.options import DB, MODE, SOURCE, typer_option
from api.output import console, err_console, print_fields, print_json
from indexer.errors import BadInput
from indexer.paths import db_path, pricing_file, run_file
from indexer.sources import resolve_sources

# The index modules (duckdb, numpy: ~0.2 s) are imported inside the commands that need them, so
# `cco --help`, `cco report` through a running service and `cco monitor` start quickly.

if TYPE_CHECKING:
    from api.client import Service

index_app = typer.Typer(help="Build, update and inspect the transcript index.", no_args_is_help=True)

SourceOpt = Annotated[list[Path] | None, typer_option(SOURCE)]
DbOpt = Annotated[Path | None, typer_option(DB)]


def roots_of(source: list[Path] | None) -> list[Path]:
    """The projects dirs to read; a --source that does not exist is an error, not an empty index."""
    for p in source or []:
        if not p.expanduser().is_dir():
            raise BadInput(f"--source {p}: no such directory")
    roots = resolve_sources(source)
    if not roots:
        err_console.print(
            "cco: note: no Claude Code transcripts found (no projects/ folder in $CLAUDE_CONFIG_DIR, "
            "~/.config/claude or ~/.claude); pass --source",
            highlight=False,
            soft_wrap=True,
        )
    return roots


def _service(db: Path) -> Service | None:
    """The live `cco index run` holding `db`, if any (the HTTP client is imported only then)."""
    if not run_file(db).exists():
        return None
    from api.client import service_for

    return service_for(db)


@index_app.command("sync")
def sync_cmd(source: SourceOpt = None, db: DbOpt = None) -> None:
    """Read new transcript lines into the index once, then exit."""
    from indexer.ingest import SyncReport, sync

    path = db_path(db)
    service = _service(path)
    if service is not None:
        data: dict[str, Any] = service.post_json("/api/index/sync")
        report = SyncReport(**{k: data[k] for k in _REPORT_FIELDS if k in data})
        if source:
            err_console.print(
                f"cco: note: the running service (pid {service.info.pid}) holds the index; it read its own sources",
                highlight=False,
                soft_wrap=True,
            )
    else:
        from indexer.store import Index

        roots = roots_of(source)
        with Index(path) as index:
            report = sync(index, roots)
    console.print(
        f"read {report.bytes_read:,} bytes from {report.files_read} of {report.files_seen} files: "
        f"{report.call_lines:,} call lines, {report.rejected} rejected, {report.files_gone} gone "
        f"({report.seconds:.2f} s)",
        highlight=False,
        soft_wrap=True,
    )


_REPORT_FIELDS = ("files_seen", "files_read", "files_gone", "bytes_read", "lines", "call_lines", "rejected", "seconds")


@index_app.command("rebuild")
def rebuild_cmd(source: SourceOpt = None, db: DbOpt = None) -> None:
    """Recreate the index from the transcripts, keeping history only the old index still has."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from indexer.rebuild import rebuild
    from indexer.sources import iter_transcripts

    roots = roots_of(source)
    total = sum(st.st_size for _, st in iter_transcripts(roots))
    path = db_path(db)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,  # no stray output into logs and pipes
    ) as bar:
        task = bar.add_task("indexing", total=total)
        report = rebuild(path, roots, progress=lambda n: bar.advance(task, n))
    s = report.sync
    console.print(
        f"rebuilt {path}: {s.files_read} files, {s.bytes_read:,} bytes, {s.call_lines:,} call lines, "
        f"{s.rejected} rejected, {report.salvaged_calls:,} calls salvaged from the old index ({s.seconds:.2f} s)",
        highlight=False,
        soft_wrap=True,
    )
    if report.salvage_error:
        lost = report.unsalvaged_files
        covered = "number of files unknown" if lost is None else f"{lost} file(s) no longer on disk"
        err_console.print(
            f"cco: warning: history not on disk could not be salvaged from the old index ({covered}): "
            f"{report.salvage_error}",
            highlight=False,
            soft_wrap=True,
        )


@index_app.command("status")
def status_cmd(
    db: DbOpt = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    mode: Annotated[str | None, typer_option(MODE)] = None,
) -> None:
    """Show what the index holds: files, calls, tokens, cost, rejected lines."""
    from indexer.settings import resolve_cost_mode

    cost_mode = resolve_cost_mode(mode)
    path = db_path(db)
    service = _service(path)
    if service is not None:
        fields: dict[str, Any] = service.get_json("/api/index/status", {"mode": cost_mode})
    else:
        from indexer.pricing import load_book
        from indexer.status import index_status
        from indexer.store import Index

        with Index(path) as index:
            fields = asdict(index_status(index, load_book(pricing_file()), cost_mode))
    if json:
        print_json(fields)
    else:
        print_fields("cco index", fields)
