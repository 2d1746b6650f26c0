"""`cco report …`: daily, weekly, monthly, session and 5-hour block reports (issue 5).

The idea: a report is a JSON document (ccusage's shapes). It comes from the running service when
one holds the index (DuckDB lets one process open the file), else from the index opened here;
tables are drawn from that same document, so both paths print the same thing. Arguments are
validated before anything is opened.

Every option is declared once, in OPTIONS and COMMANDS (see api/options.py). The typer commands
(help, usage errors, unusual command lines) are built from them, and `parse_args` reads an
ordinary command line without importing typer or rich: `api.cli` runs a report through it, and
the indexer, typer and rich are imported only when (and if) they are needed. That import time
is most of a `cco report … --json` process; the index is opened in a thread meanwhile
(_open_early), as DuckDB opens a file mostly outside the GIL.
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.options import DB, MODE, Opt, read, typer_command
from api.output import load_json, note_no_index, print_json

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    import duckdb
    import typer

    from indexer.pricing import PriceBook

Answer = dict[str, Any]
Compute = Callable[["duckdb.DuckDBPyConnection"], Answer]
# A list when the process ends right after the report (api.cli's os._exit): the connection that
# answered is put there instead of being closed, as closing tears down DuckDB's catalog (~5 ms),
# and so is the answer, whose thousands of dicts (a session report) would take ~8 ms to free.
leave_open: list[Any] | None = None


OPTIONS: dict[str, Opt] = {
    "since": Opt(("--since", "-s"), str | None, None, "First day (YYYY-MM-DD), in --timezone."),
    "until": Opt(("--until", "-u"), str | None, None, "Last day (YYYY-MM-DD), in --timezone."),
    "timezone": Opt(
        ("--timezone", "-z"), str | None, None, "IANA zone that days are counted in. Default: the system's."
    ),
    "project": Opt(
        ("--project", "-p"), str | None, None, "Only this project (its path, last folder or Claude's folder name)."
    ),
    "breakdown": Opt(("--breakdown", "-b"), bool, False, "Add a row per model to the table."),
    "instances": Opt(("--instances", "-i"), bool, False, "Group by project."),
    "mode": MODE,
    "order": Opt(("--order", "-o"), str, "asc", "asc (oldest first) or desc."),
    "start_of_week": Opt(("--start-of-week",), str, "sunday", "First day of a week (sunday, monday, ...)."),
    "active": Opt(("--active", "-a"), bool, False, "Only the active block, with its projection."),
    "recent": Opt(("--recent", "-r"), bool, False, "Blocks of the last 3 days and the active one."),
    "token_limit": Opt(
        ("--token-limit", "-t"), str | None, None, "Tokens per block to warn at, or 'max' (largest past)."
    ),
    "session_length": Opt(("--session-length", "-n"), float | None, None, "Block length in hours (default 5)."),
    "json": Opt(("--json", "-j"), bool, False, "Print JSON (ccusage's shapes)."),
    "db": DB,
}
_PERIOD = ("since", "until", "timezone", "project", "breakdown", "instances", "mode", "order")
# command -> (help, its options in the order --help lists them)
COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "daily": ("Usage and cost per day.", (*_PERIOD, "json", "db")),
    "weekly": ("Usage and cost per week.", (*_PERIOD, "start_of_week", "json", "db")),
    "monthly": ("Usage and cost per month.", (*_PERIOD, "json", "db")),
    "session": ("Usage and cost per Claude Code session.", (*_PERIOD, "json", "db")),
    "blocks": (
        "Claude's 5-hour usage windows, with burn rate and projection.",
        ("active", "recent", "token_limit", "session_length", "mode", "json", "db"),
    ),
}
_TITLES = {"daily": "Date", "weekly": "Week", "monthly": "Month", "session": "Session"}


# --- command line -------------------------------------------------------------------------------


def report_app() -> typer.Typer:
    """The `cco report` typer group, built from COMMANDS and OPTIONS."""
    import typer

    app = typer.Typer(help="Usage and cost reports from the index.", no_args_is_help=True)
    for kind, (text, names) in COMMANDS.items():
        app.command(kind)(typer_command(OPTIONS, names, text, functools.partial(run, kind)))
    return app


def parse_args(args: list[str]) -> tuple[str, dict[str, Any]] | None:
    """(command, every option's value) for an ordinary `cco report` command line, else None
    (then typer reads it, or prints its usual message: see api/options.py)."""
    if not args or args[0] not in COMMANDS:
        return None
    values = read(args[1:], OPTIONS, COMMANDS[args[0]][1])
    return None if values is None else (args[0], values)


def run(kind: str, values: dict[str, Any]) -> None:
    """Run `cco report KIND` with the value of each of its options."""
    opening = _open_early(values["db"])
    try:
        if kind == "blocks":
            _blocks(**values, opening=opening)
        else:
            _period(kind, **values, opening=opening)
    finally:
        if opening is not None:  # e.g. a bad option: the thread must not outlive the interpreter
            opening.close()


# --- answers ------------------------------------------------------------------------------------


def _cost_mode(mode: str | None) -> str:
    """--mode when given (checked), else the configured default."""
    from indexer.settings import resolve_cost_mode

    return resolve_cost_mode(mode)


class _Opening:
    """The index being opened read-only in a thread (see _open_early); connection() hands it over.

    A bare `_thread` thread: `threading` would be one more import (~1 ms) for one join.
    """

    def __init__(self, db_file: Path) -> None:
        self._con: duckdb.DuckDBPyConnection | None = None
        self._opening = _thread.allocate_lock()  # held until the thread has opened the file (or failed to)
        self._opening.acquire()
        _thread.start_new_thread(self._open, (db_file,))

    def _open(self, db_file: Path) -> None:
        try:
            from indexer.engine import duckdb  # the compiled engine alone: a report needs no more

            with contextlib.suppress(duckdb.Error):  # then _read_carefully names the problem
                self._con = duckdb.connect(str(db_file), read_only=True)
        finally:
            self._opening.release()

    def connection(self) -> duckdb.DuckDBPyConnection | None:
        """The open connection (the caller closes it), or None if DuckDB could not open the file."""
        with self._opening:  # waits for the thread
            con, self._con = self._con, None
        return con

    def close(self) -> None:
        """Wait for the thread and close the connection unless it was handed over."""
        con = self.connection()
        if con is not None:
            con.close()


def _open_early(db: Path | None) -> _Opening | None:
    """Start opening the index for a report computed here, before the report's own work.

    Importing DuckDB's engine and opening the file take ~45 ms, mostly outside the GIL: meanwhile
    the main thread imports the report code and reads the settings and prices. None when a run
    file names a service (it may answer) or there is no file to open.
    """
    from indexer.paths import db_path, run_file

    db_file = db_path(db)
    if run_file(db_file).exists() or not db_file.exists():
        return None
    return _Opening(db_file)


def _fetch(db: Path | None, path: str, params: dict[str, str], local: Compute, opening: _Opening | None) -> Answer:
    """The report from the live service when one holds the index, else computed from the file
    (through `opening` when _open_early started opening it)."""
    from api.cli_status import served
    from indexer.paths import db_path, pricing_file

    db_file = db_path(db)
    service = served(db_file)
    if service is not None:
        from indexer.pricing import check_user_file

        check_user_file(pricing_file())  # as without the service: a bad price file is an error
        answer: Answer = service.get_json(path, params)
        return answer
    from indexer.pricing import load_book

    book = load_book(pricing_file())
    if not db_file.exists():  # nothing indexed yet, or a mistyped --db: an empty report, and a hint
        note_no_index(db_file)
    quick = _read_quickly(db_file, book, local, opening) if db_file.exists() else None
    return quick if quick is not None else _read_carefully(db_file, book, local)


def _read_quickly(db_file: Path, book: PriceBook, local: Compute, opening: _Opening | None) -> Answer | None:
    """The answer from the index opened read-only by DuckDB itself, or None (see _read_carefully).

    Read-only: nothing is written, and several reports (or `cco index status`) run at once.
    """
    from indexer.engine import duckdb  # the compiled engine alone: a report needs no more
    from indexer.pricing import ready_to_read

    if opening is not None:
        con = opening.connection()
        if con is None:
            return None
    else:
        try:
            con = duckdb.connect(str(db_file), read_only=True)
        except duckdb.Error:
            return None
    answer = None
    try:
        answer = local(con) if ready_to_read(con, book) else None
    except duckdb.Error:
        pass
    finally:
        if answer is None or leave_open is None:
            con.close()
        else:
            leave_open.append(con)
    return answer


def _read_carefully(db_file: Path, book: PriceBook, local: Compute) -> Answer:
    """The answer when a quick read could not give it: through `Index`, which names any problem.

    Read-only when that is enough; else opened for writing, migrated and priced first. An index
    that does not exist yet gives an empty report, without creating a file where a mistyped --db
    points (store.read_priced).
    """
    from indexer.store import read_priced

    return read_priced(db_file, book, lambda index: local(index.con))


def _keep(answer: Answer) -> None:
    """Leave `answer` for the process's end (see leave_open) rather than free it on return."""
    if leave_open is not None:
        leave_open.append(answer)


def _period(
    kind: str,
    *,
    since: str | None,
    until: str | None,
    timezone: str | None,
    project: str | None,
    breakdown: bool,
    instances: bool,
    mode: str | None,
    order: str,
    json: bool,
    db: Path | None,
    start_of_week: str = "sunday",
    opening: _Opening | None = None,
) -> None:
    from indexer.reports import period_report, report_options

    opts = report_options(
        since=since,
        until=until,
        timezone=timezone,
        project=project,
        mode=_cost_mode(mode),
        order=order,
        start_of_week=start_of_week,
        instances=instances,
    )
    params = {
        "timezone": opts.timezone,
        "mode": opts.mode,
        "order": opts.order,
        "instances": "true" if opts.instances else "false",
    }
    if kind == "weekly":
        params["start_of_week"] = opts.start_of_week
    if opts.since:
        params["since"] = opts.since.isoformat()
    if opts.until:
        params["until"] = opts.until.isoformat()
    if opts.project:
        params["project"] = opts.project
    if json:
        load_json()  # while the index opens (see _open_early)
    data = _fetch(db, f"/api/reports/{kind}", params, lambda con: period_report(con, kind, opts), opening)
    _keep(data)
    if json:
        print_json(data)
    else:
        render_period(kind, data, breakdown=breakdown, timezone=opts.timezone)
        from indexer.reports import LIST_KEY

        groups = data["projects"].values() if "projects" in data else [data[LIST_KEY[kind]]]
        _note_unpriced({m for rows in groups for row in rows for m in row["modelsUsed"]}, opts.mode)


def _blocks(
    *,
    active: bool,
    recent: bool,
    token_limit: str | None,
    session_length: float | None,
    mode: str | None,
    json: bool,
    db: Path | None,
    opening: _Opening | None = None,
) -> None:
    from indexer.blocks import block_options, blocks_report

    opts = block_options(
        session_length=session_length, token_limit=token_limit, active=active, recent=recent, mode=_cost_mode(mode)
    )
    params = {
        "session_length": repr(opts.session_hours),
        "active": "true" if active else "false",
        "recent": "true" if recent else "false",
        "mode": opts.mode,
    }
    if opts.token_limit is not None:
        params["token_limit"] = str(opts.token_limit)
    if json:
        load_json()  # while the index opens (see _open_early)
    data = _fetch(db, "/api/reports/blocks", params, lambda con: blocks_report(con, opts), opening)
    _keep(data)
    if json:
        print_json(data)
    else:
        render_blocks(data, active_only=active, hours=opts.session_hours)
        _note_unpriced({m for b in data["blocks"] for m in b["models"]}, opts.mode)


def _note_unpriced(models: set[str], mode: str) -> None:
    """A table's reader learns which models were counted at $0 for want of a price (as `cco index
    status` lists them); JSON output stays as ccusage's."""
    if mode == "display":
        return
    import sys

    from indexer.errors import CcoError
    from indexer.paths import pricing_file
    from indexer.pricing import load_book

    try:
        book = load_book(pricing_file())
    except CcoError:
        return  # a bad price file stopped the report already
    missing = sorted(m for m in models if book.match(m) is None)
    if missing:
        print(
            f"cco: note: no price for {', '.join(missing)}: calls without a recorded costUSD count $0 "
            "(add a price: cco config pricing update MODEL --input USD --output USD)",
            file=sys.stderr,
        )


# --- tables -------------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def _short_model(name: str) -> str:
    return re.sub(r"-\d{8}$", "", name.removeprefix("claude-"))


def _numbers(d: dict[str, Any], cost_key: str, compact: bool) -> list[str]:
    total = d["inputTokens"] + d["outputTokens"] + d["cacheCreationTokens"] + d["cacheReadTokens"]
    cache = [] if compact else [_n(d["cacheCreationTokens"]), _n(d["cacheReadTokens"])]
    return [_n(d["inputTokens"]), _n(d["outputTokens"]), *cache, _n(total), _usd(d[cost_key])]


def _local_date(instant: Any, zone: ZoneInfo) -> str:
    """The report zone's date of an instant as rows give it ("2026-01-01T00:00:00.000Z"): the
    date the daily report files that call under, not the UTC one."""
    if not isinstance(instant, str):
        return ""
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(zone).date().isoformat()


def render_period(kind: str, data: dict[str, Any], *, breakdown: bool, timezone: str) -> None:
    """A rich table per report (one per project with --instances), totals last; no cache columns when narrow."""
    from zoneinfo import ZoneInfo

    from rich import box
    from rich.table import Table

    from api.output import console
    from indexer.reports import ROW_KEY

    key = ROW_KEY[kind]
    rows_by_project: dict[str, list[dict[str, Any]]] = data.get("projects") or {}
    groups = rows_by_project if "projects" in data else {"": next(v for k, v in data.items() if k != "totals")}
    if not any(groups.values()):
        console.print("No usage in the index for this report.", highlight=False)
        return
    compact = console.width < (120 if kind == "session" else 100)
    session = kind == "session"
    zone = ZoneInfo(timezone)
    title = f"cco {kind} report ({timezone})"
    for project, rows in groups.items():
        table = Table(title=f"{title}: {project}" if project else title, box=box.SIMPLE_HEAD)
        table.add_column(_TITLES[kind], no_wrap=True)
        if session:
            if not compact:
                table.add_column("Project", overflow="fold", max_width=32)
            table.add_column("Last", no_wrap=True)
        table.add_column("Models", overflow="fold")
        names = (
            ["Input", "Output", "Tokens", "USD"]
            if compact
            else ["Input", "Output", "Cache W", "Cache R", "Tokens", "USD"]
        )
        for name in names:
            table.add_column(name, justify="right", no_wrap=True)
        pad = ([""] if compact else ["", ""]) if session else []
        for row in rows:
            lead = [str(row[key])[:8]] if session else [str(row[key])]
            if session:
                lead += [] if compact else [row.get("projectPath", "")]
                lead.append(_local_date(row.get("lastActivity"), zone))
            models = "\n".join(_short_model(m) for m in row["modelsUsed"])
            table.add_row(*lead, models, *_numbers(row, "totalCost", compact))
            if breakdown:
                for m in row["modelBreakdowns"]:
                    cells = _numbers(m, "cost", compact)
                    table.add_row("", *pad, f"└ {_short_model(m['modelName'])}", *cells, style="dim")
        if len(groups) == 1:
            table.add_section()
            table.add_row("Total", *pad, "", *_numbers(data["totals"], "totalCost", compact), style="bold")
        console.print(table)
    if len(groups) > 1:
        t = data["totals"]
        console.print(f"Total: {_n(t['totalTokens'])} tokens, {_usd(t['totalCost'])}", style="bold", highlight=False)


def _local(iso: str) -> str:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M")


def render_blocks(data: dict[str, Any], *, active_only: bool, hours: float = 5) -> None:
    """A rich table of blocks (times in this machine's zone), with burn rate and projection when active."""
    from rich import box
    from rich.table import Table

    from api.output import console

    blocks = data["blocks"]
    if not blocks:
        console.print("No active block." if active_only else "No usage in the index.", highlight=False)
        return
    limited = any(b.get("tokenLimitStatus") for b in blocks)
    table = Table(title=f"cco {hours:g}-hour blocks (local time)", box=box.SIMPLE_HEAD)
    table.add_column("Block start", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    table.add_column("Models", overflow="fold")
    table.add_column("Tokens", justify="right", no_wrap=True)
    if limited:
        table.add_column("% of limit", justify="right", no_wrap=True)
    table.add_column("USD", justify="right", no_wrap=True)
    for b in blocks:
        if b["isGap"]:
            status = "gap"
        elif b["isActive"]:
            status = "ACTIVE"
        else:
            status = f"{b['entries']} calls"
        cells = [_local(b["startTime"]), status, "\n".join(_short_model(m) for m in b["models"]), _n(b["totalTokens"])]
        if limited:
            lim = b.get("tokenLimitStatus")
            # the active block is judged by its projection to its end (as ccusage does): say so
            projected = " (projected)" if b["isActive"] and b["projection"] else ""
            cells.append(f"{lim['percentUsed']:.1f}% {lim['status']}{projected}" if lim else "")
        cells.append(_usd(b["costUSD"]))
        table.add_row(*cells, style="dim" if b["isGap"] else ("bold" if b["isActive"] else None))
    console.print(table)
    for b in blocks:
        if b["isActive"] and b["projection"]:
            p, rate = b["projection"], b["burnRate"]
            burn = f"burn {_n(rate['tokensPerMinute'])} tok/min ({_usd(rate['costPerHour'])}/h); " if rate else ""
            console.print(
                f"Active block: {burn}projected {_n(p['totalTokens'])} tokens, {_usd(p['totalCost'])} "
                f"at {_local(b['endTime'])[11:]} ({p['remainingMinutes']} min left)",
                highlight=False,
            )
