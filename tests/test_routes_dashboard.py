"""The dashboard routes in-process: the page, its assets from the package, and the no-CDN rule."""

from __future__ import annotations

import re
import warnings
from importlib.resources import files
from pathlib import Path

import duckdb
import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # This Starlette prefers `httpx2` for its TestClient; the `httpx` we install works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from api.context import AppContext
from api.routes import dashboard
from indexer.pricing import PriceBook

ASSETS = ("index.html", "app.js", "style.css")


def _unused_reader() -> duckdb.DuckDBPyConnection:
    raise AssertionError("the dashboard routes must not touch the index")


def _unused_book() -> PriceBook:
    raise AssertionError("the dashboard routes must not read prices")


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    ctx = AppContext(db_path=tmp_path / "index.duckdb", reader=_unused_reader, book=_unused_book, machine="test")
    return TestClient(Starlette(routes=dashboard.routes(ctx)), base_url="http://127.0.0.1:3000")


def test_page_is_served_with_a_strict_content_security_policy(client: TestClient) -> None:
    res = client.get("/")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/html")
    assert "<title>cco" in res.text
    csp = res.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert res.headers["cache-control"] == "no-cache"
    assert client.head("/").status_code == 200


@pytest.mark.parametrize(
    ("name", "media"), [("app.js", "javascript"), ("style.css", "text/css"), ("index.html", "text/html")]
)
def test_assets_are_served_from_the_package(client: TestClient, name: str, media: str) -> None:
    res = client.get(f"/static/{name}")
    assert res.status_code == 200
    assert media in res.headers["content-type"]
    assert res.content == (files("api") / "static" / name).read_bytes()


def test_missing_asset_is_404_and_no_path_escapes(client: TestClient) -> None:
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/static/../context.py").status_code == 404
    assert client.get("/static/%2e%2e/context.py").status_code == 404


def test_static_files_ship_inside_the_api_package() -> None:
    static = files("api") / "static"
    for name in ASSETS:
        assert (static / name).is_file(), name
    assert Path(str(static)) == dashboard.STATIC_DIR


def test_page_loads_nothing_from_outside() -> None:
    """Offline by construction: no absolute URLs except the SVG namespace name (not a request)."""
    allowed = {"http://www.w3.org/2000/svg"}
    for name in ASSETS:
        text = (files("api") / "static" / name).read_text(encoding="utf-8")
        urls = set(re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'`)]*", text))
        assert urls <= allowed, f"{name} refers to {urls - allowed}"


def test_every_control_has_an_accessible_name() -> None:
    html = (files("api") / "static" / "index.html").read_text(encoding="utf-8")
    for tag in re.findall(r"<(?:select|input|textarea)\b[^>]*>", html):
        assert "aria-label=" in tag or "aria-labelledby=" in tag, tag
    for button in re.findall(r"<button\b[^>]*>(.*?)</button>", html, flags=re.S):
        assert button.strip(), "a button without text"
