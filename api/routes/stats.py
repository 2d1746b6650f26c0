"""The live endpoints: /api/stats (+ history), health, the SSE stream, /metrics, internal index calls.

The idea: `/api/stats` is the hot path (a TUI polls it), so it is a bare ASGI endpoint that sends
the newest ring entry's bytes as they are: no database, no serialisation, no per-request objects.
Everything that does touch the index (health, /metrics) runs in a worker thread on its own reader
cursor, so the event loop never waits on DuckDB. The `/api/index/*` endpoints let other `cco`
commands work while the service holds the index lock; they answer this machine's clients only.

Endpoints (JSON unless said otherwise; errors are `{"error": "..."}` with 400/403/503):
  GET  /api/stats                      the newest StatsSnapshot
  GET  /api/stats/history?range=10m    {"from", "to", "count", "capacity", "snapshots": [...]}
       ... or ?from=<ISO>&to=<ISO>     (to defaults to now; naive times are UTC)
  GET  /api/metrics/health             index, ingest, watcher, prices and catch-up state
  GET  /api/stream                     text/event-stream of {project, machine, activity}
  GET  /metrics                        Prometheus text: calls, tokens by kind, cost by model/project
  GET  /api/index/status               `cco index status --json`            (loopback only)
  POST /api/index/sync                 one sync pass now; its report         (loopback only)
  GET  /api/index/rejects?limit=50     `cco index rejects --json`           (loopback only)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from api.context import AppContext
from api.routes.params import BadParam, error, int_param, json_response, only_params, unavailable
from api.security import is_local_client
from api.service import RING_SIZE, STOPPING, LiveService
from indexer.engine import duckdb
from indexer.errors import BadInput, CcoError
from indexer.pricing import check_cost_mode, cost_expr
from indexer.status import REJECTS_DEFAULT, REJECTS_MAX, rejected_lines

HISTORY_RANGES = {"1m": 60, "5m": 300, "10m": 600, "30m": 1800, "1h": 3600}
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# --- /api/stats ------------------------------------------------------------------------------------


class LatestStats:
    """GET /api/stats as a bare ASGI app: the newest ring bytes, straight out."""

    _HEADERS = ((b"content-type", b"application/json"), (b"cache-control", b"no-store"))
    _EMPTY = orjson.dumps({"error": "no snapshot yet; the service is starting"})

    def __init__(self, service: LiveService) -> None:
        self.ring = service.ring
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.service.last_asked = time.monotonic()  # someone is watching (see LiveService.watched)
        data = self.ring.latest()
        status = 200
        if data is None:
            data, status = self._EMPTY, 503
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*self._HEADERS, (b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": data})


MAX_EPOCH_S = 253_402_300_799  # 9999-12-31T23:59:59Z, the last time a datetime holds


def parse_time(name: str, value: str) -> float:
    """An ISO-8601 time (naive = UTC; `Z` accepted) or epoch seconds -> epoch seconds, from 1970
    to 9999 (outside that, or NaN, is a BadParam: such a time cannot be printed back)."""
    text = value.strip()
    try:
        ts = float(text)
    except ValueError:
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            ts = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
        except (ValueError, OverflowError):
            raise BadParam(f"{name}: not an ISO-8601 time or epoch seconds: {value!r}") from None
    if not 0 <= ts <= MAX_EPOCH_S:  # also NaN
        hint = " (epoch seconds, not milliseconds)" if MAX_EPOCH_S < ts < MAX_EPOCH_S * 1000 else ""
        raise BadParam(f"{name}: {value!r} is not a time between 1970 and 9999{hint}")
    return ts


def history_bounds(params: dict[str, str], now: float) -> tuple[float, float]:
    unknown = sorted(set(params) - {"range", "from", "to"})
    if unknown:
        raise BadParam(f"unknown parameter {unknown[0]!r}; use range, or from and to")
    if "range" in params and ("from" in params or "to" in params):
        raise BadParam("give range, or from/to, not both")
    if "from" not in params and "to" in params:
        raise BadParam("to needs from")
    if "from" in params:
        start = parse_time("from", params["from"])
        end = parse_time("to", params["to"]) if "to" in params else now
        if start > end:
            raise BadParam("from is after to")
        return start, end
    name = params.get("range", "10m")
    if name not in HISTORY_RANGES:
        raise BadParam(f"range: unknown range {name!r}; use one of {', '.join(HISTORY_RANGES)}")
    return now - HISTORY_RANGES[name], now


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- /metrics --------------------------------------------------------------------------------------


def prometheus_text(con: duckdb.DuckDBPyConnection, mode: str) -> bytes:
    """Exact totals from the index at scrape time, in a fresh registry (nothing cached between scrapes)."""
    # Imported here: a scrape is rare, and start-up time counts (the first answer within 1 s).
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    rows = con.execute(
        f"""
        SELECT model, project, count(*) FILTER (WHERE NOT failed), count(*) FILTER (WHERE failed),
               sum(input_tokens), sum(output_tokens), sum(cache_creation_tokens), sum(cache_read_tokens),
               sum({cost_expr(mode)})
        FROM priced_calls GROUP BY model, project ORDER BY model, project
        """
    ).fetchall()
    calls = CounterMetricFamily(
        "cco_calls", "API calls in the index (replays excluded)", labels=["model", "project", "status"]
    )
    tokens = CounterMetricFamily("cco_tokens", "Tokens by kind", labels=["model", "project", "kind"])
    cost = GaugeMetricFamily(
        "cco_cost_usd", "Cost in USD at current prices (changes with prices)", labels=["model", "project"]
    )
    for model, project, ok, failed, inp, out, cache_w, cache_r, usd in rows:
        calls.add_metric([model, project, "ok"], ok)
        calls.add_metric([model, project, "failed"], failed)
        for kind, value in (("input", inp), ("output", out), ("cache_creation", cache_w), ("cache_read", cache_r)):
            tokens.add_metric([model, project, kind], int(value or 0))
        cost.add_metric([model, project], float(usd or 0.0))

    class Snapshot:
        def collect(self) -> list[Any]:
            return [calls, tokens, cost]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Snapshot())
    return bytes(generate_latest(registry))


# --- the routes --------------------------------------------------------------------------------------


def routes(ctx: AppContext, service: LiveService | None) -> list[BaseRoute]:
    """The live routes; without a running service, the ones that need it answer 503."""

    def not_running() -> Response:
        return error(503, "the live service is not running")

    async def stats_down(request: Request) -> Response:
        return not_running()

    async def history(request: Request) -> Response:
        if service is None:
            return not_running()
        try:
            start, end = history_bounds(dict(request.query_params), time.time())
        except BadParam as exc:
            return error(400, str(exc))
        items = service.ring.between(start, end)
        head = orjson.dumps({"from": _iso(start), "to": _iso(end), "count": len(items), "capacity": RING_SIZE})
        body = head[:-1] + b',"snapshots":[' + b",".join(items) + b"]}"
        return Response(body, media_type="application/json")

    async def health(request: Request) -> Response:
        if service is None:
            return not_running()
        return json_response(await run_in_threadpool(service.health))

    async def stream(request: Request) -> Response:
        if service is None:
            return not_running()
        hub = service.hub
        if hub.closed:
            return error(503, "the service is shutting down")
        if hub.full():
            return error(503, f"too many stream clients (at most {hub.max_clients}); try again later")
        queue = hub.subscribe()
        if queue is None:
            return error(503, f"too many stream clients (at most {hub.max_clients}); try again later")
        ping_s = service.config.ping_s

        async def events() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n"
                if hub.latest is not None:
                    yield b"data: " + hub.latest + b"\n\n"
                while True:
                    try:
                        message = await asyncio.wait_for(queue.get(), ping_s)
                    except TimeoutError:
                        yield b": ping\n\n"
                        continue
                    if message is None:
                        return
                    yield b"data: " + message + b"\n\n"
            finally:
                hub.unsubscribe(queue)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )

    async def on_reader(
        read: Callable[[duckdb.DuckDBPyConnection], Any], answer: Callable[[Any], Response]
    ) -> Response:
        """answer(read(a reader cursor)), read in a worker thread; 503 when the index cannot be read
        (e.g. the service is closing it)."""

        def run() -> Any:
            con = ctx.reader()
            try:
                return read(con)
            finally:
                con.close()

        try:
            return answer(await run_in_threadpool(run))
        except (duckdb.Error, CcoError) as exc:
            return unavailable(
                f"index not readable: {str(exc).splitlines()[0]}", service is not None and service.stopping
            )

    async def metrics(request: Request) -> Response:
        return await on_reader(
            lambda con: prometheus_text(con, ctx.cost_mode), lambda body: Response(body, media_type=PROMETHEUS_TYPE)
        )

    def writer_failed(exc: CcoError) -> Response:
        """503 for a writer job that could not run; marked stopping when the writer is gone."""
        assert service is not None
        return unavailable(str(exc), service.stopping or str(exc) == STOPPING)

    async def index_status(request: Request) -> Response:
        if not is_local_client(request.scope):
            return error(403, "internal endpoint: loopback clients only")
        if service is None:
            return not_running()
        mode = request.query_params.get("mode")
        if mode is not None:
            try:
                check_cost_mode(mode, "mode")
            except BadInput as exc:  # names the modes
                return error(400, str(exc))
        try:
            return json_response(await service.call_writer(lambda: service.status_json(mode), anytime=True))
        except CcoError as exc:
            return writer_failed(exc)

    async def index_rejects(request: Request) -> Response:
        if not is_local_client(request.scope):
            return error(403, "internal endpoint: loopback clients only")
        try:
            only_params(request, "limit")
            limit = int_param(request, "limit", REJECTS_DEFAULT, 1, REJECTS_MAX)
        except (BadInput, BadParam) as exc:
            return error(400, str(exc))

        return await on_reader(lambda con: rejected_lines(con, limit), json_response)

    async def index_sync(request: Request) -> Response:
        if not is_local_client(request.scope):
            return error(403, "internal endpoint: loopback clients only")
        if service is None:
            return not_running()
        try:
            return json_response(await service.call_writer(service.sync_now))
        except CcoError as exc:
            return writer_failed(exc)

    stats_route: BaseRoute = (
        Route("/api/stats", LatestStats(service), methods=["GET"], name="stats")
        if service is not None
        else Route("/api/stats", stats_down, methods=["GET"], name="stats")
    )
    return [
        stats_route,
        Route("/api/stats/history", history, methods=["GET"], name="stats_history"),
        Route("/api/metrics/health", health, methods=["GET"], name="health"),
        Route("/api/stream", stream, methods=["GET"], name="stream"),
        Route("/metrics", metrics, methods=["GET"], name="prometheus"),
        Route("/api/index/status", index_status, methods=["GET"], name="index_status"),
        Route("/api/index/sync", index_sync, methods=["POST"], name="index_sync"),
        Route("/api/index/rejects", index_rejects, methods=["GET"], name="index_rejects"),
    ]
