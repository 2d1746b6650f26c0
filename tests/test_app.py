"""The app in-process (TestClient, no ports) over a real LiveService on a temporary tree."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.context import AppContext
from api.service import LiveService
from indexer.pricing import bundled
from indexer.store import Index
from schemas.stats import StatsSnapshot
from tests.conftest import write_tree
from tests.live_helpers import TestClient, append, calls, make_config, wait_for

# watchdog's inotify thread warns when fast nested mkdirs race its recursive watch; under
# filterwarnings=error that warning would kill the thread, so it is only a warning here, as in use.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


SNAPSHOT_FIELDS = {f.name for f in dataclasses.fields(StatsSnapshot)}
TRANSCRIPT = "-home-u-proj/s1.jsonl"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "claude", {TRANSCRIPT: calls(3, session="s1")})


@pytest.fixture
def service(tree: Path, tmp_path: Path) -> Iterator[LiveService]:
    svc = LiveService(make_config(tree, tmp_path / "index.duckdb"))
    svc.open()
    svc.start()
    yield svc
    svc.close()


@pytest.fixture
def client(service: LiveService) -> Iterator[TestClient]:
    app = create_app(service.context(), service)
    with TestClient(app, base_url="http://localhost", client=("127.0.0.1", 50000)) as c:
        wait_for(lambda: service.catch_up.done)
        wait_for(lambda: c.get("/api/stats").json()["total_requests"] == 3)
        wait_for(lambda: service.hub.latest is not None and b"/home/u/proj" in service.hub.latest)
        yield c


def no_cors(headers: Any) -> bool:
    return not [h for h in headers if h.lower().startswith("access-control-")]


def test_stats_is_the_newest_snapshot(client: TestClient) -> None:
    r = client.get("/api/stats")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert set(body) == SNAPSHOT_FIELDS
    assert body["total_requests"] == 3 and body["successful_requests"] == 3 and body["failed_requests"] == 0
    assert body["input_tokens"] == 30 and body["output_tokens"] == 60
    assert body["port"] == 0  # the test service was never bound


def test_stats_follow_appends(client: TestClient, tree: Path) -> None:
    append(tree / "projects" / TRANSCRIPT, calls(2, session="s1"))
    body = wait_for(lambda: (b := client.get("/api/stats").json())["total_requests"] == 5 and b, timeout=5)
    assert body["input_tokens"] == 50


def test_history_default_and_ranges(client: TestClient) -> None:
    wait_for(lambda: client.get("/api/stats/history").json()["count"] >= 2)
    r = client.get("/api/stats/history")
    body = r.json()
    assert r.status_code == 200
    assert set(body) == {"from", "to", "count", "capacity", "snapshots"}
    assert body["capacity"] == 3600 and body["count"] == len(body["snapshots"])
    assert all(set(s) == SNAPSHOT_FIELDS for s in body["snapshots"])
    stamps = [s["timestamp"] for s in body["snapshots"]]
    assert stamps == sorted(stamps)
    assert client.get("/api/stats/history", params={"range": "1h"}).json()["count"] >= body["count"]
    assert client.get("/api/stats/history", params={"from": "2000-01-01T00:00:00Z"}).json()["count"] >= 2
    old = client.get("/api/stats/history", params={"from": "2000-01-01", "to": "2000-01-02T00:00:00+02:00"})
    assert old.status_code == 200 and old.json()["count"] == 0 and old.json()["snapshots"] == []


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"range": "2d"}, "range: unknown range '2d'"),
        ({"from": "yesterday"}, "from: not an ISO-8601 time"),
        ({"from": "2026-01-01", "to": "soon"}, "to: not an ISO-8601 time"),
        ({"to": "2026-01-01"}, "to needs from"),
        ({"from": "2026-01-02", "to": "2026-01-01"}, "from is after to"),
        ({"range": "10m", "from": "2026-01-01"}, "not both"),
        ({"window": "1m"}, "unknown parameter 'window'"),
        ({"from": "nan"}, "from: 'nan' is not a time between 1970 and 9999"),
        ({"from": "-1e30"}, "from: '-1e30' is not a time between 1970 and 9999"),
        ({"from": "1", "to": "inf"}, "to: 'inf' is not a time between 1970 and 9999"),
        ({"from": "1763900000000"}, "(epoch seconds, not milliseconds)"),
        ({"from": "0001-01-01T00:00:00+01:00"}, "is not a time between 1970 and 9999"),
    ],
)
def test_history_bad_parameters(client: TestClient, params: dict[str, str], says: str) -> None:
    r = client.get("/api/stats/history", params=params)
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    assert says in r.json()["error"]


def test_health(client: TestClient, service: LiveService) -> None:
    body = client.get("/api/metrics/health").json()
    assert body["ok"] is True
    assert body["index"] == {"ok": True, "path": str(service.config.db), "error": None}
    assert body["last_ingest"] is not None
    assert body["files_lagging"] == 0 and body["bytes_behind"] == 0
    assert body["observer"]["alive"] and body["observer"]["mode"] == "events"
    assert body["unpriced_models"] == {} and body["rejected_lines"] == 0
    cu = body["catch_up"]
    assert cu["done"] and not cu["running"] and cu["fraction"] == 1.0 and cu["bytes_done"] == cu["bytes_total"] > 0
    assert body["prices"]["error"] is None
    assert body["snapshots"]["count"] >= 1 and body["snapshots"]["interval_s"] == 0.2


def test_health_shows_rejects_and_unpriced(client: TestClient, service: LiveService, tree: Path) -> None:
    append(
        tree / "projects" / TRANSCRIPT, b'{"type":"assistant","message":{"usage":{}}}\n' + calls(1, model="mystery-9")
    )
    wait_for(lambda: client.get("/api/metrics/health").json()["rejected_lines"] == 1, timeout=5)
    body = client.get("/api/metrics/health").json()
    assert body["unpriced_models"] == {"mystery-9": 1}
    assert body["files_lagging"] == 0 and body["bytes_behind"] == 0


def test_health_shows_a_bad_price_file(client: TestClient, service: LiveService) -> None:
    service.prices.path.parent.mkdir(parents=True, exist_ok=True)
    service.prices.path.write_text("[models\n")
    body = wait_for(lambda: (b := client.get("/api/metrics/health").json())["prices"]["error"] and b, timeout=5)
    assert body["ok"] is False and "pricing.toml" in body["prices"]["error"]


def test_prometheus_metrics_are_exact(client: TestClient, tree: Path) -> None:
    append(tree / "projects" / TRANSCRIPT, calls(2, model="claude-opus-4-6", cwd="/home/u/other", cache_read=5))
    wait_for(lambda: client.get("/api/stats").json()["total_requests"] == 5, timeout=5)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }
    sonnet = (("model", "claude-sonnet-4-5"), ("project", "/home/u/proj"))
    opus = (("model", "claude-opus-4-6"), ("project", "/home/u/other"))
    assert samples[("cco_calls_total", (*sonnet, ("status", "ok")))] == 3
    assert samples[("cco_calls_total", (*opus, ("status", "ok")))] == 2
    assert samples[("cco_calls_total", (*opus, ("status", "failed")))] == 0
    assert samples[("cco_tokens_total", (("kind", "input"), *sonnet))] == 30
    assert samples[("cco_tokens_total", (("kind", "output"), *opus))] == 40
    assert samples[("cco_tokens_total", (("kind", "cache_read"), *opus))] == 10
    stats = client.get("/api/stats").json()
    cost = sum(v for (name, _), v in samples.items() if name == "cco_cost_usd")
    assert cost == pytest.approx(stats["total_cost"])


def test_index_status_and_sync(client: TestClient, tree: Path) -> None:
    status = client.get("/api/index/status").json()
    assert status["calls"] == 3 and status["files_live"] == 1 and status["unpriced_models"] == {}
    bad = client.get("/api/index/status?mode=bogus")
    assert bad.status_code == 400 and "bogus" in bad.json()["error"]
    append(tree / "projects" / TRANSCRIPT, calls(1))
    report = client.post("/api/index/sync").json()
    assert set(report) == {
        "files_seen", "files_read", "files_gone", "bytes_read", "lines", "call_lines", "rejected", "seconds",
        "files_unnamed", "unnamed_example", "files_unreadable", "unreadable_example",
    }  # fmt: skip
    assert report["files_seen"] == 1
    assert client.get("/api/index/status").json()["calls"] == 4
    assert client.get("/api/index/rejects").json() == {"total": 0, "rejects": []}
    size = (tree / "projects" / TRANSCRIPT).stat().st_size
    append(tree / "projects" / TRANSCRIPT, b"not json\n[1]\n")
    client.post("/api/index/sync")
    got = client.get("/api/index/rejects?limit=1").json()
    assert got == {
        "total": 2,
        "rejects": [
            {"path": str(tree / "projects" / TRANSCRIPT), "offset": size, "reason": got["rejects"][0]["reason"]}
        ],
    }
    assert got["rejects"][0]["reason"].startswith("invalid JSON")
    for bad in ("limit=0", "limit=x", "lmit=3"):
        r = client.get(f"/api/index/rejects?{bad}")
        assert r.status_code == 400 and "limit" in r.json()["error"], bad
    r = client.get("/api/index/sync")
    assert r.status_code == 405 and "error" in r.json()


def test_internal_endpoints_refuse_remote_clients(service: LiveService) -> None:
    app = create_app(service.context(), service)
    remote = TestClient(app, base_url="http://localhost", client=("192.168.1.9", 40000))
    for method, path in (("GET", "/api/index/status"), ("POST", "/api/index/sync"), ("GET", "/api/index/rejects")):
        r = remote.request(method, path)
        assert r.status_code == 403 and "loopback" in r.json()["error"]


def test_stream_sends_current_activity_and_changes(client: TestClient, service: LiveService, tree: Path) -> None:
    def later() -> None:
        wait_for(lambda: service.hub.clients > 0, timeout=10)  # subscribed (a fixed sleep could be too short)
        time.sleep(0.2)  # and its first message, the current activity, sent
        # Later than every other call: among calls of one timestamp the newest is picked by key,
        # which depends on how many calls earlier tests made.
        line = calls(1, session="s1", model="claude-opus-4-6", ts="2026-02-10T23:00:00.000Z")
        append(tree / "projects" / TRANSCRIPT, line)
        wait_for(lambda: service.hub.latest is not None and b"claude-opus-4-6" in service.hub.latest, timeout=5)
        time.sleep(0.3)
        service.begin_shutdown()  # ends every stream, so TestClient gets the whole body

    helper = threading.Thread(target=later)
    helper.start()
    r = client.get("/api/stream")
    helper.join()
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    messages = [orjson.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert len(messages) >= 2
    for m in messages:
        assert set(m) == {"project", "machine", "activity"}
        assert m["machine"] == "test-machine" and m["project"] == "/home/u/proj", messages
    assert messages[0]["activity"]["model"] == "claude-sonnet-4-5"
    assert messages[-1]["activity"]["model"] == "claude-opus-4-6"
    assert ": ping" in r.text  # keep-alive comments while nothing changes (ping_s = 0.2)


def test_stream_client_limit(client: TestClient, service: LiveService) -> None:
    service.hub.max_clients = 0
    r = client.get("/api/stream")
    assert r.status_code == 503 and "too many stream clients" in r.json()["error"]


def test_no_cors_headers_on_any_endpoint(client: TestClient) -> None:
    origin = {"origin": "http://evil.example"}
    for path in ("/api/stats", "/api/stats/history", "/api/metrics/health", "/metrics", "/api/index/status", "/nope"):
        assert no_cors(client.get(path, headers=origin).headers), path
    assert no_cors(client.options("/api/stats", headers={**origin, "access-control-request-method": "GET"}).headers)


def test_foreign_host_is_refused(client: TestClient) -> None:
    for path in ("/api/stats", "/api/stream", "/metrics", "/api/index/status"):
        r = client.get(path, headers={"host": "rebound.evil.example:3000"})
        assert r.status_code == 403 and "Host header" in r.json()["error"]


def test_unknown_path_is_json_404(client: TestClient) -> None:
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}


def test_token_is_checked_on_every_data_endpoint(service: LiveService) -> None:
    ctx = dataclasses.replace(service.context(), token="t0ken")
    client = TestClient(create_app(ctx, service), base_url="http://localhost", client=("127.0.0.1", 1))
    data_paths = ("/api/stats", "/api/stats/history", "/api/metrics/health", "/api/metrics/projects", "/metrics",
                  "/api/index/status", "/api/reports/daily", "/api/stream")  # fmt: skip
    for path in data_paths:
        r = client.get(path)
        assert r.status_code == 401 and "token" in r.json()["error"], path
        assert client.get(path, headers={"authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/stats", headers={"authorization": "Bearer t0ken"}).status_code == 200
    # The dashboard's page shell holds no data and must load in a browser (it then sends the token).
    assert client.get("/").status_code == 200


def test_app_without_a_service(tmp_path: Path, tree: Path) -> None:
    with Index(tmp_path / "plain.duckdb") as index:
        ctx = AppContext(
            db_path=index.path, reader=index.con.cursor, book=bundled, machine="m", allowed_hosts=["box.lan"]
        )
        client = TestClient(create_app(ctx), base_url="http://box.lan:3000", client=("127.0.0.1", 1))
        for path in ("/api/stats", "/api/stats/history", "/api/metrics/health", "/api/stream", "/api/index/status"):
            r = client.get(path)
            assert r.status_code == 503 and "not running" in r.json()["error"], path
        assert client.get("/metrics").status_code == 200


def test_a_stopping_service_marks_what_it_cannot_answer(client: TestClient, service: LiveService) -> None:
    """While shutting down every endpoint that cannot answer says so with a 503 marked `stopping`
    (a command then waits for the service to let go of the index); reads still possible answer."""
    service.begin_shutdown()
    r = client.get("/api/index/status")
    assert (r.status_code, r.json()) == (503, {"error": "the service is shutting down", "stopping": True})
    assert client.get("/api/reports/daily").status_code == 200  # the index is still open
    wait_for(lambda: service._ingest is None or not service._ingest.is_alive())
    service._close_index()  # as close() does next: every reader is gone
    served = TestClient(
        client.app, base_url="http://localhost", client=("127.0.0.1", 50000), raise_server_exceptions=False
    )
    for path in ("/api/reports/daily", "/api/metrics/projects", "/metrics", "/api/index/rejects"):
        r = served.get(path)
        assert r.status_code == 503 and r.json()["stopping"] is True, (path, r.text)
