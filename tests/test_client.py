"""The client other commands use to reach a running service: found by run file, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from api.app import create_app
from api.client import Service, handed_over, service_for
from api.service import LiveService
from indexer.errors import IndexLocked, ServiceError
from indexer.paths import run_file
from indexer.runfile import RunInfo, now_iso, write_run_file
from tests.conftest import write_tree
from tests.live_helpers import ThreadServer, calls, free_port, json_server, make_config, wait_for

# watchdog's inotify thread warns when fast nested mkdirs race its recursive watch; under
# filterwarnings=error that warning would kill the thread, so it is only a warning here, as in use.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


@pytest.fixture
def running(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LiveService]:
    token = getattr(request, "param", None)
    tree = write_tree(tmp_path / "claude", {"-home-u-proj/s1.jsonl": calls(3)})
    svc = LiveService(make_config(tree, tmp_path / "index.duckdb", token=token))
    svc.open()
    svc.start()
    wait_for(lambda: svc.catch_up.done)
    try:
        with ThreadServer(create_app(svc.context(), svc)) as server:
            svc.port = server.port
            svc.write_run_file()
            yield svc
    finally:
        svc.close()


def test_no_service_without_a_live_run_file(tmp_path: Path) -> None:
    db = tmp_path / "index.duckdb"
    assert service_for(db) is None
    dead = RunInfo(pid=2**22 + 12345, port=1, host="127.0.0.1", token=False, started="", db=str(db))
    write_run_file(db, dead)
    assert service_for(db) is None


def test_requests_reach_the_service(running: LiveService) -> None:
    service = service_for(running.config.db)
    assert service is not None and service.info.pid == os.getpid()
    assert service.base_url == f"http://127.0.0.1:{running.port}"
    wait_for(lambda: service.get_json("/api/stats")["total_requests"] == 3)
    assert service.get_json("/api/index/status")["calls"] == 3
    assert service.post_json("/api/index/sync")["files_seen"] == 1
    assert service.get_json("/api/stats/history", params={"range": "1h"})["count"] >= 1


def test_refusals_become_one_line_errors(running: LiveService) -> None:
    service = service_for(running.config.db)
    assert service is not None
    with pytest.raises(ServiceError, match=r"refused GET /api/stats/history: 400 range: unknown range 'x'"):
        service.get_json("/api/stats/history", params={"range": "x"})
    with pytest.raises(ServiceError, match="404 Not Found"):
        service.get_json("/api/nothing")
    with pytest.raises(ServiceError, match="not JSON"):
        service.get_json("/metrics")
    with pytest.raises(ServiceError) as info:
        service.post_json("/api/stats")
    assert "\n" not in str(info.value) and "405" in str(info.value)


@pytest.mark.parametrize("running", ["s3cret"], indirect=True)
def test_token_comes_from_cco_token(running: LiveService, monkeypatch: pytest.MonkeyPatch) -> None:
    service = service_for(running.config.db)
    assert service is not None and service.info.token
    with pytest.raises(ServiceError, match="requires a token: set CCO_TOKEN"):
        service.get_json("/api/stats")
    monkeypatch.setenv("CCO_TOKEN", "wrong")
    with pytest.raises(ServiceError, match="401"):
        service_for(running.config.db).get_json("/api/stats")  # type: ignore[union-attr]
    monkeypatch.setenv("CCO_TOKEN", "s3cret")
    authorised = service_for(running.config.db)
    assert authorised is not None
    assert authorised.get_json("/api/index/status")["calls"] == 3


def test_unreachable_service(tmp_path: Path) -> None:
    db = tmp_path / "index.duckdb"
    port = free_port()
    write_run_file(db, RunInfo(pid=os.getpid(), port=port, host="127.0.0.1", token=False, started="", db=str(db)))
    service = service_for(db)
    assert isinstance(service, Service)
    with pytest.raises(ServiceError, match=f"cannot reach the cco service for .*{port}"):
        service.get_json("/api/stats")


def test_the_client_needs_no_test_dependency() -> None:
    """httpx is a test extra: commands that reach the service must work without it installed."""
    import subprocess
    import sys

    code = "import sys, api.client; sys.exit('httpx' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.fixture
def holder(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose command line reads `… index run` (as a service's does), or not."""
    argv = ["index", "run"] if getattr(request, "param", True) else ["index", "sync"]
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *argv])
    yield proc
    proc.kill()
    proc.wait()


def _later(action: object, delay: float = 0.3) -> threading.Timer:
    timer = threading.Timer(delay, action)  # type: ignore[arg-type]
    timer.start()
    return timer


def _info(db: Path, pid: int) -> RunInfo:
    return RunInfo(pid=pid, port=1, host="127.0.0.1", token=False, started=now_iso(), db=str(db))


def test_a_lock_held_by_a_starting_service_is_waited_out(tmp_path: Path, holder: subprocess.Popen[bytes]) -> None:
    """The service takes the lock, then writes its run file: a command that met the lock waits for it."""
    db = tmp_path / "index.duckdb"
    _later(lambda: write_run_file(db, _info(db, holder.pid)))
    assert handed_over(IndexLocked("in use", holder.pid, str(db)))
    assert run_file(db).exists()  # it returned because the run file came


def test_a_refused_connection_to_a_stopping_service_is_waited_out(
    tmp_path: Path, holder: subprocess.Popen[bytes]
) -> None:
    db = tmp_path / "index.duckdb"
    write_run_file(db, _info(db, holder.pid))
    _later(run_file(db).unlink)
    assert handed_over(ServiceError("refused", holder.pid, str(db)))
    assert not run_file(db).exists()
    write_run_file(db, _info(db, holder.pid))
    ending = _later(lambda: (holder.kill(), holder.wait()))  # or it ends (and its parent reaps it)
    assert handed_over(ServiceError("refused", holder.pid, str(db)))
    ending.join()  # handed_over may see it end before the timer's wait() has reaped it
    assert holder.returncode is not None


def test_a_service_that_stays_silent_is_not_waited_for_long(tmp_path: Path, holder: subprocess.Popen[bytes]) -> None:
    db = tmp_path / "index.duckdb"
    assert not handed_over(IndexLocked("in use", holder.pid, str(db)), timeout=0.3)
    write_run_file(db, _info(db, holder.pid))
    assert not handed_over(ServiceError("refused", holder.pid, str(db)), timeout=0.3)


@pytest.mark.parametrize("holder", [False], indirect=True)
def test_other_holders_are_not_waited_for(tmp_path: Path, holder: subprocess.Popen[bytes]) -> None:
    """A sync or a rebuild holds the index as long as it needs: the command says so at once."""
    db = tmp_path / "index.duckdb"
    timer = _later(lambda: write_run_file(db, _info(db, holder.pid)))
    assert not handed_over(IndexLocked("in use", holder.pid, str(db)))
    assert not run_file(db).exists()  # it did not wait for the run file
    timer.join()
    assert not handed_over(IndexLocked("in use", None, str(db)))  # holder unknown


@pytest.mark.parametrize("stopping", [True, False])
def test_only_a_stopping_services_503_is_waited_out(tmp_path: Path, stopping: bool) -> None:
    """A service shutting down marks its 503 answers; any other 503 (a failed sync, an unreadable
    index) is reported at once, not after the handover's wait."""
    body = orjson.dumps({"error": "nope", **({"stopping": True} if stopping else {})})
    with json_server(lambda path: (503, body)) as port:
        db = tmp_path / "index.duckdb"
        info = RunInfo(pid=os.getpid(), port=port, host="127.0.0.1", token=False, started=now_iso(), db="elsewhere")
        write_run_file(db, info)
        service = service_for(db)
        assert service is not None
        with pytest.raises(ServiceError, match="503 nope") as info:
            service.get_json("/api/index/status")
        assert (info.value.pid, info.value.db) == ((os.getpid(), str(db)) if stopping else (None, ""))


def test_a_cco_command_holding_the_index_is_waited_for_and_nothing_else(tmp_path: Path) -> None:
    """A status or a sync holds the index for a moment: waited out. A process that is no cco (a
    user's own script) may hold it for good: the command says so at once."""
    db = tmp_path / "index.duckdb"
    for name, waited in (("cco", True), ("my-script", False)):
        # named as given; the one not waited for lives on: had it ended, it would be no reason to fail
        holder = subprocess.Popen(["bash", "-c", f"exec -a {name} sleep {1 if waited else 60}"])
        try:
            wait_for(lambda h=holder, n=name: Path(f"/proc/{h.pid}/cmdline").read_bytes().startswith(n.encode()))
            assert handed_over(IndexLocked("in use", holder.pid, str(db))) is waited, name
        finally:
            holder.kill()
            holder.wait()


def test_a_connection_dropped_without_an_answer_is_waited_out(tmp_path: Path) -> None:
    """A service that stops or ends while a request waits in its socket drops the connection: the
    command may go on once it has let go, as after a refused connection."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))

    def drop() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.close()  # no answer

    threading.Thread(target=drop, daemon=True).start()
    try:
        db = tmp_path / "index.duckdb"
        port = listener.getsockname()[1]
        write_run_file(db, RunInfo(pid=os.getpid(), port=port, host="127.0.0.1", token=False, started=now_iso(), db=""))
        service = service_for(db)
        assert service is not None
        with pytest.raises(ServiceError, match="cannot reach") as info:
            service.get_json("/api/index/status")
        assert (info.value.pid, info.value.db) == (os.getpid(), str(db))
    finally:
        listener.close()


def test_a_holder_that_has_ended_is_no_reason_to_fail(tmp_path: Path) -> None:
    """The holder may end between the failed open and the look at it (its /proc entry gone)."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    assert handed_over(IndexLocked("in use", ended.pid, str(tmp_path / "index.duckdb")))


def test_a_holder_that_ends_while_looked_at_is_no_reason_to_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder may end after the check that it lives and before its command line is read: a
    zombie's is empty, which is no cco command, yet the lock is gone (seen in CI: a sync met a
    status that ended right then, and failed)."""
    import api.client

    cco = subprocess.Popen(["bash", "-c", "exec -a cco true"])
    wait_for(lambda: not api.client.pid_alive(cco.pid))  # a zombie: ended, not reaped
    looks = iter([True])  # the first look saw it running
    real = api.client.pid_alive
    monkeypatch.setattr(api.client, "pid_alive", lambda pid: next(looks, None) or real(pid))
    try:
        assert handed_over(IndexLocked("in use", cco.pid, str(tmp_path / "index.duckdb")))
    finally:
        cco.wait()


def test_a_holder_on_its_way_out_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that is exiting has no command line any more (its memory went first) and is not
    yet a zombie, and it may still hold the lock (its files close later): seen under load, a sync
    met a status there and gave up at once. It is waited for like a cco command."""
    import api.client

    holder = subprocess.Popen(["sleep", "60"])
    real = api.client.command_line
    monkeypatch.setattr(api.client, "command_line", lambda pid: b"" if pid == holder.pid else real(pid))
    timer = _later(lambda: (holder.kill(), holder.wait()))
    try:
        assert handed_over(IndexLocked("in use", holder.pid, str(tmp_path / "index.duckdb")))
        assert not api.client.pid_alive(holder.pid)  # it returned because the holder ended
    finally:
        timer.join()
