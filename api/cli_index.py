"""`cco index …`: sync and rejects of the transcript index, and the group's typer app (`rebuild`,
`run` and `status` live in cli_rebuild.py, cli_run.py and cli_status.py, which run without typer).

While `cco index run` holds the index (DuckDB allows one process), `sync` and `status` ask that
service instead of opening the file; `rebuild` replaces the file, so it needs the service stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.cli_status import served
from api.interrupt import interruptible
from api.options import DB, SOURCE, roots_of, typer_option
from api.output import console, err_console, note_no_index, print_json, skipped_warnings
from indexer.paths import db_path, pricing_file

# The index modules (duckdb, numpy: ~0.2 s) are imported inside the commands that need them, so
# `cco --help`, `cco report` through a running service and `cco monitor` start quickly.

if TYPE_CHECKING:
    from api.client import Service
    from indexer.store import Index

index_app = typer.Typer(help="Build, update and inspect the transcript index.", no_args_is_help=True)

SourceOpt = Annotated[list[Path] | None, typer_option(SOURCE)]
DbOpt = Annotated[Path | None, typer_option(DB)]


def _check_served(service: Service, source: list[Path]) -> None:
    """BadInput unless the service reads every --source: its sync reads its own sources only."""
    from indexer.errors import BadInput

    watched = [Path(p) for p in service.get_json("/api/metrics/health").get("sources", [])]
    others = [r for r in roots_of(source) if not any(r == w or w in r.parents for w in watched)]
    if others:
        raise BadInput(
            f"the running service (pid {service.info.pid}) holds the index and reads only its own sources "
            f"({', '.join(map(str, watched)) or 'none'}), not {', '.join(map(str, others))}: stop it to index "
            "those here, or pass another --db"
        )


@index_app.command("sync")
def sync_cmd(source: SourceOpt = None, db: DbOpt = None) -> None:
    """Read new transcript lines into the index once, then exit."""
    from indexer.ingest import Stopped, SyncReport, sync

    path = db_path(db)
    service = served(path)
    if service is not None:
        if source:
            _check_served(service, source)
        data: dict[str, Any] = service.post_json("/api/index/sync")
        report = SyncReport(**{k: data[k] for k in _REPORT_FIELDS if k in data})
    else:
        from indexer.store import Index

        roots = roots_of(source)
        with Index(path) as index, interruptible() as stopping:
            try:
                report = sync(index, roots, stopping=stopping)
            except Stopped:
                print("cco: interrupted; what was committed is kept, a sync reads the rest", file=sys.stderr)
                raise SystemExit(130) from None
            _price(index)
        if roots and not report.files_seen:
            where = ", ".join(map(str, roots))
            err_console.print(f"cco: note: no transcripts (*.jsonl) under {where}", highlight=False, soft_wrap=True)
    for warning in skipped_warnings(report):
        err_console.print(f"cco: warning: {warning}", highlight=False, soft_wrap=True)
    console.print(
        f"read {report.bytes_read:,} bytes from {report.files_read} of {report.files_seen} files: "
        f"{report.call_lines:,} call lines, {report.rejected} rejected, {report.files_gone} gone "
        f"({report.seconds:.2f} s)",
        highlight=False,
        soft_wrap=True,
    )


def _price(index: Index) -> None:
    """Price what the sync added, so the reports that follow open the index read-only (side by side)
    and do not write it first. A bad price file is left for them to report: a sync needs no prices."""
    from indexer.errors import BadInput
    from indexer.pricing import apply_prices, load_book

    try:
        book = load_book(pricing_file())
    except BadInput:
        return
    apply_prices(index.con, book)


_REPORT_FIELDS = (
    "files_seen", "files_read", "files_gone", "bytes_read", "lines", "call_lines", "rejected", "seconds",
    "files_unnamed", "unnamed_example", "files_unreadable", "unreadable_example",
)  # fmt: skip


@index_app.command("rejects")
def rejects_cmd(
    db: DbOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Show at most this many (1-10000).")] = 50,
    json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List rejected transcript lines: file, byte offset and reason (never the line itself)."""
    from indexer.errors import BadInput
    from indexer.status import REJECTS_MAX, rejected_lines

    if not 1 <= limit <= REJECTS_MAX:
        raise BadInput(f"--limit must be between 1 and {REJECTS_MAX}, got {limit}")
    path = db_path(db)
    service = served(path)
    if service is not None:
        data: dict[str, Any] = service.get_json("/api/index/rejects", {"limit": str(limit)})
    elif path.exists():
        from indexer.store import Index

        with Index(path, read_only=True) as index:
            data = rejected_lines(index.con, limit)
    else:
        note_no_index(path)
        data = {"total": 0, "rejects": []}
    if json:
        print_json(data)
        return
    for r in data["rejects"]:
        console.print(f"{r['path']}:{r['offset']}  {r['reason']}", highlight=False, markup=False, soft_wrap=True)
    shown, total = len(data["rejects"]), data["total"]
    more = f" (the first {shown}; --limit shows more)" if shown < total else ""
    console.print(f"{total:,} rejected line{'' if total == 1 else 's'}{more}", highlight=False)
