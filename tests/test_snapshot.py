"""compute_snapshot over the hand-checked service fixture (fixtures/service/README.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import FIXTURES, write_tree
from conftest import build_service_index as build

from indexer.ingest import sync
from indexer.metrics import Memo, iso_utc
from indexer.pricing import load_book
from indexer.snapshot import compute_snapshot, local_day
from indexer.status import index_status
from indexer.store import Index

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")  # UTC-5 on 2026-03-01 (DST starts 03-08)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    """Shared, read-only: tests that write use `fresh`."""
    ix = build(tmp_path_factory.mktemp("service"))
    yield ix
    ix.close()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Index]:
    ix = build(tmp_path)
    yield ix
    ix.close()


def test_snapshot_totals(index: Index) -> None:
    s = compute_snapshot(index.con, now=NOW, uptime_s=12.5, port=3000, tz=NEW_YORK)
    assert s.timestamp == "2026-03-01T12:00:00.000Z"
    assert (s.uptime_s, s.port) == (12.5, 3000)
    # a1 a2 e1 s1 a3 b1 b2 o1 x1; e1 failed
    assert (s.total_requests, s.successful_requests, s.failed_requests) == (9, 8, 1)
    # auto: 0.006 + 0.0205 + 0 + 0.00015 + 0.01025 + 0.004 + 0.00076 + 0.03 + 0.5 (x1's costUSD)
    assert s.total_cost == 0.57166  # amounts come rounded as reports print them (10 decimals)
    assert s.input_tokens == 1000 + 100 + 100 + 0 + 2000 + 10 + 1000 + 500  # 4710
    assert s.output_tokens == 200 + 100 + 10 + 10 + 400 + 50 + 1000 + 500  # 2270 (b2: max of 1, 50)
    assert s.cache_creation_tokens == 2000
    assert s.cache_read_tokens == 10000 + 20000 + 5000
    assert s.total_tokens == 4710 + 2270 + 2000 + 35000
    assert s.cache_savings == round(0.0425 + 0.09 + 0.0045, 10)
    # latencies a1 2000, a2 1000, e1 5000, s1 2000, a3 3000, b1 3000, b2 4000
    assert s.avg_response_time_ms == pytest.approx(20000 / 7)
    assert s.messages_count == 19
    assert s.last_activity == "2026-03-01T11:59:55.000Z"


def test_snapshot_agrees_with_status(index: Index) -> None:
    s = compute_snapshot(index.con, now=NOW, uptime_s=0, port=0, tz=UTC)
    st = index_status(index, load_book(None))
    assert (s.total_requests, s.failed_requests, s.total_tokens) == (st.calls, st.failed_calls, st.total_tokens)
    assert s.total_cost == pytest.approx(st.total_cost)


def test_today_is_the_local_day(index: Index) -> None:
    # New York: 2026-03-01 05:00Z .. 03-02 05:00Z, so o1 (04:30Z, still Feb 28 there) is not today.
    ny = compute_snapshot(index.con, now=NOW, uptime_s=0, port=0, tz=NEW_YORK)
    assert ny.today_cost == round(0.006 + 0.0205 + 0.00015 + 0.01025 + 0.004 + 0.00076, 10)
    assert ny.today_tokens == 1200 + 12200 + 0 + 110 + 20010 + 2400 + 5060  # 40980
    utc = compute_snapshot(index.con, now=NOW, uptime_s=0, port=0, tz=UTC)
    assert utc.today_cost == round(0.04166 + 0.03, 10)
    assert utc.today_tokens == 40980 + 2000


def test_last_ten_minutes(index: Index) -> None:
    s = compute_snapshot(index.con, now=NOW, uptime_s=0, port=0, tz=UTC)
    # (11:50, 12:00]: a1 a2 e1 s1 a3 b2 -> 6 calls over 10 minutes, projects alpha and beta
    assert s.calls_per_minute == pytest.approx(0.6)
    assert s.cost_per_minute == round((0.006 + 0.0205 + 0.00015 + 0.01025 + 0.00076) / 10, 10)
    assert s.active_projects == 2
    # Half an hour later nothing is recent, but totals stay.
    later = compute_snapshot(index.con, now=NOW + timedelta(minutes=30), uptime_s=0, port=0, tz=UTC)
    assert (later.calls_per_minute, later.cost_per_minute, later.active_projects) == (0, 0, 0)
    assert later.total_requests == 9


def test_cost_modes(index: Index) -> None:
    calc = compute_snapshot(index.con, now=NOW, uptime_s=0, port=0, mode="calculate", tz=UTC)
    assert calc.total_cost == pytest.approx(0.07166)  # x1 is unpriced: 0 when calculated
    display = compute_snapshot(index.con, now=NOW, uptime_s=0, port=0, mode="display", tz=UTC)
    assert display.total_cost == pytest.approx(0.5)  # only x1 carries costUSD


def test_empty_index(tmp_path: Path) -> None:
    with Index(tmp_path / "empty.duckdb") as ix:
        s = compute_snapshot(ix.con, now=NOW, uptime_s=1, port=1, tz=UTC)
    assert (s.total_requests, s.total_cost, s.total_tokens, s.messages_count) == (0, 0.0, 0, 0)
    assert s.avg_response_time_ms is None
    assert s.last_activity is None
    assert (s.calls_per_minute, s.active_projects, s.today_cost) == (0, 0, 0.0)


def test_memo_reuses_totals_until_the_index_changes(fresh: Index, tmp_path: Path) -> None:
    memo = Memo()
    first = compute_snapshot(fresh.con, now=NOW, uptime_s=0, port=0, tz=UTC, memo=memo)
    assert compute_snapshot(fresh.con, now=NOW, uptime_s=0, port=0, tz=UTC, memo=memo) == first
    # A new line in a transcript, read by sync, changes the totals seen through the same memo.
    extra = (FIXTURES / "service" / "projects" / "-work-alpha" / "sa2.jsonl").read_text()
    extra = extra.replace("msg_o1", "msg_o2").replace("req_o1", "req_o2").replace("04:30:00", "04:31:00")
    root = write_tree(tmp_path / "more", {"-work-alpha/sa3.jsonl": extra})
    sync(fresh, [root / "projects"])
    after = compute_snapshot(fresh.con, now=NOW, uptime_s=0, port=0, tz=UTC, memo=memo)
    assert after.total_requests == 10
    assert after.total_cost == pytest.approx(first.total_cost + 0.03)


def test_local_day_across_dst() -> None:
    # 2026-03-08 is 23 hours long in New York (clocks jump from 02:00 to 03:00).
    start, end = local_day(datetime(2026, 3, 8, 18, 0, tzinfo=UTC), NEW_YORK)
    assert (iso_utc(start), iso_utc(end)) == ("2026-03-08T05:00:00.000Z", "2026-03-09T04:00:00.000Z")
    # Without a zone: the system's; the bounds still hold `now` and are a calendar day apart.
    start, end = local_day(NOW)
    assert start <= NOW < end
    assert timedelta(hours=22) <= end - start <= timedelta(hours=26)


def test_memoized_snapshots_equal_fresh_ones(index: Index) -> None:
    memo = Memo()
    for seconds in range(-60, 1200, 37):
        now = NOW + timedelta(seconds=seconds)
        assert compute_snapshot(index.con, now=now, uptime_s=0, port=0, tz=NEW_YORK, memo=memo) == compute_snapshot(
            index.con, now=now, uptime_s=0, port=0, tz=NEW_YORK
        )
