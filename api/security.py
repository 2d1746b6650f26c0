"""Who may talk to the service: a Host-header allow-list, an optional bearer token, no CORS ever.

The idea: browsers can reach localhost, so a malicious page could use DNS rebinding (a name that
resolves to 127.0.0.1) to read a user's stats. A request whose Host header is not a loopback name
(or one the user configured) is refused with 403 before any route runs, and no response ever
carries an `Access-Control-*` header, so other origins cannot read answers. Binding a non-loopback
address requires a token, then checked on every request that can reveal data
(`Authorization: Bearer <token>`). Two exceptions keep the dashboard usable in a browser: the
page shell (`/`, `/static/*`) holds no data and is served without one, and `/api/stream` also
accepts `?token=` because a browser's EventSource cannot send headers.
A request carrying an Origin header (browsers send one with every POST and cross-origin fetch)
must come from an allowed host too: another site's page cannot make the service sync or change
anything (CSRF), even though its requests reach 127.0.0.1.
It is a plain ASGI middleware (no per-request objects), so `/api/stats` stays sub-millisecond.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import parse_qs, urlsplit

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback_address(host: str) -> bool:
    """True for loopback bind addresses and names (127.0.0.0/8, ::1, localhost)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name part of a Host header value: `[::1]:3000` -> `::1`, `Localhost:80` -> `localhost`."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else header
    if header.count(":") > 1:  # a bare IPv6 address (no port possible without brackets)
        return header
    name, _, port = header.rpartition(":")
    return name if name and port.isdigit() else header.rstrip(":")


def is_local_client(scope: Scope) -> bool:
    """True when the peer of this connection is on this machine (for the internal endpoints): a
    loopback address, or the very address it connected to (a service bound to one LAN address)."""
    client, server = scope.get("client"), scope.get("server")
    if client is None:
        return False
    return is_loopback_address(str(client[0])) or (server is not None and str(client[0]) == str(server[0]))


def _error(status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> tuple[Message, Message]:
    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    start: Message = {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    return start, {"type": "http.response.body", "body": body}


class SecurityMiddleware:
    """Refuse foreign Host headers (403) and, when a token is set, missing or wrong tokens (401)."""

    def __init__(self, app: ASGIApp, *, allowed_hosts: Iterable[str] = (), token: str | None = None) -> None:
        self.app = app
        self.allowed = LOOPBACK_NAMES | {host_name(h) for h in allowed_hosts if h.strip()}
        self._token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host: bytes | None = None
        auth = origin = b""
        for key, value in scope["headers"]:
            if key == b"host":
                if host is not None:  # RFC 9112: a request with two Host fields is refused
                    await self._refuse(scope, send, 400, "more than one Host header")
                    return
                host = value
            elif key == b"authorization":
                auth = value
            elif key == b"origin":
                origin = value
        if host_name((host or b"").decode("latin-1")) not in self.allowed:
            await self._refuse(scope, send, 403, "Host header not allowed: use localhost or a configured name")
            return
        if origin and host_name(urlsplit(origin.decode("latin-1")).netloc) not in self.allowed:
            await self._refuse(scope, send, 403, "requests from other sites' pages are refused")
            return
        if self._token is not None and not self._authorised(scope, auth):
            await self._refuse(
                scope,
                send,
                401,
                "missing or wrong token: send Authorization: Bearer <token>",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, _no_cors(send))

    def _authorised(self, scope: Scope, auth: bytes) -> bool:
        assert self._token is not None
        path = scope.get("path", "")
        if path == "/" or path.startswith("/static/"):
            return True
        scheme, _, given = auth.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self._token):  # scheme: any case
            return True
        if path == "/api/stream":
            query = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[-1]
            return hmac.compare_digest(query.encode(), self._token)
        return False

    @staticmethod
    async def _refuse(
        scope: Scope, send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        start, body = _error(status, message, extra)
        await send(start)
        await send(body)


def _no_cors(send: Send) -> Send:
    """Drop any Access-Control-* header a route or library might add: other origins get nothing."""

    async def guarded(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = message.get("headers") or []
            if any(k[:15].lower() == b"access-control-" for k, _ in headers):
                message = {**message, "headers": [(k, v) for k, v in headers if k[:15].lower() != b"access-control-"]}
        await send(message)

    return guarded
