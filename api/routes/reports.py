"""`GET /api/reports/{daily|weekly|monthly|session|blocks}`: the `cco report` documents over HTTP.

The idea: query strings carry the CLI's options (same names, `_` for `-`), are validated by the
same indexer functions, and the answer is the same JSON; bad values are a 400 with the one-line
message. Queries run in the thread pool on a fresh read cursor, so the event loop never waits on
DuckDB. The service keeps `prices` current for the whole index; these routes only read.

A report depends on the index content alone, so a `Memo` keeps its encoded body until the index
changes: a repeated request costs a version check, not a scan. Blocks also depend on the time
(what is active, projections) while a block can still be active: then only their per-bucket sums
are kept and the blocks are chained for each request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api.context import AppContext
from api.routes.params import only_params
from indexer.blocks import block_options, blocks_from_buckets, bucket_rows, settled
from indexer.errors import BadInput
from indexer.metrics import Memo
from indexer.reports import PERIODS, period_report, report_options

if TYPE_CHECKING:
    import duckdb

PERIOD_PARAMS = ("since", "until", "timezone", "project", "mode", "order", "start_of_week", "instances", "breakdown")
BLOCK_PARAMS = ("session_length", "token_limit", "active", "recent", "mode")
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


def _body(data: dict[str, Any]) -> bytes:
    """The response body JSONResponse would send for `data`."""
    return bytes(JSONResponse(data).body)


def _answer(
    ctx: AppContext, memo: Memo, key: Hashable, compute: Callable[[duckdb.DuckDBPyConnection], Any]
) -> Callable[[], Any]:
    """compute(cursor), kept by `memo` under `key` until the index changes."""

    def run() -> Any:
        cur = ctx.reader()
        try:
            return memo.get(cur, key, lambda: compute(cur))
        finally:
            cur.close()

    return run


def routes(ctx: AppContext, memo: Memo | None = None) -> list[BaseRoute]:
    """The report routes over the service's index; `memo` may be shared with other routes."""
    memo = memo if memo is not None else Memo()

    async def period(request: Request) -> Response:
        kind = request.path_params["kind"]
        if kind not in PERIODS:
            return JSONResponse({"error": f"unknown report {kind!r}"}, status_code=404)
        try:
            only_params(request, *(p for p in PERIOD_PARAMS if kind == "weekly" or p != "start_of_week"))
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
        key = ("report", kind, opts)
        body = await run_in_threadpool(_answer(ctx, memo, key, lambda con: _body(period_report(con, kind, opts))))
        return Response(body, media_type="application/json")

    async def blocks(request: Request) -> Response:
        try:
            only_params(request, *BLOCK_PARAMS)
            opts = block_options(
                session_length=_param(request, "session_length"),
                token_limit=_param(request, "token_limit"),
                active=_flag(request, "active"),
                recent=_flag(request, "recent"),
                mode=_param(request, "mode") or ctx.cost_mode,
            )
        except BadInput as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

        def compute(con: duckdb.DuckDBPyConnection) -> tuple[list[tuple[Any, ...]], bytes | None]:
            buckets = bucket_rows(con, opts)
            now = datetime.now(UTC)
            done = settled(buckets, opts, now) and not opts.recent  # the same answer until the index changes
            return buckets, _body(blocks_from_buckets(buckets, opts, now)) if done else None

        buckets, body = await run_in_threadpool(_answer(ctx, memo, ("report-blocks", opts), compute))
        if body is not None:
            return Response(body, media_type="application/json")
        return JSONResponse(blocks_from_buckets(buckets, opts))

    return [
        Route("/api/reports/blocks", blocks, methods=["GET"]),
        Route("/api/reports/{kind}", period, methods=["GET"]),
    ]
