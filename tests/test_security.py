"""The security middleware: Host allow-list (DNS rebinding), bearer token, and never any CORS header."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Message

from api.security import SecurityMiddleware, host_name, is_local_client, is_loopback_address
from tests.live_helpers import TestClient


async def hello(request: Request) -> Response:
    # A route that tries to allow every origin: the middleware must strip it.
    return PlainTextResponse("hello", headers={"Access-Control-Allow-Origin": "*", "X-Kept": "1"})


def make_client(allowed: list[str] | None = None, token: str | None = None) -> TestClient:
    app = Starlette(
        routes=[
            Route("/", hello),
            Route("/api/data", hello),
            Route("/api/stream", hello),
            Route("/static/app.js", hello),
        ],
        middleware=[Middleware(SecurityMiddleware, allowed_hosts=allowed or [], token=token)],
    )
    return TestClient(app, base_url="http://localhost")


@pytest.mark.parametrize(
    "host", ["localhost", "localhost:3000", "LOCALHOST:80", "127.0.0.1", "127.0.0.1:3000", "[::1]", "[::1]:3000"]
)
def test_loopback_hosts_pass(host: str) -> None:
    r = make_client().get("/", headers={"host": host})
    assert r.status_code == 200 and r.text == "hello"


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:3000", "localhost.evil.example", "127.0.0.1.nip.io", "0.0.0.0:3000", "", "[::2]"],
)
def test_foreign_hosts_get_403(host: str) -> None:
    r = make_client().get("/", headers={"host": host})
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/json"
    assert "Host header" in r.json()["error"]


def test_configured_host_passes() -> None:
    client = make_client(allowed=["stats.lan", "Box.Local:8080"])
    assert client.get("/", headers={"host": "stats.lan:3000"}).status_code == 200
    assert client.get("/", headers={"host": "box.local"}).status_code == 200
    assert client.get("/", headers={"host": "other.lan"}).status_code == 403


def raw_request(headers: list[tuple[bytes, bytes]]) -> int:
    """The status the middleware answers a GET / with exactly these header fields (no client fixes them up)."""
    app = SecurityMiddleware(Starlette(routes=[Route("/", hello)]))
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b"", "client": None}
    asyncio.run(app(scope, receive, send))
    return int(sent[0]["status"])


def test_two_host_headers_are_refused() -> None:
    assert raw_request([(b"host", b"localhost")]) == 200
    assert raw_request([(b"host", b"evil.example"), (b"host", b"localhost")]) == 400
    assert raw_request([(b"host", b"localhost"), (b"host", b"evil.example")]) == 400


def test_pages_of_other_sites_are_refused() -> None:
    """A browser sends Origin with every POST: another site's page cannot make the service act (CSRF)."""
    client = make_client(allowed=["stats.lan"])
    assert client.post("/api/data", headers={"origin": "http://evil.example"}).status_code == 403
    assert client.get("/api/data", headers={"origin": "http://evil.example"}).status_code == 403
    assert client.post("/api/data", headers={"origin": "null"}).status_code == 403
    for origin in ("http://localhost:3000", "http://127.0.0.1:3000", "http://[::1]:3000", "http://stats.lan"):
        assert client.post("/api/data", headers={"origin": origin}).status_code == 405  # allowed through: GET-only
        assert client.get("/api/data", headers={"origin": origin}).status_code == 200


def test_bearer_scheme_in_any_case() -> None:
    client = make_client(token="s3cret")
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert client.get("/api/data", headers={"authorization": f"{scheme} s3cret"}).status_code == 200
    assert client.get("/api/data", headers={"authorization": "Basic s3cret"}).status_code == 401


def test_missing_host_header_is_refused() -> None:
    assert raw_request([]) == 403


def test_token_required_when_configured() -> None:
    client = make_client(token="s3cret")
    missing = client.get("/api/data")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "token" in missing.json()["error"]
    assert client.get("/api/data", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/data", headers={"authorization": "s3cret"}).status_code == 401
    assert client.get("/api/data", headers={"authorization": "Bearer s3cret"}).status_code == 200
    # A query-string token is only for the SSE stream (EventSource cannot send headers).
    assert client.get("/api/data?token=s3cret").status_code == 401
    # The Host check comes first: a good token does not open the door to a rebinding page.
    assert (
        client.get("/api/data", headers={"authorization": "Bearer s3cret", "host": "evil.example"}).status_code == 403
    )


def test_page_shell_and_stream_with_a_token() -> None:
    """The dashboard must load in a browser: its page holds no data, its stream takes ?token=."""
    client = make_client(token="s3cret")
    assert client.get("/").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/", headers={"host": "evil.example"}).status_code == 403
    assert client.get("/api/stream").status_code == 401
    assert client.get("/api/stream?token=wrong").status_code == 401
    assert client.get("/api/stream?token=s3cret").status_code == 200
    assert client.get("/api/stream", headers={"authorization": "Bearer s3cret"}).status_code == 200


def test_no_cors_headers_ever() -> None:
    client = make_client()
    for response in (
        client.get("/", headers={"origin": "http://evil.example"}),
        client.options("/", headers={"origin": "http://evil.example", "access-control-request-method": "GET"}),
        client.get("/", headers={"host": "evil.example", "origin": "http://evil.example"}),
    ):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")]
    assert client.get("/").headers["x-kept"] == "1"


def test_host_name() -> None:
    assert host_name("[::1]:3000") == "::1"
    assert host_name("Localhost:80") == "localhost"
    assert host_name("example.com") == "example.com"
    assert host_name("example.com:") == "example.com"
    assert host_name("::1") == "::1"


def test_loopback_address_and_client() -> None:
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback_address(host)
    for host in ("0.0.0.0", "::", "192.168.1.2", "example.com", "testclient"):
        assert not is_loopback_address(host)
    assert is_local_client({"type": "http", "client": ("127.0.0.1", 5)})
    assert not is_local_client({"type": "http", "client": ("10.0.0.1", 5)})
    assert not is_local_client({"type": "http", "client": None})
    # A service bound to one LAN address: a client connecting from that same address is this machine.
    assert is_local_client({"type": "http", "client": ("10.0.0.1", 5), "server": ("10.0.0.1", 3000)})
    assert not is_local_client({"type": "http", "client": ("10.0.0.2", 5), "server": ("10.0.0.1", 3000)})
