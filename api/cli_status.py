"""`cco index status`: what the index holds, without typer in the process.

The idea: a status is a short process, and typer with click and rich took ~100 ms of its ~260
(half of it). An ordinary command line is read by `options.read`; typer's command, built from the
same declarations, takes `--help` and mistakes (as for `rebuild` and `run`). rich is imported
only to draw the table; `--json` never loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.options import DB, MODE, Opt, typer_command
from api.output import note_no_index, print_fields, print_json
from indexer.paths import db_path, pricing_file, run_file

if TYPE_CHECKING:
    from api.client import Service

STATUS_OPTIONS: dict[str, Opt] = {
    "db": DB,
    "json": Opt(("--json",), bool, False, "Print JSON."),
    "mode": MODE,
}
STATUS_HELP = "Show what the index holds: files, calls, tokens, cost, rejected lines."


def status_command() -> Callable[..., None]:
    """`cco index status` as typer's command (for --help and command lines `options.read` leaves to it)."""
    return typer_command(STATUS_OPTIONS, tuple(STATUS_OPTIONS), STATUS_HELP, lambda values: run_status(**values))


def run_status(db: Path | None, json: bool, mode: str | None) -> None:
    """Print the status of the index at `db`: from the running service when one holds it."""
    from indexer.settings import resolve_cost_mode

    cost_mode = resolve_cost_mode(mode)
    path = db_path(db)
    fields: dict[str, Any]
    service = served(path)
    if service is not None:
        from indexer.pricing import check_user_file

        check_user_file(pricing_file())  # as without the service: a bad price file is an error
        fields = service.get_json("/api/index/status", {"mode": cost_mode})
    else:
        from indexer.pricing import load_book
        from indexer.status import index_status
        from indexer.store import read_priced

        if not path.exists():  # nothing indexed yet (or a mistyped --db): zeros, and no file made there
            note_no_index(path)
        book = load_book(pricing_file())
        # read-only when its prices are current, so statuses and reports run side by side
        status = read_priced(path, book, lambda index: index_status(index, book, cost_mode, apply=False))
        fields = {**asdict(status), "db": str(path)}
    if json:
        print_json(fields)
    else:
        print_fields("cco index", fields)


def served(db: Path) -> Service | None:
    """The live `cco index run` holding `db`, if any (the HTTP client is imported only then)."""
    if not run_file(db).exists():
        return None
    from api.client import service_for

    return service_for(db)
