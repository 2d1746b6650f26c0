"""The web dashboard: `GET /` and `/static/*`, served from files shipped inside the `api` package.

The idea: the page is plain static files (HTML, CSS, our own JS drawing SVG charts) that read the
same JSON endpoints as everyone else, so it works offline and needs no build step. A strict
Content-Security-Policy on the page makes "no CDN, no external requests" a rule the browser enforces.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from api.context import AppContext

STATIC_DIR = Path(str(files("api") / "static"))

# Everything from this origin only: scripts, styles, fetch/EventSource; images may be data: URLs.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def index(request: Request) -> Response:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def routes(ctx: AppContext) -> list[BaseRoute]:
    """The page and its assets; `ctx` is unused (the page reads the JSON endpoints like any client)."""
    del ctx
    return [
        Route("/", index, methods=["GET", "HEAD"], name="dashboard"),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
