"""Helpers for the live-service tests: transcript lines, a service over a temporary tree, waiting."""

from __future__ import annotations

import contextlib
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # This Starlette prefers `httpx2` for its TestClient; the installed `httpx` works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from api.service import LiveService, ServiceConfig
from indexer.sources import resolve_sources

__all__ = [
    "TestClient",
    "ThreadServer",
    "append",
    "call_line",
    "calls",
    "count_calls",
    "free_port",
    "make_config",
    "wait_for",
]

_counter = iter(range(1, 10**9))


def call_line(
    *,
    session: str = "s1",
    cwd: str = "/home/u/proj",
    model: str = "claude-sonnet-4-5",
    ts: str = "2026-02-10T22:57:57.941Z",
    input_tokens: int = 10,
    output_tokens: int = 20,
    cache_read: int = 0,
    n: int | None = None,
) -> bytes:
    """One assistant line carrying usage, with a fresh message id and request id."""
    i = next(_counter) if n is None else n
    line = {
        "parentUuid": None,
        "isSidechain": False,
        "userType": "external",
        "cwd": cwd,
        "sessionId": session,
        "version": "2.1.38",
        "gitBranch": "main",
        "message": {
            "model": model,
            "id": f"msg_{i:08d}",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "ok"}],
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": cache_read,
                "output_tokens": output_tokens,
            },
        },
        "requestId": f"req_{i:08d}",
        "type": "assistant",
        "uuid": f"00000000-0000-4000-8000-{i:012d}",
        "timestamp": ts,
    }
    return orjson.dumps(line) + b"\n"


def calls(count: int, **kwargs: Any) -> bytes:
    return b"".join(call_line(**kwargs) for _ in range(count))


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_config(root: Path, db: Path, **overrides: Any) -> ServiceConfig:
    """A config for tests: fast snapshots, supervisor and pings; no real pricing file."""
    values: dict[str, Any] = {
        "db": db,
        "roots": resolve_sources([root]),
        "port": 0,
        "interval": 0.2,
        "rescan": 3600.0,
        "supervise_s": 0.1,
        "ping_s": 0.2,
        "machine": "test-machine",
    }
    values.update(overrides)
    return ServiceConfig(**values)


def count_calls(service: LiveService) -> int:
    con = service.reader()
    try:
        row = con.execute("SELECT count(*) FROM calls").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


class ThreadServer:
    """uvicorn serving `app` on a free loopback port in a background thread (for client tests)."""

    def __init__(self, app: Any) -> None:
        import threading

        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        wait_for(lambda: self.server.started)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(5)
        self.sock.close()


def start_cco_run(root: Path, db: Path, port: int, *extra: str, env: dict[str, str] | None = None) -> Any:
    """Start `cco index run` as a real process; returns the Popen (stderr to a file beside the index)."""
    import os
    import subprocess

    from tests.conftest import CCO

    with db.with_name(db.name + f".{port}.log").open("wb") as log:
        return subprocess.Popen(
            [CCO, "index", "run", "--source", str(root), "--db", str(db), "--port", str(port), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


def wait_for_http(url: str, timeout: float = 15.0, headers: dict[str, str] | None = None) -> Any:
    """GET `url` until it answers 200; its JSON."""
    import httpx

    def attempt() -> Any:
        try:
            r = httpx.get(url, timeout=1.0, headers=headers, trust_env=False)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    return wait_for(attempt, timeout=timeout, step=0.05)


@contextlib.contextmanager
def json_server(answer: Callable[[str], tuple[int, bytes]]) -> Iterator[int]:
    """A loopback HTTP server whose GET of a path answers `answer(path)`: (status, JSON body).
    Yields its port; stands in for a service at one moment of its life."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answer(self.path)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
