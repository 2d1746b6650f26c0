"""GET /api/reports/…: the same documents as `cco report --json`, 400 for bad values."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

from api.context import AppContext
from api.routes.reports import routes
from indexer.blocks import block_options, blocks_report
from indexer.ingest import sync
from indexer.pricing import apply_prices, load_book
from indexer.reports import period_report, report_options
from indexer.store import Index

with warnings.catch_warnings():
    # This Starlette prefers `httpx2` for its TestClient; the installed `httpx` works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "reports"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    ix = Index(tmp_path_factory.mktemp("routes") / "index.duckdb")
    sync(ix, [FIXTURE / "projects"])
    apply_prices(ix.con, load_book(None))
    yield ix
    ix.close()


@pytest.fixture
def client(index: Index) -> TestClient:
    ctx = AppContext(index.path, reader=lambda: index.con.cursor(), book=lambda: load_book(None), machine="test")
    return TestClient(Starlette(routes=routes(ctx)))


@pytest.mark.parametrize("kind", ["daily", "weekly", "monthly", "session"])
def test_same_json_as_the_indexer(client: TestClient, index: Index, kind: str) -> None:
    response = client.get(f"/api/reports/{kind}", params={"timezone": "Europe/Berlin", "instances": "true"})
    assert response.status_code == 200
    expected = period_report(index.con, kind, report_options(timezone="Europe/Berlin", instances=True))
    assert response.json() == expected


def test_daily_parameters(client: TestClient) -> None:
    data = client.get(
        "/api/reports/daily",
        params={"timezone": "UTC", "since": "2026-03-10", "until": "2026-03-10", "project": "beta"},
    ).json()
    assert [(r["date"], r["totalTokens"], r["totalCost"]) for r in data["daily"]] == [("2026-03-10", 64000, 0.031)]
    weekly = client.get("/api/reports/weekly?timezone=UTC&start-of-week=tuesday&order=desc").json()
    assert [r["week"] for r in weekly["weekly"]] == ["2026-03-31", "2026-03-10", "2026-03-03"]
    monthly = client.get("/api/reports/monthly", params={"timezone": "UTC", "mode": "display"}).json()
    assert monthly["totals"]["totalCost"] == 0.0  # no line carries costUSD
    assert monthly["totals"]["totalTokens"] == 94100


def test_blocks(client: TestClient, index: Index) -> None:
    response = client.get("/api/reports/blocks", params={"token_limit": "max", "session_length": "5"})
    assert response.status_code == 200
    data = response.json()
    expected = blocks_report(index.con, block_options(token_limit="max"))
    assert data == expected
    assert [b["isGap"] for b in data["blocks"]] == [False, True, False, True, False, True, False, False]
    assert client.get("/api/reports/blocks?active=true").json() == {"blocks": []}  # the fixture is in the past


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/api/reports/daily?since=2026-99-01", "--since '2026-99-01' is not a date"),
        ("/api/reports/weekly?timezone=Atlantis/Capital", "unknown timezone 'Atlantis/Capital'"),
        ("/api/reports/monthly?since=2026-05-01&until=2026-04-01", "is after --until"),
        ("/api/reports/session?instances=perhaps", "instances must be true or false"),
        ("/api/reports/blocks?token_limit=lots", "--token-limit must be a number"),
        ("/api/reports/blocks?session_length=-1", "--session-length must be hours from 1 to 168"),
        ("/api/reports/daily?snce=2099-01-01", "unknown parameter 'snce'"),
        ("/api/reports/blocks?since=2099-01-01", "unknown parameter 'since'"),
        ("/api/reports/daily?start_of_week=monday", "unknown parameter 'start_of_week'"),  # weekly's only
        ("/api/reports/daily?project=", "--project needs a project name or path"),
    ],
)
def test_bad_parameters_are_400(client: TestClient, url: str, message: str) -> None:
    response = client.get(url)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_dates_at_the_ends_of_the_calendar(client: TestClient) -> None:
    """Bounds a day from year 1 or 9999 cannot be turned into UTC: before or after every call, not a 500."""
    everything = client.get("/api/reports/daily").json()["totals"]
    assert client.get("/api/reports/daily?until=9999-12-31").json()["totals"] == everything
    assert client.get("/api/reports/weekly?since=0001-01-01&timezone=Pacific/Pago_Pago").json()["totals"] == everything
    assert client.get("/api/reports/daily?since=9999-12-31&timezone=Asia/Tokyo").json()["daily"] == []


def test_unknown_report_is_404(client: TestClient) -> None:
    response = client.get("/api/reports/hourly")
    assert response.status_code == 404
    assert "unknown report" in response.json()["error"]


def test_empty_index(tmp_path: Path) -> None:
    with Index(tmp_path / "empty.duckdb") as ix:
        apply_prices(ix.con, load_book(None))
        ctx = AppContext(ix.path, reader=lambda: ix.con.cursor(), book=lambda: load_book(None), machine="test")
        client = TestClient(Starlette(routes=routes(ctx)))
        assert client.get("/api/reports/daily").json()["daily"] == []
        assert client.get("/api/reports/session?instances=1").json()["projects"] == {}
        assert client.get("/api/reports/blocks?recent=true").json() == {"blocks": []}


def test_answers_follow_the_index(tmp_path: Path) -> None:
    """Answers are kept between requests, but only until the index changes (here: its prices)."""
    from dataclasses import replace

    from indexer.pricing import PriceBook
    from schemas.pricing import Rates

    with Index(tmp_path / "i.duckdb") as ix:
        sync(ix, [FIXTURE / "projects"])
        book = load_book(None)
        apply_prices(ix.con, book)
        ctx = AppContext(ix.path, reader=lambda: ix.con.cursor(), book=lambda: book, machine="test")
        client = TestClient(Starlette(routes=routes(ctx)))
        urls = ["/api/reports/daily?mode=calculate", "/api/reports/blocks?mode=calculate"]
        before = [client.get(url).json() for url in urls]
        assert before == [client.get(url).json() for url in urls]
        assert before[0]["totals"]["totalCost"] > 0
        zero = Rates(0, 0, 0, 0, 0)
        free = {m: replace(p, rates=zero, long_context=None) for m, p in book.models.items()}
        apply_prices(ix.con, PriceBook(free, book.web_search_per_1000))
        after = [client.get(url).json() for url in urls]
    assert after[0]["totals"]["totalCost"] == 0
    assert after[0]["totals"]["totalTokens"] == before[0]["totals"]["totalTokens"]
    assert [b["costUSD"] for b in after[1]["blocks"]] == [0.0] * len(before[1]["blocks"])
