"""Windows, tiers, recent calls, projects and models over the service fixture (fixtures/service/README.md)."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES, write_tree
from conftest import build_service_index as build

from indexer import metrics
from indexer.errors import BadInput
from indexer.ingest import sync
from indexer.store import Index

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


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


def test_time_helpers() -> None:
    assert metrics.iso_utc(datetime(2026, 3, 1, 12, 0, 0, 941_000)) == "2026-03-01T12:00:00.941Z"
    assert metrics.iso_utc(None) is None
    assert metrics.db_time(datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))) == datetime(2026, 3, 1, 12)
    with pytest.raises(ValueError):
        metrics.db_time(datetime(2026, 3, 1))


def test_one_minute_window(index: Index) -> None:
    w = metrics.window_stats(index.con, now=NOW, window="1m")
    # (11:59:00, 12:00:00]: a2, e1, s1, a3
    assert (w["window"], w["from"], w["to"]) == ("1m", "2026-03-01T11:59:00.000Z", "2026-03-01T12:00:00.000Z")
    assert (w["total_calls"], w["failed_calls"]) == (4, 1)
    assert w["total_cost_usd"] == pytest.approx(0.0205 + 0.00015 + 0.01025)  # 0.0309
    assert w["total_tokens_in"] == (100 + 2000 + 10000) + 100 + 20000  # a2 + s1 + a3 prompt tokens
    assert w["total_tokens_out"] == 100 + 10 + 10
    assert w["cache_savings_usd"] == pytest.approx(0.0425 + 0.09)
    # latencies 1000, 5000, 2000, 3000 -> mean 2750; p95 (linear): sorted[0.95 * 3 = 2.85] = 3000 + 0.85 * 2000
    assert (w["avg_latency_ms"], w["p95_latency_ms"]) == (2750.0, 4700.0)
    assert w["calls_per_minute"] == 4.0
    assert w["cost_per_minute_usd"] == pytest.approx(0.0309)
    tiers = w["tiers"]
    assert list(tiers) == ["opus", "sonnet", "haiku", "other"]
    assert tiers["opus"] == {
        "calls": 2,
        "failed_calls": 0,
        "cost_usd": pytest.approx(0.03075),
        "tokens_in": 12100 + 20000,
        "tokens_out": 110,
        "cache_savings_usd": pytest.approx(0.1325),
        "avg_latency_ms": 2000.0,  # (1000 + 3000) / 2
        "p95_latency_ms": 2900.0,  # 1000 + 0.95 * 2000
    }
    assert (tiers["haiku"]["calls"], tiers["haiku"]["cost_usd"], tiers["haiku"]["tokens_in"]) == (1, 0.00015, 100)
    assert (tiers["other"]["calls"], tiers["other"]["failed_calls"], tiers["other"]["cost_usd"]) == (1, 1, 0.0)
    assert tiers["sonnet"] == {
        "calls": 0,
        "failed_calls": 0,
        "cost_usd": 0.0,
        "tokens_in": 0,
        "tokens_out": 0,
        "cache_savings_usd": 0.0,
        "avg_latency_ms": None,
        "p95_latency_ms": None,
    }


def test_five_and_ten_minute_windows(index: Index) -> None:
    five = metrics.window_stats(index.con, now=NOW, window="5m")
    # (11:55, 12:00]: a1 + the four above
    assert five["total_calls"] == 5
    assert five["total_cost_usd"] == pytest.approx(0.0369)
    assert (five["total_tokens_in"], five["total_tokens_out"]) == (33200, 320)
    # latencies 1000 2000 2000 3000 5000: mean 2600, p95 at 3.8 -> 3000 + 0.8 * 2000
    assert (five["avg_latency_ms"], five["p95_latency_ms"]) == (2600.0, 4600.0)
    assert five["calls_per_minute"] == 1.0
    assert five["cost_per_minute_usd"] == pytest.approx(0.0369 / 5)
    ten = metrics.window_stats(index.con, now=NOW, window="10m")
    # (11:50, 12:00]: + b2 (11:52:04); b1 (11:40:03) is out
    assert ten["total_calls"] == 6
    assert ten["total_cost_usd"] == pytest.approx(0.03766)
    assert (ten["total_tokens_in"], ten["total_tokens_out"]) == (33200 + 5010, 370)
    assert ten["avg_latency_ms"] == pytest.approx(17000 / 6, abs=0.05)
    assert ten["p95_latency_ms"] == 4750.0  # sorted 1000 2000 2000 3000 4000 5000 at 4.75
    assert ten["calls_per_minute"] == 0.6
    assert ten["tiers"]["haiku"]["calls"] == 2  # s1, b2
    assert ten["tiers"]["sonnet"]["cost_usd"] == pytest.approx(0.006)


def test_window_bounds_are_half_open(index: Index) -> None:
    # A call exactly at now - 1m is out; one exactly at now is in.
    at_a2 = datetime(2026, 3, 1, 11, 59, 31, tzinfo=UTC)
    assert metrics.window_stats(index.con, now=at_a2, window="1m")["total_calls"] == 1  # a2 itself
    after = at_a2 + timedelta(minutes=1)
    assert metrics.window_stats(index.con, now=after, window="1m")["total_calls"] == 3  # e1 s1 a3


def test_realtime_has_every_window(index: Index) -> None:
    r = metrics.realtime(index.con, now=NOW)
    assert r["timestamp"] == "2026-03-01T12:00:00.000Z"
    assert list(r["windows"]) == ["1m", "5m", "10m"]
    for name in ("1m", "5m", "10m"):
        assert r["windows"][name] == metrics.window_stats(index.con, now=NOW, window=name)


def test_cost_mode_in_windows(index: Index) -> None:
    old = datetime(2026, 2, 27, 10, 0, 30, tzinfo=UTC)  # x1 (costUSD 0.5, unpriced) in the last minute
    assert metrics.window_stats(index.con, now=old, window="1m")["total_cost_usd"] == 0.5
    assert metrics.window_stats(index.con, now=old, window="1m", mode="calculate")["total_cost_usd"] == 0.0
    with pytest.raises(BadInput):
        metrics.window_stats(index.con, now=old, window="1m", mode="nope")


def test_tier_detail(index: Index) -> None:
    memo = metrics.Memo()
    opus = metrics.tier_detail(index.con, "opus", now=NOW, memo=memo)
    assert opus["tier"] == "opus"
    assert opus["models"] == ["claude-opus-4-6"]
    assert opus["windows"]["1m"]["calls"] == 2
    assert opus["windows"]["1m"]["calls_per_minute"] == 2.0
    assert opus["windows"]["10m"]["cost_per_minute_usd"] == pytest.approx(0.03075 / 10)
    # all time: a2 a3 o1
    assert opus["all_time"]["calls"] == 3
    assert opus["all_time"]["cost_usd"] == pytest.approx(0.06075)
    assert opus["all_time"]["avg_latency_ms"] == 2000.0  # o1 has none
    assert opus["all_time"]["last_activity"] == "2026-03-01T11:59:55.000Z"
    other = metrics.tier_detail(index.con, "other", now=NOW, memo=memo)
    assert other["models"] == ["<synthetic>", "claude-unknown-x"]
    assert (other["all_time"]["calls"], other["all_time"]["failed_calls"]) == (2, 1)
    sonnet = metrics.tier_detail(index.con, "sonnet", now=NOW + timedelta(hours=1), memo=memo)
    assert sonnet["windows"]["10m"]["calls"] == 0
    assert sonnet["all_time"]["calls"] == 1
    with pytest.raises(ValueError):
        metrics.tier_detail(index.con, "gpt", now=NOW)


def test_recent_calls(index: Index) -> None:
    calls = metrics.recent_calls(index.con, limit=3)["calls"]
    assert [c["timestamp"] for c in calls] == [
        "2026-03-01T11:59:55.000Z",  # a3
        "2026-03-01T11:59:50.000Z",  # s1
        "2026-03-01T11:59:45.000Z",  # e1
    ]
    a3, s1, e1 = calls
    assert a3["model"] == "claude-opus-4-6"
    assert (a3["tier"], a3["project"], a3["session"]) == ("opus", "/work/alpha", "sa")
    assert (a3["input_tokens"], a3["output_tokens"], a3["cache_read_tokens"], a3["total_tokens"]) == (
        0,
        10,
        20000,
        20010,
    )
    assert a3["cost_usd"] == pytest.approx(0.01025)
    assert a3["cache_savings_usd"] == pytest.approx(0.09)
    assert (a3["latency_ms"], a3["failed"], a3["error"]) == (3000, False, None)
    assert s1["sidechain"] is True
    assert e1["failed"] is True
    assert e1["error"].startswith("API Error: 529")
    assert len(e1["error"]) == 200
    assert len(metrics.recent_calls(index.con, limit=1000)["calls"]) == 9
    b2 = metrics.recent_calls(index.con, limit=6)["calls"][-1]  # a3 s1 e1 a2 a1 b2
    assert (b2["timestamp"], b2["output_tokens"], b2["latency_ms"]) == ("2026-03-01T11:52:04.000Z", 50, 4000)


def test_projects(index: Index) -> None:
    projects = metrics.project_stats(index.con)["projects"]
    assert [p["name"] for p in projects] == ["/work/alpha", "/work/beta", "/work/gamma"]  # newest first
    alpha, beta, gamma = projects
    assert alpha == {
        "name": "/work/alpha",
        "cost": pytest.approx(0.006 + 0.0205 + 0.00015 + 0.01025 + 0.03),  # 0.0669
        "tokens": 1200 + 12200 + 0 + 110 + 20010 + 2000,
        "calls": 6,
        "errors": 1,
        "cacheHitRate": 0.8772,  # 30000 read / (2200 input + 2000 write + 30000 read)
        "avgLatency": 2600.0,  # (2000 + 1000 + 5000 + 2000 + 3000) / 5
        "lastActivity": "2026-03-01T11:59:55.000Z",
    }
    assert (beta["calls"], beta["tokens"], beta["errors"]) == (2, 7460, 0)
    assert beta["cost"] == pytest.approx(0.00476)
    assert beta["cacheHitRate"] == 0.7133  # 5000 / (2010 + 5000)
    assert beta["avgLatency"] == 3500.0
    assert gamma == {
        "name": "/work/gamma",
        "cost": 0.5,
        "tokens": 1000,
        "calls": 1,
        "errors": 0,
        "cacheHitRate": 0.0,
        "avgLatency": None,
        "lastActivity": "2026-02-27T10:00:00.000Z",
    }
    assert metrics.project_stats(index.con, mode="calculate")["projects"][2]["cost"] == 0.0


def test_models(index: Index) -> None:
    models = metrics.model_stats(index.con)["models"]
    # most requests first, then by id
    assert [(m["model"], m["requests"]) for m in models] == [
        ("claude-haiku-4-5-20251001", 3),
        ("claude-opus-4-6", 3),
        ("<synthetic>", 1),
        ("claude-sonnet-4-6", 1),
        ("claude-unknown-x", 1),
    ]
    haiku, opus, synthetic, sonnet, unknown = models
    assert haiku["cost"] == pytest.approx(0.00015 + 0.004 + 0.00076)
    assert haiku["tokens"] == 110 + 2400 + 5060
    assert haiku["cacheHitRate"] == 0.7032  # 5000 / (100 + 2000 + 10 + 5000)
    assert haiku["avgLatency"] == 3000.0  # (2000 + 3000 + 4000) / 3
    assert opus["cost"] == pytest.approx(0.06075)
    assert (opus["tier"], opus["errors"], opus["lastActivity"]) == ("opus", 0, "2026-03-01T11:59:55.000Z")
    assert (synthetic["errors"], synthetic["cost"], synthetic["tokens"], synthetic["cacheHitRate"]) == (1, 0.0, 0, None)
    assert (sonnet["cost"], sonnet["tokens"]) == (0.006, 1200)
    assert (unknown["cost"], unknown["tier"]) == (0.5, "other")


def test_empty_index(tmp_path: Path) -> None:
    with Index(tmp_path / "e.duckdb") as ix:
        w = metrics.window_stats(ix.con, now=NOW, window="10m")
        assert (w["total_calls"], w["total_cost_usd"], w["avg_latency_ms"], w["p95_latency_ms"]) == (0, 0.0, None, None)
        assert all(t["calls"] == 0 for t in w["tiers"].values())
        assert metrics.recent_calls(ix.con)["calls"] == []
        assert metrics.project_stats(ix.con)["projects"] == []
        assert metrics.model_stats(ix.con)["models"] == []
        assert metrics.tier_detail(ix.con, "haiku", now=NOW)["all_time"]["last_activity"] is None


def test_memo_follows_commits_and_prices(fresh: Index, tmp_path: Path) -> None:
    memo = metrics.Memo()
    computed: list[int] = []

    def compute() -> int:
        computed.append(1)
        return len(computed)

    assert memo.get(fresh.con, "k", compute) == 1
    assert memo.get(fresh.con, "k", compute) == 1  # unchanged index: no recomputation
    line = (FIXTURES / "service" / "projects" / "-work-alpha" / "sa2.jsonl").read_text()
    root = write_tree(tmp_path / "more", {"-work-delta/sd.jsonl": line.replace("msg_o1", "msg_d1")})
    sync(fresh, [root / "projects"])
    assert memo.get(fresh.con, "k", compute) == 2  # a commit changes the version
    assert memo.get(fresh.con, "k", compute) == 2
    fresh.con.execute("UPDATE prices SET p_out = p_out * 2 WHERE model = 'claude-opus-4-6'")
    assert memo.get(fresh.con, "k", compute) == 3  # a price change too
    # and the projects seen through the memo follow
    names = [p["name"] for p in metrics.project_stats(fresh.con, memo=memo)["projects"]]
    assert "/work/alpha" in names


def test_a_project_is_named_as_report_options_name_it(fresh: Index, tmp_path: Path) -> None:
    """?project= takes what `cco report --project` takes; a last folder two projects share is refused."""
    for name in ("/work/beta", "beta", "-work-beta"):
        assert metrics.project_named(fresh.con, name)[0] == "/work/beta"
    assert metrics.project_named(fresh.con, "nowhere") == ("nowhere", ())  # matches nothing: an empty answer
    line = (FIXTURES / "service" / "projects" / "-work-alpha" / "sa2.jsonl").read_text()
    other = line.replace("msg_o1", "msg_x1").replace('"/work/alpha"', '"/other/alpha"')
    sync(fresh, [write_tree(tmp_path / "more", {"-other-alpha/sx.jsonl": other}) / "projects"])
    with pytest.raises(BadInput, match="project 'alpha' could be any of /other/alpha, /work/alpha; give its path"):
        metrics.project_named(fresh.con, "alpha")
    assert metrics.project_named(fresh.con, "-other-alpha") == ("/other/alpha", ("sx",))


def test_a_folder_name_covers_its_sessions_in_models_and_activity(tmp_path: Path) -> None:
    """As in reports: a call made after `cd frontend` is filed in the session's folder."""
    from indexer.activity import ActivityQuery, activity
    from tests.live_helpers import call_line

    tree = write_tree(
        tmp_path / "claude",
        {
            "-work-app/s1.jsonl": call_line(cwd="/work/app", input_tokens=100, output_tokens=0)
            + call_line(cwd="/work/app/frontend", input_tokens=200, output_tokens=0),
            "-work-other/s3.jsonl": call_line(cwd="/work/other", input_tokens=1000, output_tokens=0),
        },
    )
    with Index(tmp_path / "i.duckdb") as index:
        sync(index, [tree / "projects"])
        named = metrics.project_named(index.con, "-work-app")
        assert named == ("/work/app", ("s1",))
        (model,) = metrics.model_stats(index.con, project=named)["models"]
        assert (model["requests"], model["tokens"]) == (2, 300)
        assert (
            metrics.model_stats(index.con, project=metrics.project_named(index.con, "/work/app"))["models"][0]["tokens"]
            == 100
        )  # a path is the cwd only (no folder of that name)
        feed = activity(index.con, ActivityQuery(project=named[0], sessions=named[1]))
        assert feed["total"] == 2 and {e["project"] for e in feed["events"]} == {"/work/app", "/work/app/frontend"}


@pytest.mark.parametrize(
    "values", [[5.0], [1.0, 2.0], [3.0, 1.0, 2.0, 10.0], [float(v) for v in range(1, 101)], [7.0] * 4]
)
def test_p95_is_linear_interpolation(values: list[float]) -> None:
    assert metrics.p95(values) == pytest.approx(float(np.percentile(values, 95)))
    assert metrics.p95([]) is None


def test_memo_computes_each_key_once_and_keys_do_not_wait(index: Index) -> None:
    memo = metrics.Memo()
    slow_started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow() -> str:
        calls.append("slow")
        slow_started.set()
        release.wait(10)
        return "slow"

    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(memo.get(index.con.cursor(), "slow", slow))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    assert slow_started.wait(10)
    # Another key is answered while "slow" is still being computed.
    assert memo.get(index.con.cursor(), "fast", lambda: "fast") == "fast"
    release.set()
    for t in threads:
        t.join(10)
    assert results == ["slow"] * 3
    assert calls == ["slow"]


def test_memo_is_bounded(index: Index) -> None:
    memo = metrics.Memo(max_entries=2)
    for key in range(5):
        assert memo.get(index.con, key, functools.partial(int, key)) == key
    assert memo.get(index.con, 4, lambda: -1) == 4
    assert memo.get(index.con, 0, lambda: -1) == -1  # evicted


def test_groupings_add_up_to_the_overall(index: Index) -> None:
    everything = metrics.overall(index.con)
    for parts in (metrics.by_project(index.con).values(), (a for _, a in metrics.by_model(index.con).values())):
        total = metrics.combine(parts)
        assert (total.calls, total.errors, total.tokens, total.latency_n, total.last) == (
            everything.calls,
            everything.errors,
            everything.tokens,
            everything.latency_n,
            everything.last,
        )
        assert total.cost == pytest.approx(everything.cost)
        assert total.savings == pytest.approx(everything.savings)


@pytest.mark.parametrize(
    "now",
    [
        NOW,
        NOW + timedelta(seconds=1),
        datetime(2026, 3, 1, 12, 5, tzinfo=UTC),  # now - 10 min on a 5-minute bucket edge
        datetime(2026, 3, 1, 12, 4, 59, 999_999, tzinfo=UTC),
        datetime(2026, 3, 1, 12, 9, 31, tzinfo=UTC),  # a2 leaves the 10-minute window at its edge
        datetime(2026, 3, 1, 11, 59, 31, tzinfo=UTC),  # a2 at the window's closed end
    ],
)
def test_memoized_windows_are_exact(index: Index, now: datetime) -> None:
    memo = metrics.Memo()
    for _ in range(2):  # a miss, then a hit
        assert metrics.realtime(index.con, now=now, memo=memo) == metrics.realtime(index.con, now=now)
    # one memo across moving clocks
    for seconds in range(0, 900, 29):
        later = now + timedelta(seconds=seconds)
        assert metrics.realtime(index.con, now=later, memo=memo) == metrics.realtime(index.con, now=later)
