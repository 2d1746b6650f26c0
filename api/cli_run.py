"""`cco index run`: the live service (issue 4). Parse options, build the service and app, hand them to uvicorn.

The idea: this module only wires things. The order matters: bind the socket ourselves (so the
run file gets the real port and "address in use" is a clean error before the index is touched),
open the index (its lock is the real guard against a second service) and write the run file as
soon as the lock is taken (it names who holds it, so other commands go through the service at
once), take the first snapshot from what the index holds, then serve. Shutdown on SIGINT/SIGTERM: uvicorn stops
accepting, our hook ends SSE streams at once, and `LiveService.close` stops the threads (a batch
still being written is interrupted and rolled back with its offsets, so it is read again next
time), checkpoints, closes the index and removes the run file.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from api.defaults import DEFAULT_HOST, DEFAULT_INTERVAL, DEFAULT_PORT, DEFAULT_RESCAN
from api.options import DB, SOURCE, Opt, check_sources, typer_command
from api.output import fail
from api.security import is_loopback_address
from indexer.errors import BadInput, IndexLocked
from indexer.memory import tune_malloc
from indexer.paths import db_path
from indexer.runfile import read_run_file
from indexer.settings import default_cost_mode
from indexer.sources import resolve_sources

if TYPE_CHECKING:
    from api.service import LiveService

log = logging.getLogger("cco.service")

SWITCH_INTERVAL_S = 0.001


def _server(config: Any, service: LiveService) -> Any:
    """uvicorn, plus: on the first SIGINT/SIGTERM also end SSE streams (they would hold shutdown)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            service.begin_shutdown()
            super().handle_exit(sig, frame)

    return Server(config)


class _Stop:
    """The SIGINT/SIGTERM handler from the start of `cco index run` until uvicorn installs its own
    (and again after: uvicorn re-raises the signals it caught once it has stopped). A signal in
    that window used to be lost (a no-op handler: the service ran on, holding the index) or fatal
    (the default action: no cleanup, a stale run file)."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        self.service: LiveService | None = None
        self.server: Any = None

    def __call__(self, sig: int, frame: FrameType | None) -> None:
        self.signals.append(sig)
        if self.service is not None:
            self.service.begin_shutdown()
        if self.server is not None:
            self.server.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # the body waits for the client's delayed ACK of the headers (40 ms per response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    sock.set_inheritable(True)
    return sock


def _open(service: LiveService, stopping: _Stop) -> None:
    """Open the service's index, writing the run file once its lock is taken. A lock held by another
    command (a report, a status, a sync) is waited out for up to HANDOVER_S: those end soon, and a
    service started beside them (a login script, a restart) should not fail for it. A stop asked
    for meanwhile ends the wait (SystemExit 0)."""
    from api.client import HANDOVER_S, is_service

    deadline = time.monotonic() + HANDOVER_S
    told = False
    while True:
        try:
            service.open(locked=service.write_run_file)
            return
        except IndexLocked as exc:
            if stopping.signals:
                raise SystemExit(0) from None
            if exc.pid is None or is_service(exc.pid) is True or time.monotonic() > deadline:
                raise
            if not told:
                log.info("waiting for process %d to let go of the index", exc.pid)
                told = True
        time.sleep(0.05)


def _already_running(db: Path) -> str | None:
    info = read_run_file(db)
    if info is None:
        return None
    return (
        f"cco index run is already serving {db} (pid {info.pid}, port {info.port}, {info.url}); "
        "stop it first, or use that one"
    )


RUN_OPTIONS: dict[str, Opt] = {
    "source": SOURCE,
    "db": DB,
    "host": Opt(("--host",), str, DEFAULT_HOST, "Address to listen on."),
    "port": Opt(("--port",), int, DEFAULT_PORT, "Port to listen on (0: any free port)."),
    "interval": Opt(("--interval",), float, DEFAULT_INTERVAL, "Seconds between stats snapshots."),
    "rescan": Opt(("--rescan",), float, DEFAULT_RESCAN, "Seconds between full rescans of the transcripts."),
    "token": Opt(("--token",), str | None, None, "Bearer token required on every request.", "CCO_TOKEN"),
    "allowed_host": Opt(
        ("--allowed-host",), list[str] | None, None, "Another Host header name to accept besides loopback (repeatable)."
    ),
}
RUN_HELP = "Run the live service: tail transcripts and serve /api/stats."


def run_command() -> Callable[..., None]:
    """`cco index run` as typer's command (for --help and command lines `options.read` leaves to it)."""
    return typer_command(RUN_OPTIONS, tuple(RUN_OPTIONS), RUN_HELP, lambda values: run_service(**values))


def run_service(
    source: list[Path] | None,
    db: Path | None,
    host: str,
    port: int,
    interval: float,
    rescan: float,
    token: str | None,
    allowed_host: list[str] | None,
) -> None:
    """Run the live service: tail transcripts and serve /api/stats."""
    if not 0 <= port <= 65535:
        fail(f"--port must be between 0 and 65535, got {port}")
    if not 0.1 <= interval <= 3600:
        fail(f"--interval must be between 0.1 and 3600 seconds, got {interval:g}")
    if not 1 <= rescan <= 86400:
        fail(f"--rescan must be between 1 and 86400 seconds, got {rescan:g}")
    if not host.strip():
        fail("--host needs an address to listen on, e.g. 127.0.0.1 (the default)")
    try:
        check_sources(source)  # only Claude Code's own folders are watched before they exist
    except BadInput as exc:
        fail(str(exc))
    token = (token or "").strip() or None
    if not is_loopback_address(host) and token is None:
        fail(f"listening on {host} (not loopback) needs a token: pass --token or set CCO_TOKEN")
    # From here a SIGINT/SIGTERM stops the service at whatever point of its start it comes: noted,
    # passed on to what exists (the service's threads, uvicorn's loop), never lost, never fatal.
    stopping = _Stop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stopping)
    # Before any thread starts: glibc gives a thread its arena at its first allocation.
    tune_malloc()
    # The ingest thread holds the GIL between DuckDB calls during a catch-up; a shorter switch
    # interval (default 5 ms) bounds how long a request waits for it.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # watchdog warns (harmlessly) when folders are created faster than its recursive watch adds them.
    warnings.filterwarnings("ignore", message="Callback with id", category=RuntimeWarning)
    logging.basicConfig(level=logging.INFO, format="cco: %(message)s", stream=sys.stderr)
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)

    path = db_path(db)
    from api.service import LiveService, ServiceConfig  # the service's imports cost ~50 ms: only here

    config = ServiceConfig(
        db=path,
        # without --source, Claude Code's folders that do not exist yet too: watched until they do
        roots=resolve_sources(source, include_missing=True),
        host=host,
        port=port,
        interval=interval,
        rescan=rescan,
        token=token,
        allowed_hosts=list(allowed_host or []),
        cost_mode=default_cost_mode(),
    )
    # Imported here: other `cco` commands load this module too, and need neither.
    import uvicorn

    from api.app import create_app

    service = stopping.service = LiveService(config)
    sock = _bind(host, port)  # first: a busy port is refused before the index is opened (or made)
    service.port = sock.getsockname()[1]
    try:
        # The run file is written as soon as the lock is taken: a command started meanwhile goes
        # through the service (its request waits in the listening socket) instead of being refused.
        _open(service, stopping)
    except IndexLocked as exc:
        sock.close()
        fail(_already_running(path) or str(exc))  # names the holder (a sync, a report, ...)
    except BaseException:
        sock.close()
        raise
    try:
        # What start-up made (modules, the app, the index's caches: ~30 k objects) lives as long
        # as the process: out of the cycle collector's sight, its full collections during a
        # catch-up take ~10 ms instead of 20-40 ms of held GIL (`/api/stats` p99 during a 1 GiB
        # catch-up 7.2-7.7 -> 5.4-5.7 ms; BENCHMARKS.md, session 13).
        gc.freeze()
        service.start()
        server = _server(
            uvicorn.Config(
                create_app(service.context(), service),
                log_config=None,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=1,
                timeout_keep_alive=30,
            ),
            service,
        )
        stopping.server = server
        roots = ", ".join(f"{r}{'' if r.is_dir() else ' (not there yet)'}" for r in config.roots) or "none found"
        log.info("serving http://%s:%d (index %s; transcripts: %s)", host, service.port, path, roots)
        if stopping.signals:
            server.should_exit = True  # stopped while starting: uvicorn starts, sees it, and stops
        server.run(sockets=[sock])
    finally:
        service.close()
    log.info("stopped")
    if service.busy_at_exit:
        # A thread is still inside DuckDB: ending the interpreter around it aborts the process
        # (SIGABRT from a C++ exception during finalization). Every commit is durable and the index
        # is consistent (the batch in flight is rolled back at the next open): end at once.
        logging.shutdown()
        os._exit(0)
