"""5-hour blocks over the hand-checked fixture (fixtures/reports/README.md, section Blocks)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from indexer.blocks import block_options, blocks_report
from indexer.errors import BadInput
from indexer.ingest import sync
from indexer.pricing import apply_prices, load_book
from indexer.store import Index

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "reports"
HOURS_5 = timedelta(hours=5)
ONE_MS = timedelta(milliseconds=1)
NOW = datetime(2026, 4, 2, 16, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    ix = Index(tmp_path_factory.mktemp("blocks") / "index.duckdb")
    sync(ix, [FIXTURE / "projects"])
    apply_prices(ix.con, load_book(None))
    yield ix
    ix.close()


def blocks(index: Index, now: datetime = NOW, **options: Any) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = blocks_report(index.con, block_options(**options), now=now)["blocks"]
    return result


def test_blocks_with_gaps_and_the_start_rule(index: Index) -> None:
    got = [
        (b["startTime"][5:16], b["endTime"][5:16], b["isGap"], b["entries"], b["totalTokens"]) for b in blocks(index)
    ]
    assert got == [
        ("03-09T23:00", "03-10T04:00", False, 2, 20100),
        ("03-10T04:00", "03-10T12:00", True, 0, 0),
        ("03-10T12:00", "03-10T17:00", False, 2, 65000),
        ("03-10T17:00", "03-10T19:00", True, 0, 0),
        ("03-10T19:00", "03-11T00:00", False, 2, 2000),
        ("03-11T00:00", "04-02T10:00", True, 0, 0),
        ("04-02T10:00", "04-02T15:00", False, 2, 4000),
        ("04-02T15:00", "04-02T20:00", False, 2, 3000),  # start rule: no idle gap, no gap block
    ]


def test_block_fields_match_ccusage_shape(index: Index) -> None:
    first, gap = blocks(index)[:2]
    assert list(first) == [
        "id", "startTime", "endTime", "actualEndTime", "isActive", "isGap", "entries", "tokenCounts",
        "totalTokens", "costUSD", "models", "burnRate", "projection", "tokenLimitStatus",
    ]  # fmt: skip
    assert first["id"] == first["startTime"] == "2026-03-09T23:00:00.000Z"
    assert first["actualEndTime"] == "2026-03-09T23:45:00.000Z"
    assert first["tokenCounts"] == {
        "inputTokens": 1100,
        "outputTokens": 3000,
        "cacheCreationInputTokens": 6000,
        "cacheReadInputTokens": 10000,
    }
    assert first["costUSD"] == pytest.approx(0.0965)
    assert first["models"] == ["claude-opus-4-6", "claude-sonnet-4-6"]
    assert first["burnRate"]["tokensPerMinute"] == pytest.approx(20100 / 15)
    assert first["projection"] is None and first["isActive"] is False
    assert gap["id"] == "gap-2026-03-10T04:00:00.000Z"
    assert gap["actualEndTime"] is None and gap["models"] == [] and gap["burnRate"] is None


def test_synthetic_not_in_models_but_counted(index: Index) -> None:
    fifth = blocks(index)[4]
    assert fifth["models"] == ["claude-haiku-4-5-20251001"]
    assert fifth["entries"] == 2


def test_active_block_projection(index: Index) -> None:
    (active,) = blocks(index, active=True)
    assert active["startTime"] == "2026-04-02T15:00:00.000Z"
    assert active["isActive"] is True
    assert active["burnRate"]["tokensPerMinute"] == pytest.approx(100.0)
    assert active["burnRate"]["costPerMinute"] == pytest.approx(0.0003)
    assert active["burnRate"]["costPerHour"] == pytest.approx(0.018)
    assert active["projection"] == {"totalTokens": 24000, "totalCost": pytest.approx(0.072), "remainingMinutes": 210}


def test_not_active_after_idle_or_end(index: Index) -> None:
    # 5 h after the last call (16:00) nothing is active; neither after the block's end.
    assert blocks(index, now=datetime(2026, 4, 2, 21, 0, tzinfo=UTC), active=True) == []
    assert blocks(index, now=datetime(2026, 4, 2, 19, 59, tzinfo=UTC), active=True)[0]["projection"] == {
        "totalTokens": 3000 + 100,
        "totalCost": pytest.approx(0.009 + 0.0003),
        "remainingMinutes": 1,
    }


def test_token_limit_statuses(index: Index) -> None:
    status = {b["startTime"][5:16]: b["tokenLimitStatus"] for b in blocks(index, token_limit="25000")}
    assert status["03-09T23:00"] == {
        "limit": 25000,
        "projectedUsage": 20100,
        "percentUsed": pytest.approx(80.4),
        "status": "warning",
    }
    assert status["03-10T12:00"]["status"] == "exceeds"
    assert status["03-10T19:00"]["status"] == "ok"
    assert status["04-02T15:00"]["projectedUsage"] == 24000
    assert status["04-02T15:00"]["status"] == "warning"
    assert status["03-10T04:00"] is None  # gaps have no status
    # the edges: a warning is above 80%, exceeding above 100% (that block holds 20,100 tokens)
    for limit, percent, word in ((25125, 80.0, "ok"), (20100, 100.0, "warning"), (20099, 100.005, "exceeds")):
        edge = {b["startTime"][5:16]: b["tokenLimitStatus"] for b in blocks(index, token_limit=str(limit))}
        assert (edge["03-09T23:00"]["percentUsed"], edge["03-09T23:00"]["status"]) == (pytest.approx(percent), word)


def test_token_limit_max_is_the_largest_past_block(index: Index) -> None:
    (active,) = blocks(index, token_limit="max", active=True)
    assert active["tokenLimitStatus"]["limit"] == 65000
    assert active["tokenLimitStatus"]["percentUsed"] == pytest.approx(24000 / 650)
    assert active["tokenLimitStatus"]["status"] == "ok"


def test_recent(index: Index) -> None:
    assert [b["startTime"] for b in blocks(index, recent=True)] == [
        "2026-04-02T10:00:00.000Z",
        "2026-04-02T15:00:00.000Z",
    ]


def test_session_length(index: Index) -> None:
    two_hours = blocks(index, session_length=2)
    starts = [b["startTime"][5:16] for b in two_hours if not b["isGap"]]
    # 10:15 -> block 10:00-12:00; 13:00 (2 h 45 min after 10:15: idle) -> 13:00; 15:30 -> 15:00.
    assert starts[-3:] == ["04-02T10:00", "04-02T13:00", "04-02T15:00"]
    half = blocks(index, session_length="2.5")
    # 10:15 -> 10:00-12:30; 13:00 (idle 2 h 45 min) -> 13:00-15:30; 15:30 is exactly 2.5 h after the
    # start, not more: same block; 16:00 -> 16:00-18:30.
    assert [b["endTime"][11:16] for b in half if not b["isGap"]][-3:] == ["12:30", "15:30", "18:30"]
    assert [b["entries"] for b in half if not b["isGap"]][-3:] == [1, 2, 1]


def test_empty_index(tmp_path: Path) -> None:
    with Index(tmp_path / "empty.duckdb") as ix:
        assert blocks_report(ix.con, block_options(token_limit="max"), now=NOW) == {"blocks": []}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token_limit": "lots"}, "--token-limit must be a number"),
        ({"token_limit": "-5"}, "--token-limit must be positive"),
        (
            {"session_length": "0"},
            "--session-length must be hours from 1 to 168 \\(a week\\), in whole minutes, got 0",
        ),
        # a block starts on the hour: one of 30 minutes could end before its first call (10:50)
        ({"session_length": "0.5"}, "from 1 to 168 \\(a week\\), in whole minutes, got 0.5"),
        ({"session_length": "200"}, "from 1 to 168 \\(a week\\)"),
        ({"session_length": "five"}, "is not a number of hours"),
        ({"mode": "x"}, "--mode must be one of"),
    ],
)
def test_bad_arguments(options: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        block_options(**options)


def test_settled_once_the_last_call_is_a_session_length_ago(index: Index) -> None:
    """A settled report no longer depends on the time: what the service may keep until the index changes."""
    from indexer.blocks import blocks_from_buckets, bucket_rows, settled

    opts = block_options()
    buckets = bucket_rows(index.con, opts)
    last = datetime.fromtimestamp(max(row[2] for row in buckets) / 1000, UTC)
    assert not settled(buckets, opts, last + (HOURS_5 - ONE_MS))
    assert settled(buckets, opts, last + HOURS_5)
    assert settled([], opts, last)
    later = [blocks_from_buckets(buckets, opts, last + HOURS_5 * k) for k in (1, 2, 100)]
    assert later[0] == later[1] == later[2] == blocks_report(index.con, opts)
    assert not any(b["isActive"] for b in later[0]["blocks"])
