"""Line parsing: what a line says about its call, session, project and latency; merges in any order."""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.parse import FileContext, ParseResult, _parse_each_line, hash64, merge_calls, parse_lines, parse_ts
from schemas.records import CallRow

P = "/home/u/.claude/projects/-home-u-my-proj"


def dumps(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def assistant(ts: str, mid: str = "m", req: str = "r", **top: Any) -> bytes:
    usage = top.pop("usage", {"input_tokens": 1, "output_tokens": 2})
    obj = {"type": "assistant", "message": {"id": mid, "model": "claude-opus-4-6", "usage": usage}, "requestId": req}
    return dumps({**obj, **top, "timestamp": ts})


def user(ts: str, uuid: str = "5b0a7f9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b", **top: Any) -> bytes:
    # real key order: ..., "type", "message", "uuid", "timestamp", ...
    return dumps({"type": "user", "message": {"role": "user", "content": "hi"}, "uuid": uuid, "timestamp": ts, **top})


@pytest.mark.parametrize(
    ("path", "session", "project", "agent"),
    [
        (f"{P}/0d5c.jsonl", "0d5c", "-home-u-my-proj", None),
        (f"{P}/agent-1234.jsonl", "agent-1234", "-home-u-my-proj", "1234"),  # 2.0.x: the file stem
        (f"{P}/0d5c/subagents/agent-a1.jsonl", "0d5c", "-home-u-my-proj", "a1"),  # 2.1.x: the parent session
        (f"{P}/0d5c/subagents/agent-acompact-9f.jsonl", "0d5c", "-home-u-my-proj", "acompact-9f"),
    ],
)
def test_file_context(path: str, session: str, project: str, agent: str | None) -> None:
    assert FileContext.for_path(path) == FileContext(path, session, project, agent)


def _for_path_by_purepath(path: str) -> FileContext:
    p = PurePosixPath(path)
    agent = p.stem[len("agent-") :] if p.stem.startswith("agent-") else None
    if p.parent.name == "subagents":
        return FileContext(path, p.parent.parent.name, p.parent.parent.parent.name, agent)
    return FileContext(path, p.stem, p.parent.name, agent)


@given(st.lists(st.sampled_from(["/", "//", ".", "..", "a", "p.q", ".x", "x.", "subagents", "agent-", ".jsonl"])))
def test_file_context_names_are_purepaths(pieces: list[str]) -> None:
    path = "".join(pieces)
    assert FileContext.for_path(path) == _for_path_by_purepath(path)


def test_project_is_cwd_else_the_encoded_folder() -> None:
    ctx = FileContext.for_path(f"{P}/0d5c.jsonl")
    data = assistant("2026-01-01T00:00:01.000Z", "a", cwd="/home/u/my.proj") + assistant(
        "2026-01-01T00:00:02.000Z", "b"
    )
    got = parse_lines(data, 0, ctx, None).calls
    assert [(c.project, c.session) for c in got] == [("/home/u/my.proj", "0d5c"), ("-home-u-my-proj", "0d5c")]


def test_agent_id_from_the_line_wins_over_the_file_name() -> None:
    ctx = FileContext.for_path(f"{P}/0d5c/subagents/agent-a1.jsonl")
    (call,) = parse_lines(assistant("2026-01-01T00:00:01.000Z", agentId="zz", isSidechain=True), 0, ctx, None).calls
    assert (call.agent_id, call.sidechain) == ("zz", True)


def test_latency_from_the_nearest_preceding_user_line() -> None:
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    data = (
        user("2026-01-01T00:00:00.000Z")
        + assistant("2026-01-01T00:00:01.500Z", "a")
        + user("2026-01-01T00:00:10.000Z")  # a tool result
        + assistant("2026-01-01T00:00:12.250Z", "b")
        + assistant("2026-01-01T00:00:09.000Z", "c")  # earlier than the user line: unknown
        + assistant("2026-01-01T00:15:10.000Z", "d")  # exactly 15 min after it: the longest kept
        + assistant("2026-01-01T00:15:10.001Z", "e")  # longer: a resumed session, not a response time
    )
    out = parse_lines(data, 0, ctx, None)
    assert [c.latency_ms for c in out.calls] == [1500, 2250, None, 900_000, None]
    assert out.last_user_ms == parse_ts("2026-01-01T00:00:10.000Z")


def test_latency_carries_over_from_an_earlier_read() -> None:
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    start = parse_ts("2026-01-01T00:00:00.000Z")
    (call,) = parse_lines(assistant("2026-01-01T00:00:03.000Z"), 100, ctx, start).calls
    assert call.latency_ms == 3000
    assert parse_lines(assistant("2026-01-01T00:00:03.000Z"), 0, ctx, None).calls[0].latency_ms is None


def test_user_line_holding_usage_is_still_a_user_line() -> None:
    """A Task tool result carries the subagent's "usage": parsed fully, no call, and it lends its timestamp."""
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    result = dumps(
        {
            "type": "user",
            "message": {"role": "user", "content": [{"type": "tool_result", "content": "done"}]},
            "timestamp": "2026-01-01T00:00:05Z",
            "toolUseResult": {"totalTokens": 9, "usage": {"input_tokens": 5, "output_tokens": 4}},
        }
    )
    out = parse_lines(result + assistant("2026-01-01T00:00:06.000Z"), 0, ctx, None)
    assert [c.latency_ms for c in out.calls] == [1000]
    assert out.rejects == []


def test_progress_lines_do_not_lend_a_nested_user_timestamp() -> None:
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    nested = {
        "type": "user",
        "message": {"role": "user", "content": "x"},
        "uuid": "5b0a7f9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
    }
    progress = dumps(
        {
            "type": "progress",
            "data": {"type": "agent_progress", "message": {**nested, "timestamp": "2026-01-01T00:00:08.000Z"}},
            "timestamp": "2026-01-01T00:00:08.000Z",
            "uuid": "6b0a7f9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b",
        }
    )
    data = user("2026-01-01T00:00:00.000Z") + progress + assistant("2026-01-01T00:00:09.000Z")
    assert [c.latency_ms for c in parse_lines(data, 0, ctx, None).calls] == [9000]


def _latencies(*lines: bytes) -> list[int | None]:
    """Latency of a call at 00:00:09 after `lines`, read after a user line at 00:00:00."""
    data = b"".join(lines) + assistant("2026-01-01T00:00:09.000Z")
    out = parse_lines(data, 0, FileContext.for_path(f"{P}/s.jsonl"), 1_767_225_600_000)
    return [c.latency_ms for c in out.calls]


def test_a_line_is_a_user_line_by_its_first_type_key() -> None:
    """Claude Code writes the top-level "type" before the body, so the first type key decides:
    a user line whose tool result holds a progress object still lends its timestamp."""
    result = {"type": "progress", "data": {"type": "user", "uuid": _U, "timestamp": "2026-01-01T00:00:01.000Z"}}
    assert _latencies(user("2026-01-01T00:00:04.000Z", toolUseResult=result)) == [5000]
    assert _latencies(user("2026-01-01T00:00:04.000Z"), dumps(result)) == [5000]


def test_other_key_orders_are_user_lines_by_the_whole_line() -> None:
    """A key order not seen from Claude Code (the body first): a user line when it holds
    "type":"user" and no "type":"progress" anywhere."""
    body = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    late = {"message": body, "type": "user", "uuid": _U, "timestamp": "2026-01-01T00:00:03.000Z"}
    assert _latencies(dumps(late)) == [6000]
    assert _latencies(dumps({**late, "extra": {"type": "progress"}})) == [9000]


def test_timestamp_text_in_a_user_line_body_is_not_its_timestamp() -> None:
    """Inside a JSON string the quotes are escaped, so a quoted key in a tool result never
    matches; the line's own uuid and timestamp do."""
    text = f'"uuid":"{_U}","timestamp":"2026-01-01T00:00:08.000Z" and "timestamp":"2026-01-01T00:00:08.500Z"'
    line = user("2026-01-01T00:00:02.000Z", message={"role": "user", "content": text})
    assert b'\\"timestamp\\":\\"' in line
    assert _latencies(line) == [7000]


def test_usage_with_spaces_or_another_key_order_is_a_call() -> None:
    """The byte test is only a prefilter: any line holding "usage" is parsed in full."""
    spaced = b'{"timestamp": "2026-01-01T00:00:01.000Z", "message" : {"usage" : {"output_tokens" : 7}, "id": "m"}}\n'
    ordered = (
        b'{"message":{"id":"n","usage":{"output_tokens":8}},"type":"assistant","timestamp":"2026-01-01T00:00:02Z"}\n'
    )
    out = parse_lines(spaced + ordered, 0, FileContext.for_path(f"{P}/s.jsonl"), None)
    assert [(c.output_tokens, c.ts_ms % 10_000) for c in out.calls] == [(7, 1000), (8, 2000)]


def test_split_on_newline_only() -> None:
    """U+2028, U+2029, U+0085, \\v, \\f and \\r are inside lines, not between them."""
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    text = "a\u2028b\u2029c\u0085d\x0be\x0cf\rg"
    data = user("2026-01-01T00:00:00.000Z", message={"role": "user", "content": text}) + assistant(
        "2026-01-01T00:00:01.000Z", message={"id": "m", "model": "x", "content": text, "usage": {"output_tokens": 4}}
    )
    out = parse_lines(data, 0, ctx, None)
    assert (out.lines, out.rejects, [c.output_tokens for c in out.calls]) == (2, [], [4])


def test_blank_lines_are_skipped_and_rejects_carry_file_offsets() -> None:
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    bad = b'{"message":{"usage":{"input_tokens":"1"}}}\n'
    data = b"\n  \n" + bad + assistant("2026-01-01T00:00:01.000Z")
    out = parse_lines(data, 1000, ctx, None)
    assert out.lines == 2
    assert [(r.offset, r.reason) for r in out.rejects] == [(1004, "usage.input_tokens is not an integer")]
    assert len(out.calls) == 1


def test_cache_creation_split_and_caps() -> None:
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    usage = {
        "input_tokens": 1,
        "cache_creation_input_tokens": 100,
        "cache_creation": {"ephemeral_1h_input_tokens": 150, "ephemeral_5m_input_tokens": 0},
    }
    (call,) = parse_lines(assistant("2026-01-01T00:00:01.000Z", usage=usage), 0, ctx, None).calls
    assert (call.cache_1h_tokens, call.cache_5m_tokens) == (100, 0)  # the 1h part never exceeds the total


@pytest.mark.parametrize(
    ("total", "expected"),
    [
        ({}, (30, 12)),  # no total: the sum of the split
        ({"cache_creation_input_tokens": 40}, (30, 10)),
        ({"cache_creation_input_tokens": None}, "usage.cache_creation_input_tokens is null"),
        ({"cache_creation_input_tokens": -1}, "usage.cache_creation_input_tokens is negative"),
        ({"cache_creation_input_tokens": True}, "usage.cache_creation_input_tokens is not an integer"),
    ],
)
def test_cache_creation_total_absent_null_or_bad(total: dict[str, Any], expected: tuple[int, int] | str) -> None:
    split = {"cache_creation": {"ephemeral_1h_input_tokens": 30, "ephemeral_5m_input_tokens": 12}}
    line = assistant("2026-01-01T00:00:01.000Z", usage={**total, **split})
    out = parse_lines(line, 0, FileContext.for_path(f"{P}/s.jsonl"), None)
    got: list[tuple[int, int] | str] = [(c.cache_1h_tokens, c.cache_5m_tokens) for c in out.calls]
    assert got + [r.reason for r in out.rejects] == [expected]


@pytest.mark.parametrize(
    ("usage", "reason"),
    [
        ({"input_tokens": 10**19}, "usage.input_tokens is too large to be a count (10000000000000000000)"),
        ({"output_tokens": 10**9 + 1}, "usage.output_tokens is too large to be a count (1000000001)"),
        ({"cache_read_input_tokens": 2**63}, "usage.cache_read_input_tokens is too large to be a count"),
        (
            {"cache_creation": {"ephemeral_1h_input_tokens": 2**62}},
            "usage.cache_creation.ephemeral_1h_input_tokens is too large to be a count",
        ),
        ({"server_tool_use": {"web_search_requests": 10**12}}, "usage.server_tool_use.web_search_requests is too"),
    ],
)
def test_impossible_counts_reject_the_line(usage: dict[str, Any], reason: str) -> None:
    """No sum of counts can overflow the index's 64-bit columns: a count over 10^9 is not a real one."""
    good = assistant("2026-01-01T00:00:00.000Z", mid="good")
    bad = assistant("2026-01-01T00:00:01.000Z", mid="bad", usage=usage)
    out = parse_lines(good + bad, 0, FileContext.for_path(f"{P}/s.jsonl"), None)
    assert [c.input_tokens for c in out.calls] == [1]
    assert len(out.rejects) == 1 and out.rejects[0].reason.startswith(reason)
    ok = assistant("2026-01-01T00:00:01.000Z", usage={"input_tokens": 10**9})  # the largest count taken
    assert parse_lines(ok, 0, FileContext.for_path(f"{P}/s.jsonl"), None).calls[0].input_tokens == 10**9


def test_an_impossible_recorded_cost_is_not_used() -> None:
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    costs = [c.cost_usd for c in parse_lines(b"".join(
        assistant("2026-01-01T00:00:01.000Z", mid=str(v), costUSD=v) for v in (0.5, 1e300, -1, 10_000)
    ), 0, ctx, None).calls]  # fmt: skip
    assert costs == [0.5, None, None, 10_000.0]


@pytest.mark.parametrize(
    "ts", ["0001-01-02T00:00:00Z", "1999-12-31T23:59:59.999Z", "2100-01-01T00:00:00Z", "9999-12-30T00:00:00Z"]
)
def test_a_timestamp_outside_2000_to_2100_rejects_its_call(ts: str) -> None:
    """Corruption, not a time (one such call made every report walk millennia of days: 9 s)."""
    out = parse_lines(assistant(ts), 0, FileContext.for_path(f"{P}/s.jsonl"), None)
    assert out.calls == [] and [r.reason for r in out.rejects] == [
        f"timestamp out of range ({ts!r}: not between 2000 and 2100)"
    ]


def test_error_line_is_failed_with_zero_tokens() -> None:
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    line = dumps(
        {
            "type": "assistant",
            "isApiErrorMessage": True,
            "timestamp": "2026-01-01T00:00:01.000Z",
            "message": {
                "id": "e",
                "model": "<synthetic>",
                "content": [{"type": "text", "text": "Claude AI usage limit reached|1767225600"}],
                "usage": {"input_tokens": 7, "output_tokens": 3},
            },
        }
    )
    (call,) = parse_lines(line, 0, ctx, None).calls
    assert (call.failed, call.input_tokens, call.output_tokens, call.error) == (
        True, 0, 0, "Claude AI usage limit reached|1767225600",
    )  # fmt: skip


@given(st.binary(max_size=200))
def test_hash64_is_the_stored_key_function(data: bytes) -> None:
    """Keys in existing indexes were made with this formula: the faster hash64 must give the same values."""
    assert hash64(data) == int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def test_call_keys_from_message_and_request_id() -> None:
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    no_req = dumps({"type": "assistant", "timestamp": "2026-01-01T00:00:01Z", "message": {"id": "m", "usage": {}}})
    calls = parse_lines(assistant("2026-01-01T00:00:01Z", "m", "r") * 2 + no_req, 0, ctx, None).calls
    assert [(c.key, c.msg_hash) for c in calls] == [(hash64(b"m\x1fr"), hash64(b"m"))] * 2 + [
        (hash64(b"m\x1f"), hash64(b"m"))
    ]


def test_lines_without_any_id_are_keyed_by_their_bytes() -> None:
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    call = dumps({"type": "assistant", "timestamp": "2026-01-01T00:00:01Z", "message": {"usage": {}}})
    compact = dumps({"type": "system", "subtype": "compact_boundary", "timestamp": "2026-01-01T00:00:02Z"})
    out = parse_lines(b"\n" + call + compact, 0, ctx, None)
    assert [c.key for c in out.calls] == [hash64(b"line\x1f" + call[:-1])]
    assert [e.key for e in out.events] == [hash64(compact[:-1])]


def test_lines_without_message_id_are_each_their_own_call() -> None:
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    a = dumps({"type": "assistant", "uuid": "u1", "timestamp": "2026-01-01T00:00:01Z", "message": {"usage": {}}})
    b = dumps({"type": "assistant", "uuid": "u2", "timestamp": "2026-01-01T00:00:01Z", "message": {"usage": {}}})
    calls = parse_lines(a + b + a, 0, ctx, None).calls
    assert len({c.key for c in calls}) == 2


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2026-02-10T22:57:57.941Z", 1770764277941),
        ("2026-02-10T23:57:57.941+01:00", 1770764277941),
        ("2026-02-10T22:57:57.941", 1770764277941),  # naive: UTC
        ("2026-02-10T22:57:57Z", 1770764277000),
        ("2000-01-01T00:00:00.001Z", 946684800001),
    ],
)
def test_parse_ts_exact_milliseconds(text: str, ms: int) -> None:
    assert parse_ts(text) == ms


@given(
    st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30)),
    st.none() | st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m))),
)
def test_parse_ts_is_the_floor_of_the_milliseconds(value: datetime, tz: timezone | None) -> None:
    """With offsets and sub-millisecond parts: the floor of the exact millisecond count."""
    dt = value.replace(tzinfo=tz)
    epoch = datetime(1970, 1, 1, tzinfo=None if tz is None else UTC)
    assert parse_ts(dt.isoformat()) == (dt - epoch) // timedelta(milliseconds=1)


def _row(**kw: Any) -> CallRow:
    base: dict[str, Any] = dict.fromkeys(CallRow._fields, 0)
    base.update(
        model="m", session="s", project="p", branch=None, version=None, agent_id=None, sidechain=False,
        failed=False, fast=False, cost_usd=None, latency_ms=None, error=None,
    )  # fmt: skip
    base.update(kw)
    return CallRow(**base)


_ROWS = st.builds(
    lambda ts, session, out, cr, lat, side, fast, cost, err, model: _row(
        key=1,
        ts_ms=ts,
        session=session,
        output_tokens=out,
        cache_read_tokens=cr,
        latency_ms=lat,
        sidechain=side,
        fast=fast,
        cost_usd=cost,
        error=err,
        model=model,
        failed=err is not None,
    ),
    st.integers(0, 5),
    st.sampled_from(["s1", "s2"]),
    st.integers(0, 1000),
    st.integers(0, 1000),
    st.none() | st.integers(0, 100),
    st.booleans(),
    st.booleans(),
    st.none() | st.floats(0, 1),
    st.none() | st.sampled_from(["E1", "E2"]),
    st.sampled_from(["a", "b"]),
)


@given(st.lists(_ROWS, min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_merge_is_order_independent(rows: list[CallRow], rnd: Any) -> None:
    # Full ties (same time and session) keep the first row read; order only among distinct sort keys.
    distinct = list({(r.ts_ms, r.session): r for r in rows}.values())
    shuffled = list(distinct)
    rnd.shuffle(shuffled)
    a = functools.reduce(merge_calls, distinct)
    b = functools.reduce(merge_calls, shuffled)
    assert a == b
    first = min(distinct, key=lambda r: (r.ts_ms, r.session))
    assert a.output_tokens == max(r.output_tokens for r in distinct)
    assert (a.ts_ms, a.session, a.model, a.latency_ms) == (first.ts_ms, first.session, first.model, first.latency_ms)


_U = "5b0a7f9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
_MIXED_LINES = [
    b"",
    b" \t\r",
    b"  x",
    user("2026-01-01T00:00:00.000Z").rstrip(b"\n"),
    user("2026-01-01T00:05:00.000Z").rstrip(b"\n"),
    user("not a time").rstrip(b"\n"),
    # the first timestamp pattern decides, even when it does not parse; a short line has none
    dumps(
        {
            "type": "user",
            "a": {"uuid": _U, "timestamp": "2026-13-01T00:00:00Z"},
            "uuid": _U,
            "timestamp": "2026-01-01T00:09:00Z",
        }
    ).rstrip(b"\n"),
    b'{"type":"user","x":"","timestamp":"2026-01-01T00:09:00Z"}',
    user("2026-01-01T00:06:00.000Z", message={"content": "isApiErrorMessage"}).rstrip(b"\n"),
    dumps({"type": "progress", "data": {"type": "user", "uuid": _U, "timestamp": "2026-01-01T00:07:00.000Z"}}).rstrip(
        b"\n"
    ),
    assistant("2026-01-01T00:00:02.000Z", "a").rstrip(b"\n"),
    assistant("2026-01-01T00:05:30.000Z", "b", usage={"input_tokens": -1}).rstrip(b"\n"),
    assistant("2026-01-01T00:05:31.000Z", "c", usage={"cache_creation": {"ephemeral_1h_input_tokens": None}}).rstrip(
        b"\n"
    ),
    assistant("2026-01-01T00:05:32.000Z", "d", usage={"server_tool_use": []}).rstrip(b"\n"),
    assistant("2026-01-01T00:30:00.000Z", "e", isApiErrorMessage=True).rstrip(b"\n"),
    dumps({"type": "system", "subtype": "compact_boundary", "timestamp": "2026-01-01T00:08:00.000Z"}).rstrip(b"\n"),
    b'{"type":"user","usage" broken',
    b'["usage"]',
    b"compact_boundary",
    b'{"x":"\x00","usage":{}}',
]


@given(
    st.lists(st.sampled_from(_MIXED_LINES), max_size=14),
    st.integers(0, 14),
    st.none() | st.integers(1767225600000 - 5000, 1767225600000 + 400_000),
)
def test_chunk_scan_equals_line_by_line(lines: list[bytes], cut: int, last_user_ms: int | None) -> None:
    """parse_lines works per chunk (needle search, backwards user search, one line count);
    the line-by-line path it falls back to for NUL bytes must give the very same result,
    also when the lines are split into two reads at any line boundary."""
    ctx = FileContext.for_path(f"{P}/s.jsonl")
    data = b"".join(line + b"\n" for line in lines)
    head = b"".join(line + b"\n" for line in lines[:cut])

    def by_line(chunk: bytes, base: int, lu: int | None) -> ParseResult:
        out = ParseResult(last_user_ms=lu)
        _parse_each_line(chunk, len(chunk), base, ctx, out)
        return out

    assert parse_lines(data, 7, ctx, last_user_ms) == by_line(data, 7, last_user_ms)
    # data[:end] of a read chunk: the bytes after `end` (a partial line) are not looked at
    for tail in (b"", b'{"usage":', b"\x00", b"compact_boundary \n"):
        assert parse_lines(data + tail, 7, ctx, last_user_ms, len(data)) == by_line(data, 7, last_user_ms)
    first = parse_lines(head, 7, ctx, last_user_ms)
    assert first == by_line(head, 7, last_user_ms)
    rest = data[len(head) :]
    assert parse_lines(rest, 7 + len(head), ctx, first.last_user_ms) == by_line(rest, 7 + len(head), first.last_user_ms)


@pytest.mark.parametrize("sample", sorted((Path(__file__).parent.parent / "fixtures" / "samples").glob("*.jsonl")))
def test_a_chunk_with_a_nul_line_reads_its_other_lines_as_usual(sample: Path) -> None:
    """The line-by-line path (a chunk holding NUL bytes) finds the same calls, latencies and last
    user line as the chunk path; only the NUL line is rejected."""
    data = sample.read_bytes()
    ctx = FileContext.for_path(str(sample))
    usual = parse_lines(data, 0, ctx, None)
    with_nul = parse_lines(data + b'{"x":"\x00"}\n', 0, ctx, None)
    assert with_nul.calls == usual.calls and with_nul.events == usual.events
    assert sum(c.latency_ms is not None for c in usual.calls) > 0
    assert with_nul.last_user_ms == usual.last_user_ms
    assert [r.reason for r in with_nul.rejects] == [*(r.reason for r in usual.rejects), "NUL bytes in line"]
