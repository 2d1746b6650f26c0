"""`GET /api/reports/{daily|weekly|monthly|session|blocks}`: the `cco report` documents over HTTP.

The idea: query strings carry the CLI's options (same names, `_` for `-`), are validated by the
same indexer functions, and the answer is the same JSON; bad values are a 400 with the one-line
message. Queries run in the thread pool on a fresh read cursor, so the event loop never waits on
DuckDB. The service keeps `prices` current for the whole index; these routes only read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.context import AppContext
from indexer.blocks import block_options, blocks_report
from indexer.errors import BadInput
from indexer.reports import PERIODS, period_report, report_options

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _param(request: Request, name: str) -> str | None:
    """A query parameter by its snake_case or kebab-case name."""
    q = request.query_params
    value = q.get(name)
    return value if value is not None else q.get(name.replace("_", "-"))


def _flag(request: Request, name: str) -> bool:
    value = _param(request, name)
    if value is None:
        return False
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise BadInput(f"{name} must be true or false, got {value!r}")


def _answer(ctx: AppContext, compute: Callable[[Any], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    def run() -> dict[str, Any]:
        cur = ctx.reader()
        try:
            return compute(cur)
        finally:
            cur.close()

    return run


def routes(ctx: AppContext) -> list[BaseRoute]:
    """The report routes over the service's index."""

    async def period(request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in PERIODS:
            return JSONResponse({"error": f"unknown report {kind!r}"}, status_code=404)
        try:
            opts = report_options(
                since=_param(request, "since"),
                until=_param(request, "until"),
                timezone=_param(request, "timezone"),
                project=_param(request, "project"),
                mode=_param(request, "mode") or ctx.cost_mode,
                order=_param(request, "order") or "asc",
                start_of_week=_param(request, "start_of_week") or "sunday",
                instances=_flag(request, "instances"),
            )
        except BadInput as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        data = await run_in_threadpool(_answer(ctx, lambda con: period_report(con, kind, opts)))
        return JSONResponse(data)

    async def blocks(request: Request) -> Response:
        try:
            opts = block_options(
                session_length=_param(request, "session_length"),
                token_limit=_param(request, "token_limit"),
                active=_flag(request, "active"),
                recent=_flag(request, "recent"),
                mode=_param(request, "mode") or ctx.cost_mode,
            )
        except BadInput as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        data = await run_in_threadpool(_answer(ctx, lambda con: blocks_report(con, opts)))
        return JSONResponse(data)

    return [
        Route("/api/reports/blocks", blocks, methods=["GET"]),
        Route("/api/reports/{kind}", period, methods=["GET"]),
    ]
