"""The client other commands use to reach a running service: found by run file, one-line errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.app import create_app
from api.client import Service, service_for
from api.service import LiveService
from indexer.errors import ServiceError
from indexer.runfile import RunInfo, write_run_file
from tests.conftest import write_tree
from tests.live_helpers import ThreadServer, calls, free_port, make_config, wait_for

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
