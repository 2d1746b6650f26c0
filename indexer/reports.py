"""Daily, weekly, monthly and session reports: one aggregate query, shaped like ccusage's JSON.

The idea: the heavy work is one GROUP BY over `priced_calls` (so the totals are those of
`cco index status`), keyed by local day. Over the time range of the data a zone's UTC offset is a
handful of constant pieces (two per year with daylight saving time), found once in Python's
zoneinfo; the local day of a call is then integer arithmetic in DuckDB:
`(epoch_us(ts) + offset of its piece) // one day`, with the pieces as a short CASE. That keeps a
report over a million calls to one scan and a hash table of day x model rows, where per-row ICU
`timezone()` conversion would cost more than everything else together (tests check both agree).
The few resulting rows are folded into weeks, months and per-model breakdowns in Python.

Timestamps in the index are naive UTC (a plain `ts::TIMESTAMPTZ` would read them in the session's
zone; `timezone('UTC', ts)` is the instant).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from indexer.errors import BadInput
from indexer.pricing import check_cost_mode, cost_expr
from indexer.settings import choice
from schemas import SYNTHETIC_MODEL

if TYPE_CHECKING:
    import duckdb

PERIODS = ("daily", "weekly", "monthly", "session")
WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
ORDERS = ("asc", "desc")
DAY_US = 86_400_000_000
# Costs are rounded to this many decimals: sums of floats depend on the order DuckDB's threads add
# them in, and the same report must print the same digits every time (and from the service).
COST_DECIMALS = 10
# The key of a period's rows in the JSON (ccusage's names) and of the list that holds them.
ROW_KEY = {"daily": "date", "weekly": "week", "monthly": "month", "session": "sessionId"}
LIST_KEY = {"daily": "daily", "weekly": "weekly", "monthly": "monthly", "session": "sessions"}
# iso_utc in DuckDB's strftime
ISO_SQL = "%Y-%m-%dT%H:%M:%S.%gZ"
# Patterns are compiled on first use (re caches them): a report process only needs some of them.
_DATE = r"^(\d{4})-?(\d{2})-?(\d{2})$"
_NOT_ALNUM = r"[^A-Za-z0-9]"
# Zones known without importing zoneinfo (~3 ms with the sysconfig it reads): many machines run in UTC.
_UTC_NAMES = ("UTC", "Etc/UTC")


class ReportOptions(NamedTuple):
    """A validated report request (build it with `report_options`)."""

    since: date | None = None
    until: date | None = None
    timezone: str = "UTC"
    project: str | None = None
    mode: str = "auto"
    order: str = "asc"
    start_of_week: str = "sunday"
    instances: bool = False


# --- arguments ----------------------------------------------------------------------------------


def parse_date(text: str, name: str) -> date:
    """YYYY-MM-DD (or ccusage's YYYYMMDD) -> date; BadInput names the option."""
    m = re.match(_DATE, text.strip())
    try:
        if m is None:
            raise ValueError
        return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        raise BadInput(f"{name} {text!r} is not a date; use YYYY-MM-DD") from None


def check_timezone(name: str) -> str:
    """The IANA zone name, if Python's zone database (which gives the offsets used) knows it."""
    if not name or name != name.strip() or ".." in name or name.startswith("/"):
        raise BadInput(f"unknown timezone {name!r}; use an IANA name such as Europe/Berlin or UTC")
    try:
        zone(name)
    except (LookupError, ValueError, OSError):  # LookupError: zoneinfo's ZoneInfoNotFoundError
        raise BadInput(f"unknown timezone {name!r}; use an IANA name such as Europe/Berlin or UTC") from None
    return name


def zone(name: str) -> tzinfo:
    """The zone of an IANA name (ZoneInfoNotFoundError if Python's zone database does not know it)."""
    if name in _UTC_NAMES:
        return UTC
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def system_timezone() -> str:
    """The IANA name of this machine's zone: $TZ, else /etc/localtime's target, else /etc/timezone, else UTC."""
    candidates: list[str] = []
    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        candidates.append(env)
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    except OSError:
        pass
    with contextlib.suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    for name in candidates:
        try:
            return check_timezone(name)
        except BadInput:
            continue
    return "UTC"


def _project_option(project: str | None) -> str | None:
    if project is not None and not project.strip("/\\ "):
        raise BadInput(f"--project needs a project name or path, got {project!r}")
    return project


def report_options(
    *,
    since: str | None = None,
    until: str | None = None,
    timezone: str | None = None,
    project: str | None = None,
    mode: str = "auto",
    order: str = "asc",
    start_of_week: str = "sunday",
    instances: bool = False,
) -> ReportOptions:
    """Validate user-given values (CLI options or query strings) into ReportOptions."""
    first = parse_date(since, "--since") if since is not None else None
    last = parse_date(until, "--until") if until is not None else None
    if first and last and first > last:
        raise BadInput(f"--since {first} is after --until {last}")
    return ReportOptions(
        since=first,
        until=last,
        timezone=check_timezone(timezone) if timezone is not None else system_timezone(),
        project=_project_option(project),
        mode=check_cost_mode(mode),
        order=choice(order, ORDERS, "--order"),
        start_of_week=choice(start_of_week, WEEKDAYS, "--start-of-week"),
        instances=instances,
    )


# --- helpers ------------------------------------------------------------------------------------


def money(value: float) -> float:
    """A cost as reports print it (see COST_DECIMALS)."""
    return round(float(value), COST_DECIMALS) + 0.0  # + 0.0 turns -0.0 into 0.0


def project_name(project: str) -> str:
    """Claude Code's folder name for a working directory (what ccusage calls the project)."""
    return re.sub(_NOT_ALNUM, "-", project)


def utc_bounds(opts: ReportOptions) -> tuple[datetime | None, datetime | None]:
    """Local [since 00:00, until+1 00:00) in the report's zone, as naive UTC for the index's ts."""
    tz = zone(opts.timezone)

    def start_of(day: date) -> datetime:
        local = datetime(day.year, day.month, day.day, tzinfo=tz)
        try:
            return local.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # within a day of year 1 or 9999: before or after every call
            return datetime.min if day.year == 1 else datetime.max

    lo = start_of(opts.since) if opts.since else None
    hi = start_of(opts.until + timedelta(days=1)) if opts.until and opts.until < date.max else None
    return lo, hi


def project_matches(project: str, name: str) -> bool:
    """Whether --project NAME means this project: its cwd, the cwd's last folder, or Claude Code's folder name."""
    name = name.rstrip("/\\") or name  # a path typed with a trailing slash names the same folder
    path = project.rstrip("/\\") or project
    return name in (path, re.split(r"[/\\]", path)[-1], project_name(project))


def _filters(con: duckdb.DuckDBPyConnection, opts: ReportOptions) -> tuple[str, list[Any]]:
    lo, hi = utc_bounds(opts)
    where: list[str] = ["true"]
    params: list[Any] = []
    if lo is not None:
        where.append("ts >= ?")
        params.append(lo)
    if hi is not None:
        where.append("ts < ?")
        params.append(hi)
    if opts.project:
        # Match the few distinct projects in Python, then filter by equality (no per-row regex).
        known = [r[0] for r in con.execute("SELECT DISTINCT project FROM calls").fetchall()]
        chosen = [p for p in known if project_matches(p, opts.project)]
        sessions = sessions_in_folder(con, opts.project)
        either = [
            *([f"project IN ({', '.join('?' * len(chosen))})"] if chosen else []),
            *([f"session IN ({', '.join('?' * len(sessions))})"] if sessions else []),
        ]
        where.append(f"({' OR '.join(either)})" if either else "false")
        params += chosen + sessions
    return " AND ".join(where), params


def sessions_in_folder(con: duckdb.DuckDBPyConnection, folder: str) -> list[str]:
    """The sessions whose transcripts Claude Code filed in project folder `folder` (`-work-app`).

    A call's project is its line's cwd, so a session that changed directory (`cd frontend`) has
    calls of several projects; the folder is where its file lives, whichever cwd its lines have.
    """
    from indexer.parse import FileContext  # the path rules of sessions and folders

    name = folder.strip()
    if not name or "/" in name or "\\" in name:
        return []
    paths = con.execute("SELECT path FROM files WHERE contains(path, ?)", [f"/{name}/"]).fetchall()
    found = {ctx.session for (path,) in paths if (ctx := FileContext.for_path(path)).project_fallback == name}
    return sorted(found)


def period_of(day: str, kind: str, start_of_week: str) -> str:
    """The period a local day (YYYY-MM-DD) falls in: the day, the week's first day, or the month."""
    if kind == "monthly":
        return day[:7]
    if kind == "weekly":
        d = date.fromisoformat(day)
        # isoweekday: Monday 1 .. Sunday 7; WEEKDAYS index: Sunday 0 .. Saturday 6.
        back = (d.isoweekday() % 7 - WEEKDAYS.index(start_of_week)) % 7
        return (d - timedelta(days=back)).isoformat()
    return day


class _Sums:
    """Token and cost sums of one report row, with the same per model."""

    __slots__ = ("cost", "cr", "cw", "first", "inp", "last", "models", "out", "project")

    def __init__(self) -> None:
        self.inp = self.out = self.cw = self.cr = 0
        self.cost = 0.0
        self.models: dict[str, list[float]] = {}
        self.first: str | None = None  # times as printed (ISO_SQL): the index keeps milliseconds, so
        self.last: str | None = None  # the text compares as the time does
        self.project: str | None = None

    def add(self, model: str, inp: int, out: int, cw: int, cr: int, cost: float) -> None:
        self.inp += inp
        self.out += out
        self.cw += cw
        self.cr += cr
        self.cost += cost
        if model != SYNTHETIC_MODEL:
            m = self.models.setdefault(model, [0, 0, 0, 0, 0.0])
            m[0] += inp
            m[1] += out
            m[2] += cw
            m[3] += cr
            m[4] += cost

    def tokens(self) -> dict[str, Any]:
        return {
            "inputTokens": self.inp,
            "outputTokens": self.out,
            "cacheCreationTokens": self.cw,
            "cacheReadTokens": self.cr,
            "totalTokens": self.inp + self.out + self.cw + self.cr,
            "totalCost": money(self.cost),
        }

    def json(self, key: str, value: str, times: bool) -> dict[str, Any]:
        """The report row `key: value` with these sums, times when asked, and the per-model part.

        One dict written out at once: a session report builds thousands of these.
        """
        cost = self.cost
        total = money(cost)
        row = _row(key, value, self.inp, self.out, self.cw, self.cr, total)
        if times:
            row["firstActivity"], row["lastActivity"] = self.first, self.last
        models = self.models
        # most rows have one model: no sorting then
        ordered = models.items() if len(models) < 2 else sorted(models.items(), key=_by_cost_then_name)
        row["modelsUsed"] = list(models) if len(models) < 2 else sorted(models)
        row["modelBreakdowns"] = [
            # round() is slow; most rows have one model
            _breakdown(name, m[0], m[1], m[2], m[3], total if m[4] == cost else money(m[4]))
            for name, m in ordered
        ]
        return row


def _by_cost_then_name(item: tuple[str, list[float]]) -> tuple[float, str]:
    return (-item[1][4], item[0])


# --- queries ------------------------------------------------------------------------------------


def offset_pieces(name: str, lo: datetime, hi: datetime) -> list[tuple[int, int]]:
    """[(from µs since the epoch, UTC offset in µs)] covering naive-UTC [lo, hi]; the first piece starts at lo.

    Offsets are sampled daily (zones change them at most a few times a year) and each change is
    found to the second by bisection.
    """
    z = zone(name)

    def offset(sec: int) -> int:
        delta = datetime.fromtimestamp(sec, UTC).astimezone(z).utcoffset()
        return int(delta.total_seconds()) if delta else 0

    first = int(lo.replace(tzinfo=UTC).timestamp())
    last = int(hi.replace(tzinfo=UTC).timestamp())
    current = offset(first)
    pieces = [(first * 1_000_000, current * 1_000_000)]
    t = first
    while t < last:
        nxt = min(t + 86_400, last)
        if offset(nxt) != current:
            a, b = t, nxt  # offset(a) == current != offset(b)
            while b - a > 1:
                mid = (a + b) // 2
                a, b = (mid, b) if offset(mid) == current else (a, mid)
            current = offset(b)
            pieces.append((b * 1_000_000, current * 1_000_000))
        t = nxt
    return pieces


def local_day_sql(pieces: list[tuple[int, int]]) -> str:
    """SQL for a priced_calls row's local day as days since 1970-01-01 (integers only: no ICU per row)."""
    if len(pieces) == 1:
        return f"(epoch_us(ts) + {pieces[0][1]}) // {DAY_US}"
    # Piece i holds until piece i+1 starts.
    cases = " ".join(f"WHEN epoch_us(ts) < {pieces[i + 1][0]} THEN {pieces[i][1]}" for i in range(len(pieces) - 1))
    return f"(epoch_us(ts) + CASE {cases} ELSE {pieces[-1][1]} END) // {DAY_US}"


def _day_rows(con: duckdb.DuckDBPyConnection, opts: ReportOptions) -> list[tuple[Any, ...]]:
    """(local day, project or '', model, input, output, cache write, cache read, cost) rows."""
    where, params = _filters(con, opts)
    if opts.timezone in _UTC_NAMES:
        pieces = [(0, 0)]  # one offset at all times: no need to know the time range
    else:
        # The time range the offset pieces must cover (calls, a superset of priced_calls: no join needed).
        span = con.execute(f"SELECT min(ts), max(ts) FROM calls WHERE {where}", params).fetchone()
        if span is None or span[0] is None:
            return []
        pieces = offset_pieces(opts.timezone, span[0], span[1])
    epoch = date(1970, 1, 1)
    project = "project" if opts.instances else "''"
    sql = f"""
        SELECT {local_day_sql(pieces)} AS day, {project} AS grp, model,
            sum(input_tokens)::BIGINT, sum(output_tokens)::BIGINT, sum(cache_creation_tokens)::BIGINT,
            sum(cache_read_tokens)::BIGINT, sum({cost_expr(opts.mode)})
        FROM priced_calls WHERE {where}
        GROUP BY ALL ORDER BY day, grp, model
    """
    rows = con.execute(sql, params).fetchall()
    return [((epoch + timedelta(days=r[0])).isoformat(), *r[1:]) for r in rows]


def _session_rows(con: duckdb.DuckDBPyConnection, opts: ReportOptions) -> list[tuple[Any, ...]]:
    """(session, project or '', model, sums..., cost, first time, last time, project of the last call) rows.

    Times come as ccusage prints them (ISO_SQL): formatted by DuckDB, not per row in Python.
    """
    where, params = _filters(con, opts)
    project = "project" if opts.instances else "''"
    sql = f"""
        SELECT session, {project} AS grp, model,
            sum(input_tokens)::BIGINT, sum(output_tokens)::BIGINT, sum(cache_creation_tokens)::BIGINT,
            sum(cache_read_tokens)::BIGINT, sum({cost_expr(opts.mode)}),
            strftime(min(ts), '{ISO_SQL}'), strftime(max(ts), '{ISO_SQL}'), arg_max(project, ts)
        FROM priced_calls WHERE {where}
        GROUP BY ALL ORDER BY session, grp, model
    """
    return con.execute(sql, params).fetchall()


def _totals(made: list[tuple[Any, str, dict[str, Any], float]]) -> dict[str, Any]:
    """The totals of report rows, their costs added in the report's order."""
    total = _Sums()
    for _, _, row, cost in made:
        total.inp += row["inputTokens"]
        total.out += row["outputTokens"]
        total.cw += row["cacheCreationTokens"]
        total.cr += row["cacheReadTokens"]
        total.cost += cost
    return total.tokens()


def period_report(con: duckdb.DuckDBPyConnection, kind: str, opts: ReportOptions) -> dict[str, Any]:
    """The report of `kind` (daily, weekly, monthly, session) as ccusage's JSON shape.

    `prices` must be current (pricing.apply_prices) before calling this.
    """
    if kind not in PERIODS:
        raise BadInput(f"unknown report {kind!r}; use one of {', '.join(PERIODS)}")
    names: dict[str, str] = {}

    def name_of(project: str) -> str:
        """project_name, once per project rather than once per row."""
        name = names.get(project)
        if name is None:
            name = names[project] = project_name(project)
        return name

    # (sort key, project name, report row, unrounded cost) per row of the report, unsorted
    made: list[tuple[str, str, dict[str, Any], float]] = []
    if kind == "session":
        made = _session_made(_session_rows(con, opts), name_of, opts.instances)
    else:
        groups: dict[tuple[str, str], _Sums] = {}
        for day, grp, model, inp, out, cw, cr, cost in _day_rows(con, opts):
            key = (name_of(grp), period_of(day, kind, opts.start_of_week))
            s = groups.get(key)
            if s is None:
                s = groups[key] = _Sums()
            s.add(model, inp, out, cw, cr, cost)
        for (name, period), s in groups.items():
            row = s.json(ROW_KEY[kind], period, False)
            if opts.instances:
                row["project"] = name
            made.append((period, name, row, s.cost))

    ordered = sorted(made, key=_first, reverse=opts.order == "desc")
    totals = _totals(ordered)
    if opts.instances:
        projects: dict[str, list[dict[str, Any]]] = {}
        for _, name, row, _ in sorted(ordered, key=_second):
            projects.setdefault(name, []).append(row)
        # Each project's rows keep the requested order (sorted() above is stable).
        return {"projects": projects, "totals": totals}
    return {LIST_KEY[kind]: [row for _, _, row, _ in ordered], "totals": totals}


_first = itemgetter(0)
_first_two = itemgetter(0, 1)
_second = itemgetter(1)


def _session_made(
    rows: list[tuple[Any, ...]], name_of: Callable[[str], str], instances: bool
) -> list[tuple[str, str, dict[str, Any], float]]:
    """(sort key, project name, report row, unrounded cost) per session of the _session_rows `rows`.

    The hot loop of a session report (thousands of sessions): a session with one row (most used
    one model) has its report row written out at once, as _Sums.json would make it. The sort key
    is (last time, session) as one string: the time holds no NUL, so it orders as the pair would,
    and strings compare faster than tuples.
    """
    group_of: Callable[[tuple[Any, ...]], Any] = _first_two  # (session, project or ''): rows come sorted
    grps = {r[1] for r in rows}
    if len({name_of(grp) for grp in grps}) < len(grps):  # two projects with one name: one group

        def group_of(r: tuple[Any, ...]) -> tuple[str, str]:
            return r[0], name_of(r[1])

        rows.sort(key=group_of)  # stable: each group's rows keep their order
    made: list[tuple[str, str, dict[str, Any], float]] = []
    append = made.append
    for (session, grp), rows_of in groupby(rows, group_of):
        name = name_of(grp)  # project_name(project_name(p)) == project_name(p)
        group = list(rows_of)
        if len(group) == 1:
            _, _, model, inp, out, cw, cr, cost, first, last, proj = group[0]
            total = money(cost)
            if model == SYNTHETIC_MODEL:
                used: list[str] = []
                breakdowns: list[dict[str, Any]] = []
            else:
                used = [model]
                breakdowns = [_breakdown(model, inp, out, cw, cr, total)]
            row = _row("sessionId", session, inp, out, cw, cr, total)
            row["firstActivity"], row["lastActivity"] = first, last
            row["modelsUsed"], row["modelBreakdowns"] = used, breakdowns
            row["projectPath"] = name_of(proj)
        else:
            sums = _Sums()
            for _, _, model, inp, out, cw, cr, cost, first, last, proj in group:
                sums.add(model, inp, out, cw, cr, cost)
                if sums.first is None or first < sums.first:
                    sums.first = first
                if sums.last is None or last >= sums.last:
                    sums.last, sums.project = last, proj
            row, cost, last = sums.json("sessionId", session, True), sums.cost, sums.last or ""
            row["projectPath"] = name_of(sums.project or "")
        if instances:
            row["project"] = name
        append((f"{last}\0{session}", name, row, cost))
    return made


def _breakdown(model: str, inp: Any, out: Any, cw: Any, cr: Any, cost: float) -> dict[str, Any]:
    """One entry of a row's modelBreakdowns."""
    return {
        "modelName": model,
        "inputTokens": inp,
        "outputTokens": out,
        "cacheCreationTokens": cw,
        "cacheReadTokens": cr,
        "cost": cost,
    }


def _row(key: str, value: str, inp: int, out: int, cw: int, cr: int, total: float) -> dict[str, Any]:
    """The head of a report row: `key: value` and the sums."""
    return {
        key: value,
        "inputTokens": inp,
        "outputTokens": out,
        "cacheCreationTokens": cw,
        "cacheReadTokens": cr,
        "totalTokens": inp + out + cw + cr,
        "totalCost": total,
    }
