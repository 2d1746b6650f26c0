"""`GET /api/metrics/*`: live windows, tiers, recent calls, projects, models, current activity, feed.

The idea: a route only parses its query string (a bad value is a 400 whose JSON `error` says
which parameter and why) and hands a query function from indexer/metrics.py or
indexer/activity.py to the thread pool, with a fresh read cursor, so DuckDB never blocks the
event loop. One `Memo` (shareable with the snapshot task) keeps whatever does not depend on the
clock (all-time aggregates, recent calls, activity pages) until the next index commit.
Dates (`from`, `to`) are ISO-8601; without a zone they are UTC; a bare date `to` includes that
day. `from` is inclusive, `to` exclusive. `mode` (auto|calculate|display) overrides the cost mode.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from api.context import AppContext
from api.routes.params import BadParam, error, int_param, json_response, only_params
from indexer.activity import ACTIVITY_DEFAULT, ACTIVITY_MAX, EVENT_TYPES, ActivityQuery, activity, current
from indexer.engine import duckdb
from indexer.errors import BadInput
from indexer.metrics import (
    RECENT_DEFAULT,
    RECENT_MAX,
    WINDOWS,
    Memo,
    model_stats,
    project_named,
    project_stats,
    realtime,
    recent_calls,
    tier_detail,
    window_stats,
)
from indexer.pricing import check_cost_mode
from schemas.pricing import TIERS

DEFAULT_WINDOW = "1m"
_SPACED_OFFSET = re.compile(r"\d\d:\d\d(:\d\d(\.\d+)?)? \d\d:\d\d$")  # time, then " hh:mm"
MAX_OFFSET = 1_000_000_000

Query = Callable[[duckdb.DuckDBPyConnection], dict[str, Any]]


_EDGES = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def instant_param(request: Request, name: str, *, end: bool = False) -> datetime | None:
    """An ISO-8601 date or date-time; naive means UTC; a bare date `end` means the next midnight."""
    raw = request.query_params.get(name)
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    if _SPACED_OFFSET.search(text):  # an unencoded "+01:00" arrives as " 01:00"
        text = text[:-6] + "+" + text[-5:]
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            value = start + timedelta(days=1) if end and day < date.max else start
        else:
            value = datetime.fromisoformat(text)
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except ValueError:
        raise BadParam(
            f"{name} must be an ISO-8601 date or date-time (e.g. 2026-02-10T22:57:57Z), got {raw!r}"
        ) from None
    except OverflowError:  # within a day of year 1 or 9999, in UTC: before or after every call
        value = _EDGES[0] if text.startswith("0001") else _EDGES[1]
    return value


def mode_param(request: Request, ctx: AppContext) -> str:
    return check_cost_mode(request.query_params.get("mode") or ctx.cost_mode, "mode")


def types_param(request: Request) -> frozenset[str]:
    raw = request.query_params.get("type")
    if raw is None or not raw.strip():
        return frozenset(EVENT_TYPES)
    types = {t.strip() for t in raw.split(",") if t.strip()}
    unknown = sorted(types - set(EVENT_TYPES))
    if unknown:
        raise BadParam(f"type must be one or more (comma-separated) of {', '.join(EVENT_TYPES)}, got {unknown[0]!r}")
    return frozenset(types)


def routes(
    ctx: AppContext, *, clock: Callable[[], datetime] | None = None, memo: Memo | None = None
) -> list[BaseRoute]:
    """The /api/metrics/* routes over the service's index (health lives with the runtime).

    `clock` gives "now" (tz-aware; default the system clock), so tests can fix the windows;
    `memo` lets the service share one with `compute_snapshot` (default: a new one).
    """
    memo = memo if memo is not None else Memo()

    def endpoint(parse: Callable[[Request], Query], *known: str) -> Callable[[Request], Awaitable[Response]]:
        """The endpoint answering `parse(request)`'s query; `known`: its query parameters."""

        async def handle(request: Request) -> Response:
            try:
                only_params(request, *known)
                query = parse(request)
            except (BadParam, BadInput) as exc:
                return error(400, str(exc))

            def run() -> dict[str, Any]:
                cur = ctx.reader()
                try:
                    return query(cur)
                finally:
                    cur.close()

            try:
                return json_response(await run_in_threadpool(run))
            except BadInput as exc:  # a parameter only the index can judge (an ambiguous project)
                return error(400, str(exc))

        return handle

    def now() -> datetime:
        return clock() if clock is not None else datetime.now(UTC)

    def stats(request: Request) -> Query:
        window = request.query_params.get("window") or DEFAULT_WINDOW
        if window not in WINDOWS:
            raise BadParam(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
        mode = mode_param(request, ctx)
        return lambda con: window_stats(con, now=now(), window=window, mode=mode, memo=memo)

    def live(request: Request) -> Query:
        mode = mode_param(request, ctx)
        return lambda con: realtime(con, now=now(), mode=mode, memo=memo)

    async def tier(request: Request) -> Response:
        name = request.path_params["tier"]
        if name not in TIERS:
            return error(404, f"unknown tier {name!r}; use one of {', '.join(TIERS)}")

        def parse(request: Request) -> Query:
            mode = mode_param(request, ctx)
            return lambda con: tier_detail(con, name, now=now(), mode=mode, memo=memo)

        return await endpoint(parse, "mode")(request)

    def recent(request: Request) -> Query:
        limit = int_param(request, "limit", RECENT_DEFAULT, 1, RECENT_MAX)
        mode = mode_param(request, ctx)
        return lambda con: recent_calls(con, limit=limit, mode=mode, memo=memo)

    def now_doing(request: Request) -> Query:
        mode = mode_param(request, ctx)
        return lambda con: current(con, machine=ctx.machine, mode=mode, memo=memo)

    def projects(request: Request) -> Query:
        mode = mode_param(request, ctx)
        return lambda con: project_stats(con, mode=mode, memo=memo)

    def models(request: Request) -> Query:
        mode = mode_param(request, ctx)
        project = request.query_params.get("project") or None
        return lambda con: model_stats(
            con, mode=mode, memo=memo, project=project_named(con, project, memo) if project else None
        )

    def feed(request: Request) -> Query:
        start = instant_param(request, "from")
        end = instant_param(request, "to", end=True)
        if start is not None and end is not None and start > end:
            raise BadParam("from must not be after to")
        query = ActivityQuery(
            limit=int_param(request, "limit", ACTIVITY_DEFAULT, 1, ACTIVITY_MAX),
            offset=int_param(request, "offset", 0, 0, MAX_OFFSET),
            types=types_param(request),
            project=request.query_params.get("project") or None,
            start=start,
            end=end,
        )
        mode = mode_param(request, ctx)

        def answer(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            if query.project:
                named, sessions = project_named(con, query.project, memo)
                return activity(con, dataclasses.replace(query, project=named, sessions=sessions), mode=mode, memo=memo)
            return activity(con, query, mode=mode, memo=memo)

        return answer

    return [
        Route("/api/metrics/stats", endpoint(stats, "window", "mode"), methods=["GET"]),
        Route("/api/metrics/realtime", endpoint(live, "mode"), methods=["GET"]),
        Route("/api/metrics/tiers/{tier}", tier, methods=["GET"]),
        Route("/api/metrics/recent", endpoint(recent, "limit", "mode"), methods=["GET"]),
        Route("/api/metrics/current", endpoint(now_doing, "mode"), methods=["GET"]),
        Route("/api/metrics/projects", endpoint(projects, "mode"), methods=["GET"]),
        Route("/api/metrics/models", endpoint(models, "mode", "project"), methods=["GET"]),
        Route(
            "/api/metrics/activity",
            endpoint(feed, "limit", "offset", "type", "project", "from", "to", "mode"),
            methods=["GET"],
        ),
    ]
