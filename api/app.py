"""The Starlette app, built by one factory from its dependencies.

The idea (Datasette's): `create_app(ctx, service)` returns the ASGI app and holds no globals, so
`cco index run` hands it to uvicorn and tests hand it to TestClient, in-process, without ports.
Routes come from one module per area; the live ones come first (the `/api/stats` hot path is the
first route matched). The security middleware wraps everything, and every error is JSON.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from api.context import AppContext
from api.routes import dashboard, metrics, reports, stats
from api.routes.params import unavailable
from api.security import SecurityMiddleware
from api.service import STOPPING, LiveService


def _json_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps({"error": message}), status, headers=headers, media_type="application/json")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _json_error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _server_error(request: Request, exc: Exception) -> Response:
    return _json_error(500, f"internal error: {type(exc).__name__}")


def create_app(ctx: AppContext, service: LiveService | None = None) -> Starlette:
    """The app over `ctx`; with `service`, the live routes are backed by it and its lifespan runs it."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if service is None:
            yield
            return
        async with service.running():
            yield

    async def server_error(request: Request, exc: Exception) -> Response:
        if service is not None and service.stopping:  # a reader closed under a request: say so, marked
            return unavailable(STOPPING, True)
        return await _server_error(request, exc)

    return Starlette(
        routes=[
            *stats.routes(ctx, service),
            *metrics.routes(ctx, memo=ctx.memo),
            *reports.routes(ctx, memo=ctx.memo),
            *dashboard.routes(ctx),
        ],
        middleware=[Middleware(SecurityMiddleware, allowed_hosts=ctx.allowed_hosts, token=ctx.token)],
        exception_handlers={HTTPException: _http_error, Exception: server_error},
        lifespan=lifespan,
    )
