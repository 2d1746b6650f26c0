"""The compiled scanner (indexer/_scan.c) against the Python parser it speeds up: the same results,
on every fixture and on generated lines full of the cases it must hand back; and it does the
common lines itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer import columns, parse
from indexer.columns import CallColumns
from indexer.parse import FileContext, ParseResult, hash64, parse_lines
from schemas.records import CallRow
from tests.test_columns import python_columns, same

FIXTURES = Path(__file__).parent.parent / "fixtures"
CTX = FileContext.for_path("/home/u/.claude/projects/-home-u-p/s.jsonl")


# A row already in the sink when a chunk is parsed into it (a parser task's earlier file).
EARLIER = CallRow(
    7, 8, 1767225600000, "m", "s", "p", None, None, None, False, False, 1, 2, 3, 4, 5, 0, False, None, 9, None
)


def both(data: bytes, base: int, ctx: FileContext, last_user_ms: int | None, end: int | None = None) -> ParseResult:
    """parse_lines with the scanner and without, and with the scanner writing into a sink (after a
    row of an earlier file); asserts they agree and returns the result."""
    parse.use_scanner = True
    try:
        fast = parse_lines(data, base, ctx, last_user_ms, end)
        parse.use_scanner = False
        slow = parse_lines(data, base, ctx, last_user_ms, end)
    finally:
        parse.use_scanner = True
    assert fast == slow
    sink = columns.call_sink()
    assert sink is not None
    sink.append(EARLIER)
    sunk = parse_lines(data, base, ctx, last_user_ms, end, sink)
    assert (sunk.calls, sunk.events, sunk.rejects, sunk.lines, sunk.last_user_ms) == (
        [],
        fast.events,
        fast.rejects,
        fast.lines,
        fast.last_user_ms,
    )
    with pytest.MonkeyPatch.context() as m:  # (a hypothesis test has no monkeypatch fixture)
        assert same(CallColumns.from_sink(sink), python_columns([EARLIER, *fast.calls], m))
    return fast


def test_the_scanner_is_built() -> None:
    """The install compiles it wherever a C compiler is present (this project's machines have one);
    without it every parse takes the Python path, about 2-3x slower."""
    from indexer import _scan

    assert parse._scan is _scan


@pytest.mark.parametrize("path", sorted(FIXTURES.rglob("*.jsonl")), ids=lambda p: str(p.relative_to(FIXTURES)))
def test_every_fixture_parses_the_same_both_ways(path: Path) -> None:
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # a partial last line is not parsed
    both(data, 0, FileContext.for_path(str(path)), None, end)


@pytest.mark.parametrize(
    "name", ["spotter_v2.1.38_tool_heavy.jsonl", "sniffly_v1.0.17_fed8ce56-bc79-401f-a83e-af084253362f.jsonl"]
)
def test_real_lines_need_no_python(name: str) -> None:
    """Claude Code's own lines, 1.0 and 2.1, are scanned to the end without handing one back."""
    from indexer import _scan

    data = (FIXTURES / "samples" / name).read_bytes()
    calls: list[tuple[Any, ...]] = []
    odd: list[tuple[int, int]] = []
    lines, last_user_ms, stop = _scan.scan(data, 0, len(data), None, calls, odd, CallRow, "s", "p", None)
    assert stop == -1
    parse.use_scanner = False
    try:
        slow = parse_lines(data, 0, FileContext.for_path(name), None)
    finally:
        parse.use_scanner = True
    assert (lines, last_user_ms, len(calls), odd) == (slow.lines, slow.last_user_ms, len(slow.calls), [])
    assert len(calls) >= 9


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (
            b'{"message":{"usage":{"input_tokens":1}},"isApiErrorMessage":true,"timestamp":"2026-01-01T00:00:00Z"}',
            "error",
        ),
        (b'{"message":{"usage":{"input_tokens":-1}},"timestamp":"2026-01-01T00:00:00Z"}', "negative"),
        (
            b'{"message":{"us\\u0061ge":{"input_tokens":1}},"n":"usage","timestamp":"2026-01-01T00:00:00Z"}',
            "escaped key",
        ),
        (b'{"message":{"usage":{}},"usage":1,"timestamp":"2026-01-01 00:00:00Z"}', "other time form"),
        (b'{"message":{"usage":{}},"cwd":"\\ud800","timestamp":"2026-01-01T00:00:00Z"}', "lone surrogate"),
        (b'{"message":{"usage":{}},"message":{},"timestamp":"2026-01-01T00:00:00Z"}', "duplicate key"),
        (b'{"type":"system","subtype":"compact_boundary","timestamp":"2026-01-01T00:00:00Z"}', "compaction"),
        (b'{"usage":1,', "invalid JSON"),
    ],
)
def test_lines_it_cannot_decide_are_handed_back(line: bytes, why: str) -> None:
    from indexer import _scan

    data = b'{"a":1}\n' + line + b"\n"
    calls: list[tuple[Any, ...]] = []
    lines, _, stop = _scan.scan(data, 0, len(data), None, calls, [], CallRow, "s", "p", None)
    assert (lines, stop, calls) == (1, 8, []), why
    both(data, 0, CTX, None)


@given(st.binary(max_size=600) | st.sampled_from([b"", b"x" * 127, b"x" * 128, b"x" * 129, b"y" * 256, b"z" * 257]))
def test_the_c_identity_hash_is_parse_hash64(data: bytes) -> None:
    """BLAKE2b written from RFC 7693 for the scanner's call keys: the same values as hashlib's."""
    from indexer import _scan

    assert _scan.hash64(data) == hash64(data)


# -- generated lines -------------------------------------------------------------------------------
_TS = st.sampled_from(
    [
        "2026-01-01T00:00:01.000Z",
        "2026-01-01T00:00:02Z",
        "2026-01-01T00:00:03.5+01:00",
        "2026-01-01T00:00:04.123456-02:30",
        "2026-01-01T00:00:05",
        "2026-02-29T00:00:00Z",
        "2024-02-29T00:00:00.999Z",
        "1999-12-31T23:59:59.999Z",
        "2100-01-01T00:00:00Z",
        "2099-12-31T23:59:59.9999999Z",
        "2026-01-01 00:00:06Z",
        "2026-01-01T00:00:07.Z",
        "20260101T000008Z",
        "2026-01-01T24:00:00Z",
        "2026-01-01T00:00:09+0100",
        "x",
    ]
) | st.sampled_from([5, None, True])
_COUNT = st.integers(0, 3000).flatmap(
    lambda n: st.sampled_from([n] * 30 + [10**9, 10**9 + 1, -1, 1.0, 2**63, 2**64 + 1, True, None, "5", [], {}])
)
_STR = st.sampled_from(["", "a", "/home/u/p", "C:\\Users\\u", 'q"uote', "é", "\u2028", "<synthetic>", "fast", "user"])
_OPT = st.none() | _STR | st.sampled_from([0, False, ["x"]])
_COST = st.sampled_from([None, 0, 0.25, -1, -0.0, 10_000, 10_000.5, 1e300, 2**70, True, "1"])
_UUIDS = st.sampled_from(["5b0a7f9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b", "x", "5B0A7F9E-1C2D-4E3F-8A9B-0C1D2E3F4A5B"])
_ABSENT = object()
# Hypothesis leans towards small integers, so `integers(0, n) == 0` would hold far more often than
# 1 in n+1; a sample of booleans keeps rare cases rare and most lines plain calls.
_RARELY = st.sampled_from([False] * 9 + [True])


def _maybe(d: dict[str, Any], draw: Any, key: str, values: Any) -> None:
    value = draw(values) if draw(st.booleans()) else _ABSENT
    if value is not _ABSENT:
        d[key] = value


@st.composite
def _usage(draw: Any) -> Any:
    if draw(_RARELY) and draw(_RARELY):
        return draw(st.sampled_from([None, 5, "x", []]))
    u: dict[str, Any] = {}
    for key in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        _maybe(u, draw, key, _COUNT)
    creation: dict[str, Any] = {}
    _maybe(creation, draw, "ephemeral_1h_input_tokens", _COUNT)
    _maybe(creation, draw, "ephemeral_5m_input_tokens", _COUNT)
    _maybe(u, draw, "cache_creation", st.just(creation) | st.sampled_from([None, [], 3]))
    _maybe(u, draw, "server_tool_use", st.fixed_dictionaries({}, optional={"web_search_requests": _COUNT}) | st.none())
    _maybe(u, draw, "speed", st.sampled_from(["fast", "standard", 1]))
    return u


@st.composite
def _line(draw: Any) -> Any:
    kind = draw(st.sampled_from(["assistant", "assistant", "assistant", "user", "user", "progress", "system", "other"]))
    obj: dict[str, Any] = {}
    _maybe(obj, draw, "isSidechain", st.booleans() | st.just("true"))
    for key in ("cwd", "gitBranch", "version", "agentId"):
        _maybe(obj, draw, key, _OPT)
    if kind == "assistant":
        message: dict[str, Any] = {}
        _maybe(message, draw, "model", _OPT | st.just("claude-opus-4-6"))
        _maybe(message, draw, "id", _OPT | st.sampled_from(["msg_1", "msg_2"]))
        message["content"] = draw(st.sampled_from([[{"type": "text", "text": 'usage "usage"'}], "compact_boundary"]))
        message["usage"] = draw(_usage())
        obj["message"] = message
        _maybe(obj, draw, "requestId", _OPT | st.sampled_from(["req_1", "req_2"]))
        _maybe(obj, draw, "costUSD", _COST)
        if draw(_RARELY):
            obj["isApiErrorMessage"] = draw(st.booleans())
        obj["type"] = "assistant"
    elif kind == "user":
        obj["type"] = "user"
        obj["message"] = {"role": "user", "content": draw(st.sampled_from(["hi", '"usage"', "x" * 300]))}
    elif kind == "progress":
        obj["type"] = "progress"
        obj["data"] = {"message": {"type": "user", "message": {"usage": {"input_tokens": 1}}}}
    elif kind == "system":
        obj["type"] = "system"
        obj["subtype"] = draw(st.sampled_from(["compact_boundary", "other"]))
        obj["compactMetadata"] = {"trigger": "auto", "preTokens": 5}
    else:
        obj["type"] = draw(_STR)
    _maybe(obj, draw, "uuid", _UUIDS)
    if draw(_RARELY):
        _maybe(obj, draw, "timestamp", _TS)
    else:
        obj["timestamp"] = draw(_TS)
    return obj


@st.composite
def _json(draw: Any, value: Any, depth: int = 0) -> str:
    """JSON text of `value`, spelled in the ways JSON allows (escapes, spaces, key order, repeats)."""
    space = draw(st.sampled_from(["", "", "", " ", "\t"])) if depth else ""
    if isinstance(value, dict):
        items = [f"{draw(_string(k))}:{space}{draw(_json(v, depth + 1))}" for k, v in value.items()]
        if items and draw(_RARELY) and draw(_RARELY):  # a key given twice
            items.append(items[draw(st.integers(0, len(items) - 1))])
        return "{" + f",{space}".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(draw(_json(v, depth + 1)) for v in value) + "]"
    if isinstance(value, str):
        return draw(_string(value))
    if value is True or value is False or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return repr(value) if isinstance(value, int) else draw(st.sampled_from([repr(value), f"{value:e}"]))


@st.composite
def _string(draw: Any, text: str) -> str:
    out = []
    escape_some = draw(_RARELY)
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif escape_some and draw(st.booleans()):
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else ch)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


_ODD = st.sampled_from(
    [
        b"",
        b" \t",
        b"[1]",
        b'["usage"]',
        b"5",
        b"garbage compact_boundary",
        b'{"a":1',
        b" {} ",
        b'{"x":"\\ud800"}',
        b'{"usage":"\\ud83d\\ude00"}',
        b'{"x":"\xff","usage":{}}',
        b'{"x":"\x01"}',
        b'{"a":' * 200 + b"1" + b"}" * 200,
        b'{"message":{"usage":{}},"timestamp":"2026-01-01T00:00:00Z"} x',
        b'\xef\xbb\xbf{"a":1}',
        b'{"a":01}',
        b'{"a":1e999}',
        b'{"a":-}',
        b'{"a":tru}',
        b'{"a":1,}',
    ]
)


@st.composite
def _lines(draw: Any) -> bytes:
    out = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(_RARELY):
            line = draw(_ODD)
        else:
            line = draw(_json(draw(_line()))).encode()
            if draw(_RARELY):  # a byte changed
                at = draw(st.integers(0, max(0, len(line) - 1)))
                byte = draw(st.integers(1, 255).filter(lambda b: b != 0x0A))
                line = line[:at] + bytes([byte]) + line[at + 1 :]
        out.append(line + b"\n")
    return b"".join(out)


@given(_lines(), st.none() | st.integers(1767225600000 - 5000, 1767225600000 + 400_000), st.integers(0, 5))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_generated_lines_parse_the_same_both_ways(data: bytes, last_user_ms: int | None, base: int) -> None:
    both(data, base, CTX, last_user_ms)
    both(data + b'{"usage":', base, CTX, last_user_ms, len(data))  # bytes after `end` are not looked at


@pytest.mark.parametrize(
    "ts",
    [
        "2026-01-01T00:00:04.123456-02:30",
        "2026-01-01T23:59:59.9+23:59",
        "2026-03-01T00:00:00.0001Z",
        "2024-02-29T12:00:00",
        "2000-01-01T00:00:00Z",
        "2000-01-01T00:59:59.999+01:00",
        "2099-12-31T23:59:59.999999Z",
        "2099-12-31T23:00:00-01:00",
        "2026-01-01T00:00:00.1234567Z",
        "2026-04-31T00:00:00Z",
        "2026-01-01T00:00:00.Z",
    ],
)
def test_timestamps_as_python_reads_them(ts: str) -> None:
    user = b'{"type":"user","uuid":"5b0a7f9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b","timestamp":"%s"}\n' % ts.encode()
    call = b'{"type":"assistant","message":{"id":"m","usage":{"input_tokens":1}},"timestamp":"%s"}\n' % ts.encode()
    both(call, 0, CTX, None)
    both(user + call, 0, CTX, None)
    both(user + b'{"type":"user","x":"usage","timestamp":"%s"}\n' % ts.encode() + call, 0, CTX, None)


@pytest.fixture
def no_scanner() -> Iterator[None]:
    parse.use_scanner = False
    yield
    parse.use_scanner = True


def test_chunk_given_back_is_parsed_by_python(no_scanner: None) -> None:
    """A user timestamp the scanner cannot read (another ISO form) makes parse.py redo the chunk."""
    user = b'{"type":"user","uuid":"5b0a7f9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b","timestamp":"2026-01-01T00:00:00.000+0100"}\n'
    from indexer import _scan

    assert _scan.scan(user, 0, len(user), None, [], [], CallRow, "s", "p", None)[2] == -2
    assert parse_lines(user, 0, CTX, None).last_user_ms == 1767222000000
    parse.use_scanner = True
    assert parse_lines(user, 0, CTX, None).last_user_ms == 1767222000000
    # A call the scanner had written into a sink before it gave the chunk back is not there twice.
    call = b'{"type":"assistant","message":{"id":"m","usage":{"input_tokens":1}},"timestamp":"2026-01-01T00:01:00Z"}\n'
    assert len(both(call + user + call, 0, CTX, None).calls) == 2


@pytest.mark.parametrize("last_user_ms", [-(2**63), 2**63, 2**70, True, 1.7e12])
def test_a_last_user_time_from_a_damaged_index_reads_as_python_does(last_user_ms: Any) -> None:
    """A file state's last_user_ms is a stored BIGINT: any value, even one cco never writes."""
    line = b'{"type":"assistant","message":{"id":"m","usage":{"input_tokens":1}},"timestamp":"2026-01-01T00:01:00Z"}\n'
    got = both(line, 0, CTX, last_user_ms)
    assert got.calls[0].latency_ms is None
