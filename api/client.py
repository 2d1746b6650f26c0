"""Talk to the running `cco index run` for an index: other commands use it while the service holds the lock.

The idea: DuckDB lets one process open the index, so a command first asks `service_for(db)`; if a
live service owns the index (its run file names a live pid) the command sends its request there
instead of opening the file. Every failure becomes a one-line ServiceError. The token, when the
service requires one, comes from CCO_TOKEN (the run file says only that one is needed). The
standard library's http.client sends the request to the address the run file names (loopback
unless the service was bound elsewhere): no proxy from the environment can see it, and a
short-lived command pays no client library import.
"""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from indexer.errors import IndexLocked, ServiceError
from indexer.runfile import RunInfo, command_line, pid_alive, read_run_file

DEFAULT_TIMEOUT = 30.0


class Service:
    """A running service, reached over loopback HTTP."""

    def __init__(
        self, info: RunInfo, token: str | None = None, timeout: float = DEFAULT_TIMEOUT, db: Path | None = None
    ) -> None:
        self.info = info
        self.token = token
        self.timeout = timeout
        self.base_url = info.url
        self.db = str(db) if db is not None else info.db  # the path its run file was found beside

    def __repr__(self) -> str:
        return f"Service(pid={self.info.pid}, url={self.base_url!r})"

    def get_json(self, path: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        return self._request("GET", path, params=params, timeout=timeout)

    def post_json(
        self, path: str, body: Any = None, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        return self._request("POST", path, params=params, body=body, timeout=timeout)

    def _request(
        self, method: str, path: str, *, params: dict[str, Any] | None, body: Any = None, timeout: float | None
    ) -> Any:
        who = f"the cco service for {self.info.db or 'the index'} (pid {self.info.pid}, {self.base_url})"
        if self.info.token and not self.token:
            raise ServiceError(f"{who} requires a token: set CCO_TOKEN")
        headers = {"accept": "application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        payload = None
        if body is not None:
            payload = orjson.dumps(body)
            headers["content-type"] = "application/json"
        target = path + ("?" + urlencode(params) if params else "")
        url = urlsplit(self.base_url)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=timeout or self.timeout)
        try:
            conn.request(method, target, body=payload, headers=headers)
            response = conn.getresponse()
            content = response.read()
        except TimeoutError:
            raise ServiceError(f"{who} did not answer {method} {path} in time") from None
        except (ConnectionRefusedError, ConnectionResetError, http.client.RemoteDisconnected) as exc:
            # its run file is up, its port closed (stopping) or the connection dropped (it stopped,
            # or ended, while the request waited): a command may go on once it has let go
            raise ServiceError(f"cannot reach {who}: {exc or type(exc).__name__}", self.info.pid, self.db) from None
        except (OSError, http.client.HTTPException) as exc:
            raise ServiceError(f"cannot reach {who}: {exc or type(exc).__name__}") from None
        finally:
            conn.close()
        try:
            data = orjson.loads(content) if content else None
        except orjson.JSONDecodeError:
            data = None
        if response.status >= 400:
            detail = data.get("error") if isinstance(data, dict) else None
            message = f"{who} refused {method} {path}: {response.status} {detail or response.reason}"
            # a 503 marked `stopping`: the command may go on once the service has let go of the index
            stopping = isinstance(data, dict) and data.get("stopping") is True
            raise ServiceError(message, *((self.info.pid, self.db) if stopping else (None, "")))
        if data is None and content:
            raise ServiceError(f"{who} answered {method} {path} with something that is not JSON")
        return data


def service_for(db: Path) -> Service | None:
    """The live service holding `db`, or None (no run file, or a stale one left by a crash)."""
    info = read_run_file(db)
    if info is None:
        return None
    return Service(info, token=os.environ.get("CCO_TOKEN") or None, db=db)


HANDOVER_S = 5.0  # how long a command waits for a starting or stopping service (see handed_over)


def handed_over(exc: IndexLocked | ServiceError, timeout: float = HANDOVER_S) -> bool:
    """Whether a command that failed with `exc` can run again now, after waiting for the process
    that holds the index: a `cco index run` starting (it takes the lock, then writes its run file)
    or stopping (it answers 503 or its port is closed, then lets go of the index and removes its
    run file), or another `cco` command (a status, a report, a sync: they end soon).

    Waits until the service's run file is up (a lock met) or gone (a connection refused), or the
    holder has ended: True then, False after `timeout` (a long sync or rebuild: the user is told to
    wait for it) or when the holder is no cco process.
    """
    starting = isinstance(exc, IndexLocked)
    pid = exc.pid
    if pid is None or not exc.db:
        return False
    if not pid_alive(pid):
        return True  # ended between the failed attempt and now (its /proc entry says nothing more)
    service = is_service(pid)
    # A cco command, or a process on its way out: the kernel drops a process's memory, and with it
    # its command line, before it closes its files (and so lets go of the lock).
    command = service is False and starting and (_is_cco(pid) or command_line(pid) == b"")
    if service is False and not command:
        return not pid_alive(pid)  # no cco process, unless it has ended since the look above
    db = Path(exc.db)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        if not command:
            info = read_run_file(db)
            if (info is not None and info.pid == pid) == starting:
                return True
        time.sleep(0.05)
    return False


def _is_cco(pid: int) -> bool:
    """Whether process `pid` is a `cco` command (its program, or `python -m api.cli`), by /proc."""
    args = (command_line(pid) or b"").split(b"\0")
    return any(a == b"cco" or a.endswith(b"/cco") or a == b"api.cli" for a in args[:3])


def is_service(pid: int) -> bool | None:
    """Whether process `pid` is a `cco index run`, by its command line; None where /proc cannot say
    (another system: the waits that depend on it are bounded by HANDOVER_S either way)."""
    args = command_line(pid)
    if args is None:
        return False if Path("/proc/self").exists() else None
    return b"\0index\0run\0" in args
