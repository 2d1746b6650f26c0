"""The activity feed and `current` over the service fixture (fixtures/service/README.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import FIXTURES, service_files, write_tree
from conftest import build_service_index as build

from indexer.activity import EVENT_TYPES, ActivityQuery, activity, current, model_overrides
from indexer.ingest import sync
from indexer.metrics import Memo
from indexer.pricing import apply_prices, load_book
from indexer.store import Index

# Newest first: (type, timestamp) of every event in the fixture.
ALL = [
    ("cache_hit", "2026-03-01T11:59:55.000Z"),  # a3
    ("api_call", "2026-03-01T11:59:50.000Z"),  # s1 (subagent)
    ("error", "2026-03-01T11:59:45.000Z"),  # e1
    ("model_override", "2026-03-01T11:59:31.000Z"),  # sonnet -> opus at a2 (switches sort first on ties)
    ("cache_hit", "2026-03-01T11:59:31.000Z"),  # a2
    ("api_call", "2026-03-01T11:58:02.000Z"),  # a1
    ("cache_hit", "2026-03-01T11:52:04.000Z"),  # b2
    ("compaction", "2026-03-01T11:45:00.000Z"),  # sb
    ("api_call", "2026-03-01T11:40:03.000Z"),  # b1
    ("api_call", "2026-03-01T04:30:00.000Z"),  # o1
    ("api_call", "2026-02-27T10:00:00.000Z"),  # x1
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    """Shared, read-only: tests that write use `fresh`."""
    ix = build(tmp_path_factory.mktemp("service"))
    yield ix
    ix.close()


def feed(index: Index, **kw: Any) -> dict[str, Any]:
    return activity(index.con, ActivityQuery(**kw))


def brief(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["timestamp"]) for e in events]


def test_every_event_newest_first(index: Index) -> None:
    page = feed(index, limit=100)
    assert brief(page["events"]) == ALL
    assert (page["total"], page["hasMore"]) == (11, False)
    assert len({e["id"] for e in page["events"]}) == 11


def test_event_shapes(index: Index) -> None:
    events = feed(index, limit=100)["events"]
    a3, s1, e1, switch, a2, *_rest = events
    assert a3 == {
        "id": a3["id"],
        "type": "cache_hit",
        "timestamp": "2026-03-01T11:59:55.000Z",
        "project": "/work/alpha",
        "session": "sa",
        "model": "claude-opus-4-6",
        "tier": "opus",
        "sidechain": False,
        "inputTokens": 0,
        "outputTokens": 10,
        "cacheCreationTokens": 0,
        "cacheReadTokens": 20000,
        "tokens": 20010,
        "cost": 0.01025,
        "latencyMs": 3000,
        "savings": 0.09,  # would_be 0.10025 - cost 0.01025
    }
    assert a3["id"].startswith("call-")
    assert (s1["sidechain"], s1["model"], "savings" in s1, "error" in s1) == (
        True,
        "claude-haiku-4-5-20251001",
        False,
        False,
    )
    assert e1["model"] == "<synthetic>"
    assert e1["error"].startswith("API Error: 529") and len(e1["error"]) == 200
    assert e1["cost"] == 0.0
    assert switch == {
        "id": switch["id"],
        "type": "model_override",
        "timestamp": "2026-03-01T11:59:31.000Z",
        "project": "/work/alpha",
        "session": "sa",
        "model": "claude-opus-4-6",
        "previousModel": "claude-sonnet-4-6",
    }
    assert a2["savings"] == pytest.approx(0.0425)
    compaction = events[7]
    assert compaction == {
        "id": compaction["id"],
        "type": "compaction",
        "timestamp": "2026-03-01T11:45:00.000Z",
        "project": "/work/beta",
        "session": "sb",
        "trigger": "manual",
        "preTokens": 150000,
    }
    orjson.dumps(events)  # JSON-ready


def test_paging_is_a_stable_slice(index: Index) -> None:
    pages = [feed(index, limit=3, offset=o) for o in range(0, 12, 3)]
    assert [brief(p["events"]) for p in pages] == [ALL[0:3], ALL[3:6], ALL[6:9], ALL[9:11]]
    assert [p["hasMore"] for p in pages] == [True, True, True, False]
    assert all(p["total"] == 11 for p in pages)
    assert feed(index, limit=5, offset=50) == {"events": [], "total": 11, "hasMore": False}


@pytest.mark.parametrize("kind", EVENT_TYPES)
def test_type_filter(index: Index, kind: str) -> None:
    page = feed(index, types=frozenset({kind}), limit=100)
    expected = [e for e in ALL if e[0] == kind]
    assert brief(page["events"]) == expected
    assert page["total"] == len(expected)


def test_several_types(index: Index) -> None:
    page = feed(index, types=frozenset({"error", "compaction"}))
    assert brief(page["events"]) == [ALL[2], ALL[7]]


def test_project_and_time_filters(index: Index) -> None:
    beta = feed(index, project="/work/beta")
    assert brief(beta["events"]) == [ALL[6], ALL[7], ALL[8]]
    assert feed(index, project="/nowhere") == {"events": [], "total": 0, "hasMore": False}
    # from inclusive, to exclusive: [11:59:31, 11:59:50) -> e1, the switch, a2
    window = feed(
        index,
        start=datetime(2026, 3, 1, 11, 59, 31, tzinfo=UTC),
        end=datetime(2026, 3, 1, 11, 59, 50, tzinfo=UTC),
    )
    assert brief(window["events"]) == ALL[2:5]
    alpha_day = feed(index, project="/work/alpha", start=datetime(2026, 3, 1, tzinfo=UTC), limit=2)
    assert brief(alpha_day["events"]) == ALL[0:2]
    assert (alpha_day["total"], alpha_day["hasMore"]) == (7, True)  # a3 s1 e1 switch a2 a1 o1


def line(ts: str, model: str, mid: str, *, session: str = "s", side: bool = False, failed: bool = False) -> str:
    """An assistant line of one call at 2026-03-01T10:00:<ts>Z."""
    obj: dict[str, Any] = {
        "type": "assistant",
        "isSidechain": side,
        "cwd": "/w",
        "sessionId": session,
        "timestamp": f"2026-03-01T10:00:{ts}.000Z",
        "requestId": f"r{mid}",
        "message": {"id": mid, "model": model, "usage": {"input_tokens": 1, "output_tokens": 1}},
    }
    if failed:
        obj["isApiErrorMessage"] = True
    return orjson.dumps(obj).decode() + "\n"


def test_switches_ignore_subagents_and_errors(tmp_path: Path) -> None:
    """haiku subagent calls and <synthetic> errors between opus calls are not switches; a real one is."""

    main = (
        line("01", "claude-opus-4-6", "m1")
        + line("03", "<synthetic>", "m3", failed=True)
        + line("05", "claude-opus-4-6", "m5")
        + line("07", "claude-sonnet-4-6", "m7")
        + line("09", "claude-opus-4-6", "m9")
    )
    sub = line("02", "claude-haiku-4-5-20251001", "m2", side=True) + line("04", "claude-haiku-4-5", "m4", side=True)
    root = write_tree(tmp_path / "claude", {"-w/s.jsonl": main, "-w/s/subagents/agent-q.jsonl": sub})
    with Index(tmp_path / "i.duckdb") as ix:
        sync(ix, [root / "projects"])
        apply_prices(ix.con, load_book(None))
        switches = feed(ix, types=frozenset({"model_override"}))["events"]
        assert [(e["timestamp"][-9:-5], e["previousModel"], e["model"]) for e in switches] == [
            ("0:09", "claude-sonnet-4-6", "claude-opus-4-6"),
            ("0:07", "claude-opus-4-6", "claude-sonnet-4-6"),
        ]
        # Only the page's share leaves DuckDB, with the count of them all; filters apply after the
        # switch is found (the previous call may lie outside the window).
        newest = switches[0]["timestamp"]
        assert model_overrides(ix.con, limit=1) == (2, [model_overrides(ix.con)[1][0]])
        since = datetime.fromisoformat(newest.replace("Z", "+00:00"))
        count, rows = model_overrides(ix.con, ActivityQuery(start=since))
        assert count == 1 and [(r[4], r[5]) for r in rows] == [("claude-opus-4-6", "claude-sonnet-4-6")]
        assert model_overrides(ix.con, ActivityQuery(project="/elsewhere")) == (0, [])


def test_current(index: Index) -> None:
    now = current(index.con, machine="box")
    assert now["machine"] == "box"
    assert now["project"] == "/work/alpha"
    assert now["activity"]["type"] == "cache_hit"
    assert now["activity"]["timestamp"] == "2026-03-01T11:59:55.000Z"


def test_empty_index(tmp_path: Path) -> None:
    with Index(tmp_path / "e.duckdb") as ix:
        assert activity(ix.con, ActivityQuery()) == {"events": [], "total": 0, "hasMore": False}
        assert current(ix.con, machine="m") == {"project": None, "machine": "m", "activity": None}


def test_memoized_pages_follow_commits(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "claude", service_files())
    with Index(tmp_path / "i.duckdb") as ix:
        sync(ix, [root / "projects"])
        apply_prices(ix.con, load_book(None))
        memo = Memo()
        first = activity(ix.con, ActivityQuery(limit=1), memo=memo)
        assert activity(ix.con, ActivityQuery(limit=1), memo=memo) is first  # same index: same answer
        assert first["total"] == 11
        newer = (FIXTURES / "service" / "projects" / "-work-alpha" / "sa2.jsonl").read_text()
        newer = newer.replace("msg_o1", "msg_n1").replace("04:30:00", "12:00:00")
        write_tree(root, {"-work-alpha/sn.jsonl": newer})
        sync(ix, [root / "projects"])
        after = activity(ix.con, ActivityQuery(limit=1), memo=memo)
        assert after["total"] == 12
        assert after["events"][0]["timestamp"] == "2026-03-01T12:00:00.000Z"
        assert current(ix.con, machine="m", memo=memo)["project"] == "/work/alpha"


def test_current_is_the_first_event_of_the_feed_as_history_grows(tmp_path: Path) -> None:
    """`current` finds the newest event without listing every switch; it must agree with the feed,
    ties included: a switch at the same instant as other calls, a compaction and an error."""

    def call(session: str, ts: str, model: str, mid: str, *, side: bool = False, failed: bool = False) -> str:
        return line(ts, model, mid, session=session, side=side, failed=failed)

    def compaction(session: str, ts: str) -> str:
        obj = {
            "type": "system",
            "subtype": "compact_boundary",
            "cwd": "/w",
            "sessionId": session,
            "timestamp": f"2026-03-01T10:00:{ts}.000Z",
            "uuid": f"00000000-0000-4000-8000-0000000000{ts}",
            "compactMetadata": {"trigger": "auto", "preTokens": 1000},
        }
        return orjson.dumps(obj).decode() + "\n"

    history = [
        ("a", call("a", "01", "claude-opus-4-6", "m1")),
        ("a", call("a", "03", "claude-sonnet-4-6", "m2")),  # a switch ...
        ("b", call("b", "03", "claude-haiku-4-5", "m3")),  # ... and another call at the same instant
        ("b", call("b", "05", "claude-haiku-4-5", "m4")),
        ("a", call("a", "05", "claude-opus-4-6", "m5")),  # a switch tied with b's call
        ("a", compaction("a", "05")),  # a compaction tied with both
        ("b", call("b", "07", "claude-opus-4-6", "m6", side=True)),  # a subagent: never a switch
        ("a", call("a", "07", "<synthetic>", "m7", failed=True)),  # an error: never a switch
        ("a", call("a", "09", "claude-sonnet-4-6", "m8")),  # a switch over the error, from opus
        ("b", compaction("b", "11")),  # the newest event is a compaction
        # three calls at one instant in one session, each another model: which switch leads is
        # decided by key order among them, as in the feed
        ("a", call("a", "13", "claude-haiku-4-5", "m9")),
        ("a", call("a", "13", "claude-opus-4-6", "m10")),
        ("a", call("a", "13", "claude-sonnet-4-6", "m11")),
    ]
    root = tmp_path / "claude"
    texts = {"a": "", "b": ""}
    with Index(tmp_path / "i.duckdb") as ix:
        apply_prices(ix.con, load_book(None))
        firsts = []
        for session, text in history:
            texts[session] += text
            write_tree(root, {f"-w/{session}.jsonl": texts[session]})
            sync(ix, [root / "projects"])
            apply_prices(ix.con, load_book(None), all_models=False)
            first = activity(ix.con, ActivityQuery(limit=1))["events"][0]
            now = current(ix.con, machine="m")
            assert now == {"project": first["project"], "machine": "m", "activity": first}
            firsts.append(first["type"])
        # The ties above were met: switches first at 03 and 05, a compaction last.
        assert firsts[:6] == ["api_call", "model_override", "model_override", "api_call"] + ["model_override"] * 2
        assert firsts[-5:] == ["model_override", "compaction"] + ["model_override"] * 3
