"""`cco report …`: daily, weekly, monthly, session and 5-hour block reports (issue 5).

The idea: a report is a JSON document (ccusage's shapes). It comes from the running service when
one holds the index (DuckDB lets one process open the file), else from the index opened here;
tables are drawn from that same document, so both paths print the same thing. Arguments are
validated before anything is opened, and the indexer modules are imported only when a command runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from api.output import console, print_json

if TYPE_CHECKING:
    import duckdb

    from indexer.pricing import PriceBook
    from indexer.store import Index

report_app = typer.Typer(help="Usage and cost reports from the index.", no_args_is_help=True)

SinceOpt = Annotated[str | None, typer.Option("--since", "-s", help="First day (YYYY-MM-DD), in --timezone.")]
UntilOpt = Annotated[str | None, typer.Option("--until", "-u", help="Last day (YYYY-MM-DD), in --timezone.")]
TzOpt = Annotated[
    str | None, typer.Option("--timezone", "-z", help="IANA zone that days are counted in. Default: the system's.")
]
ProjectOpt = Annotated[
    str | None,
    typer.Option("--project", "-p", help="Only this project (its path, last folder or Claude's folder name)."),
]
BreakdownOpt = Annotated[bool, typer.Option("--breakdown", "-b", help="Add a row per model to the table.")]
InstancesOpt = Annotated[bool, typer.Option("--instances", "-i", help="Group by project.")]
ModeOpt = Annotated[
    str | None,
    typer.Option("--mode", "-m", help="Cost: auto (recorded costUSD, else prices), calculate or display."),
]
OrderOpt = Annotated[str, typer.Option("--order", "-o", help="asc (oldest first) or desc.")]
JsonOpt = Annotated[bool, typer.Option("--json", "-j", help="Print JSON (ccusage's shapes).")]
DbOpt = Annotated[Path | None, typer.Option("--db", help="Index file. Default: the cco data folder.")]
WeekOpt = Annotated[str, typer.Option("--start-of-week", help="First day of a week (sunday, monday, ...).")]

_TITLES = {"daily": "Date", "weekly": "Week", "monthly": "Month", "session": "Session"}


def _cost_mode(mode: str | None) -> str:
    """--mode when given (checked), else the configured default."""
    from indexer.settings import resolve_cost_mode

    return resolve_cost_mode(mode)


def _fetch(
    db: Path | None, path: str, params: dict[str, str], local: Callable[[duckdb.DuckDBPyConnection], Any]
) -> Any:
    """The report from the live service when one holds the index, else computed from the file."""
    from indexer.paths import default_db, pricing_file, run_file

    db_file = (db or default_db()).expanduser()
    service = None
    if run_file(db_file).exists():  # only then pay for importing the HTTP client
        from api.client import service_for

        service = service_for(db_file)
    if service is not None:
        return service.get_json(path, params)
    from indexer.pricing import apply_prices, load_book
    from indexer.store import Index

    book = load_book(pricing_file())
    if db_file.exists():
        reader = _reader(db_file, book)
        if reader is not None:
            with reader as index:
                return local(index.con)
    # No index yet: an empty report, without creating a file where a mistyped --db points.
    with Index(db_file if db_file.exists() else Path(":memory:")) as index:
        apply_prices(index.con, book, all_models=False)
        return local(index.con)


def _reader(db_file: Path, book: PriceBook) -> Index | None:
    """The index opened read-only, when that is enough: migrated, and its prices are `book`'s.

    Then nothing is written and several reports (or `cco index status`) can run at once. The
    priced_calls view is recreated as a TEMP view, so the definition is this version's even if the
    file's was written by an older one. None: open it for writing (migrate, add prices) instead.
    """
    import duckdb

    from indexer.migrations import MIGRATIONS
    from indexer.pricing import PRICED_VIEW, prices_current
    from indexer.store import Index

    temp_view = PRICED_VIEW.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW", 1)
    if temp_view == PRICED_VIEW:
        return None
    index = Index(db_file, read_only=True)
    try:
        done = {r[0] for r in index.con.execute("SELECT name FROM migrations").fetchall()}
        if done >= {name for name, _ in MIGRATIONS} and prices_current(index.con, book):
            index.con.execute(temp_view)
            return index
    except duckdb.Error:
        pass
    index.con.close()
    return None


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
        "start_of_week": opts.start_of_week,
        "instances": "true" if opts.instances else "false",
    }
    if opts.since:
        params["since"] = opts.since.isoformat()
    if opts.until:
        params["until"] = opts.until.isoformat()
    if opts.project:
        params["project"] = opts.project
    data = _fetch(db, f"/api/reports/{kind}", params, lambda con: period_report(con, kind, opts))
    if json:
        print_json(data)
    else:
        render_period(kind, data, breakdown=breakdown, timezone=opts.timezone)


@report_app.command("daily")
def daily_cmd(
    since: SinceOpt = None,
    until: UntilOpt = None,
    timezone: TzOpt = None,
    project: ProjectOpt = None,
    breakdown: BreakdownOpt = False,
    instances: InstancesOpt = False,
    mode: ModeOpt = None,
    order: OrderOpt = "asc",
    json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Usage and cost per day."""
    _period("daily", **locals())


@report_app.command("weekly")
def weekly_cmd(
    since: SinceOpt = None,
    until: UntilOpt = None,
    timezone: TzOpt = None,
    project: ProjectOpt = None,
    breakdown: BreakdownOpt = False,
    instances: InstancesOpt = False,
    mode: ModeOpt = None,
    order: OrderOpt = "asc",
    start_of_week: WeekOpt = "sunday",
    json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Usage and cost per week."""
    _period("weekly", **locals())


@report_app.command("monthly")
def monthly_cmd(
    since: SinceOpt = None,
    until: UntilOpt = None,
    timezone: TzOpt = None,
    project: ProjectOpt = None,
    breakdown: BreakdownOpt = False,
    instances: InstancesOpt = False,
    mode: ModeOpt = None,
    order: OrderOpt = "asc",
    json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Usage and cost per month."""
    _period("monthly", **locals())


@report_app.command("session")
def session_cmd(
    since: SinceOpt = None,
    until: UntilOpt = None,
    timezone: TzOpt = None,
    project: ProjectOpt = None,
    breakdown: BreakdownOpt = False,
    instances: InstancesOpt = False,
    mode: ModeOpt = None,
    order: OrderOpt = "asc",
    json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Usage and cost per Claude Code session."""
    _period("session", **locals())


@report_app.command("blocks")
def blocks_cmd(
    active: Annotated[bool, typer.Option("--active", "-a", help="Only the active block, with its projection.")] = False,
    recent: Annotated[
        bool, typer.Option("--recent", "-r", help="Blocks of the last 3 days and the active one.")
    ] = False,
    token_limit: Annotated[
        str | None, typer.Option("--token-limit", "-t", help="Tokens per block to warn at, or 'max' (largest past).")
    ] = None,
    session_length: Annotated[
        float | None, typer.Option("--session-length", "-n", help="Block length in hours (default 5).")
    ] = None,
    mode: ModeOpt = None,
    json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Claude's 5-hour usage windows, with burn rate and projection."""
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
    data = _fetch(db, "/api/reports/blocks", params, lambda con: blocks_report(con, opts))
    if json:
        print_json(data)
    else:
        render_blocks(data, active_only=active)


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


def render_period(kind: str, data: dict[str, Any], *, breakdown: bool, timezone: str) -> None:
    """A rich table per report (one per project with --instances), totals last; no cache columns when narrow."""
    from rich import box
    from rich.table import Table

    key = {"daily": "date", "weekly": "week", "monthly": "month", "session": "sessionId"}[kind]
    rows_by_project: dict[str, list[dict[str, Any]]] = data.get("projects") or {}
    groups = rows_by_project if "projects" in data else {"": next(v for k, v in data.items() if k != "totals")}
    if not any(groups.values()):
        console.print("No usage in the index for this report.", highlight=False)
        return
    compact = console.width < (120 if kind == "session" else 100)
    session = kind == "session"
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
                lead.append(str(row.get("lastActivity", ""))[:10])
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


def render_blocks(data: dict[str, Any], *, active_only: bool) -> None:
    """A rich table of blocks (times in this machine's zone), with burn rate and projection when active."""
    from rich import box
    from rich.table import Table

    blocks = data["blocks"]
    if not blocks:
        console.print("No active block." if active_only else "No usage in the index.", highlight=False)
        return
    limited = any(b.get("tokenLimitStatus") for b in blocks)
    table = Table(title="cco 5-hour blocks (local time)", box=box.SIMPLE_HEAD)
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
            cells.append(f"{lim['percentUsed']:.1f}% {lim['status']}" if lim else "")
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
