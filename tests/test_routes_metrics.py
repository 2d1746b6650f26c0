"""`/api/metrics/*` through Starlette's TestClient over the service fixture (fixtures/service/README.md)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import duckdb
import pytest
from conftest import build_service_index as build
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # This Starlette prefers `httpx2` for its TestClient; the installed `httpx` works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from api.context import AppContext
from api.routes.metrics import routes
from indexer.pricing import load_book
from indexer.store import Index

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Readers:
    """ctx.reader that counts the cursors it hands out and those closed."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.opened: list[duckdb.DuckDBPyConnection] = []

    def __call__(self) -> duckdb.DuckDBPyConnection:
        cur = self.con.cursor()
        self.opened.append(cur)
        return cur


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    """Shared, read-only: tests that write use `fresh`."""
    ix = build(tmp_path_factory.mktemp("service"))
    yield ix
    ix.close()


@pytest.fixture
def readers(index: Index) -> Readers:
    return Readers(index.con)


@pytest.fixture
def client(index: Index, readers: Readers) -> Iterator[TestClient]:
    ctx = AppContext(db_path=index.path, reader=readers, book=lambda: load_book(None), machine="box", port=3000)
    app = Starlette(routes=routes(ctx, clock=lambda: NOW))
    with TestClient(app) as c:
        yield c


def get(client: TestClient, url: str, status: int = 200) -> Any:
    r = client.get(url)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    return r.json()


def test_stats_window(client: TestClient) -> None:
    one = get(client, "/api/metrics/stats?window=1m")
    assert (one["window"], one["total_calls"], one["calls_per_minute"]) == ("1m", 4, 4.0)  # a2 e1 s1 a3
    assert one["total_cost_usd"] == pytest.approx(0.0309)
    assert set(one["tiers"]) == {"opus", "sonnet", "haiku", "other"}
    assert one["tiers"]["opus"]["calls"] == 2
    assert get(client, "/api/metrics/stats") == one  # default window: 1m
    assert get(client, "/api/metrics/stats?window=10m")["total_calls"] == 6
    assert get(client, "/api/metrics/stats?window=5m&mode=calculate")["total_calls"] == 5


def test_realtime(client: TestClient) -> None:
    r = get(client, "/api/metrics/realtime")
    assert r["timestamp"] == "2026-03-01T12:00:00.000Z"
    assert [r["windows"][w]["total_calls"] for w in ("1m", "5m", "10m")] == [4, 5, 6]


def test_tiers(client: TestClient) -> None:
    opus = get(client, "/api/metrics/tiers/opus")
    assert (opus["tier"], opus["all_time"]["calls"], opus["windows"]["1m"]["calls"]) == ("opus", 3, 2)
    assert opus["models"] == ["claude-opus-4-6"]
    assert get(client, "/api/metrics/tiers/haiku")["all_time"]["calls"] == 3
    assert get(client, "/api/metrics/tiers/sonnet")["all_time"]["calls"] == 1
    assert get(client, "/api/metrics/tiers/other")["all_time"]["calls"] == 2
    assert get(client, "/api/metrics/tiers/gpt", 404) == {
        "error": "unknown tier 'gpt'; use one of opus, sonnet, haiku, other"
    }


def test_recent(client: TestClient) -> None:
    assert len(get(client, "/api/metrics/recent")["calls"]) == 9  # default 20, 9 calls indexed
    calls = get(client, "/api/metrics/recent?limit=2")["calls"]
    assert [c["timestamp"] for c in calls] == ["2026-03-01T11:59:55.000Z", "2026-03-01T11:59:50.000Z"]
    assert len(get(client, "/api/metrics/recent?limit=1000")["calls"]) == 9


def test_current(client: TestClient) -> None:
    now = get(client, "/api/metrics/current")
    assert (now["project"], now["machine"]) == ("/work/alpha", "box")
    assert (now["activity"]["type"], now["activity"]["timestamp"]) == ("cache_hit", "2026-03-01T11:59:55.000Z")


def test_projects_and_models(client: TestClient) -> None:
    projects = get(client, "/api/metrics/projects")["projects"]
    assert [(p["name"], p["calls"], p["errors"]) for p in projects] == [
        ("/work/alpha", 6, 1),
        ("/work/beta", 2, 0),
        ("/work/gamma", 1, 0),
    ]
    assert set(projects[0]) == {
        "name",
        "cost",
        "tokens",
        "calls",
        "errors",
        "cacheHitRate",
        "avgLatency",
        "lastActivity",
    }
    models = get(client, "/api/metrics/models")["models"]
    assert [m["model"] for m in models][:2] == ["claude-haiku-4-5-20251001", "claude-opus-4-6"]
    assert {"model", "requests", "cost", "tokens", "cacheHitRate", "avgLatency", "errors"} <= set(models[0])
    # One project's models (fixtures/service/README.md: b1 and b2, both haiku).
    (beta,) = get(client, "/api/metrics/models?project=/work/beta")["models"]
    assert (beta["model"], beta["requests"], beta["tokens"]) == ("claude-haiku-4-5-20251001", 2, 2400 + 5060)
    assert beta["cost"] == pytest.approx(0.004 + 0.00076)
    assert get(client, "/api/metrics/models?project=/nowhere")["models"] == []
    for name in ("beta", "-work-beta"):  # as `cco report --project` takes it
        assert get(client, f"/api/metrics/models?project={name}")["models"] == [beta]
        assert get(client, f"/api/metrics/activity?project={name}")["total"] == 3
    gamma = get(client, "/api/metrics/projects?mode=calculate")["projects"][2]
    assert gamma["cost"] == 0.0  # x1 is unpriced; its costUSD counts only in auto and display


def test_activity(client: TestClient) -> None:
    page = get(client, "/api/metrics/activity?limit=4")
    assert (len(page["events"]), page["total"], page["hasMore"]) == (4, 11, True)
    assert [e["type"] for e in page["events"]] == ["cache_hit", "api_call", "error", "model_override"]
    rest = get(client, "/api/metrics/activity?limit=10&offset=4")
    assert (len(rest["events"]), rest["hasMore"]) == (7, False)
    errors = get(client, "/api/metrics/activity?type=error")
    assert [e["type"] for e in errors["events"]] == ["error"]
    both = get(client, "/api/metrics/activity?type=compaction,model_override")
    assert [e["type"] for e in both["events"]] == ["model_override", "compaction"]
    beta = get(client, "/api/metrics/activity?project=/work/beta")
    assert beta["total"] == 3
    # A bare date `to` includes that day; naive date-times are UTC; from is inclusive.
    old = get(client, "/api/metrics/activity?from=2026-02-27&to=2026-02-27")
    assert [e["timestamp"] for e in old["events"]] == ["2026-02-27T10:00:00.000Z"]
    span = get(client, "/api/metrics/activity?from=2026-03-01T11:59:31&to=2026-03-01T12:59:50%2B01:00")
    assert [e["type"] for e in span["events"]] == ["error", "model_override", "cache_hit"]
    zulu = get(client, "/api/metrics/activity?from=2026-03-01T11:59:50Z")
    assert zulu["total"] == 2
    # An unencoded "+" (a space once decoded) still reads as a UTC offset; a space before the time is fine.
    plus = get(client, "/api/metrics/activity?from=2026-03-01T12:59:50+01:00")
    assert plus["total"] == 2
    spaced = get(client, "/api/metrics/activity?from=2026-03-01 11:59:50")
    assert spaced["total"] == 2


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/api/metrics/stats?window=2h", "window must be one of 1m, 5m, 10m, got '2h'"),
        ("/api/metrics/stats?window=1m&mode=cheap", "mode must be one of auto, calculate, display, got 'cheap'"),
        ("/api/metrics/realtime?mode=x", "mode must be one of auto, calculate, display, got 'x'"),
        ("/api/metrics/tiers/opus?mode=x", "mode must be one of auto, calculate, display, got 'x'"),
        ("/api/metrics/recent?limit=ten", "limit must be an integer, got 'ten'"),
        ("/api/metrics/recent?limit=2.5", "limit must be an integer, got '2.5'"),
        ("/api/metrics/recent?limit=0", "limit must be between 1 and 1000, got 0"),
        ("/api/metrics/recent?limit=1001", "limit must be between 1 and 1000, got 1001"),
        ("/api/metrics/current?mode=x", "mode must be one of auto, calculate, display, got 'x'"),
        ("/api/metrics/projects?mode=x", "mode must be one of auto, calculate, display, got 'x'"),
        ("/api/metrics/models?mode=x", "mode must be one of auto, calculate, display, got 'x'"),
        ("/api/metrics/activity?limit=x", "limit must be an integer, got 'x'"),
        ("/api/metrics/activity?limit=5000", "limit must be between 1 and 1000, got 5000"),
        ("/api/metrics/activity?offset=-1", "offset must be between 0 and 1000000000, got -1"),
        ("/api/metrics/activity?offset=1e3", "offset must be an integer, got '1e3'"),
        (
            "/api/metrics/activity?type=api_call,chat",
            "type must be one or more (comma-separated) of api_call, cache_hit, error, model_override, compaction,"
            " got 'chat'",
        ),
        (
            "/api/metrics/activity?from=yesterday",
            "from must be an ISO-8601 date or date-time (e.g. 2026-02-10T22:57:57Z), got 'yesterday'",
        ),
        (
            "/api/metrics/activity?to=2026-02-30",
            "to must be an ISO-8601 date or date-time (e.g. 2026-02-10T22:57:57Z), got '2026-02-30'",
        ),
        ("/api/metrics/activity?from=2026-03-02&to=2026-03-01T00:00Z", "from must not be after to"),
        ("/api/metrics/stats?windw=5m", "unknown parameter 'windw'; use window, mode"),
        ("/api/metrics/current?limit=3", "unknown parameter 'limit'; use mode"),
    ],
)
def test_bad_parameters(client: TestClient, readers: Readers, url: str, message: str) -> None:
    assert get(client, url, 400) == {"error": message}
    assert readers.opened == []  # rejected before touching the index


@pytest.mark.parametrize(
    "query", ["to=9999-12-31", "from=9999-12-31T23:00:00-05:00", "from=0001-01-01T00:00:00%2B01:00", "from=0001-01-01"]
)
def test_activity_at_the_ends_of_the_calendar(client: TestClient, query: str) -> None:
    """Times that do not fit in UTC are before or after every event: an answer, not a 500."""
    everything = get(client, "/api/metrics/activity")["total"]
    assert get(client, f"/api/metrics/activity?{query}")["total"] == (0 if "from=9999" in query else everything)


def test_each_request_gets_its_own_cursor(client: TestClient, readers: Readers) -> None:
    for url in ("/api/metrics/stats", "/api/metrics/projects", "/api/metrics/activity"):
        get(client, url)
    assert len(readers.opened) == 3
    assert len({id(c) for c in readers.opened}) == 3
    with pytest.raises(duckdb.ConnectionException):  # closed after the request
        readers.opened[0].execute("SELECT 1")


def test_unknown_route_and_method(client: TestClient) -> None:
    assert client.get("/api/metrics/nope").status_code == 404
    assert client.post("/api/metrics/stats").status_code == 405
