"""Turn complete transcript lines into call, event and reject rows, without storing content.

The idea: most bytes are prompts, tool results and progress lines that say nothing about cost, so
a line is fully JSON-parsed only when a cheap byte test says it may carry `"usage"`, an API error
or a compaction boundary. User lines only lend their timestamp (for latency estimates), which is
found with a byte pattern. Lines are split on b"\\n" only: JSON strings may hold U+2028.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePath
from typing import Any

import orjson

from schemas.records import CallRow, EventRow, RejectRow

SYNTHETIC_MODEL = "<synthetic>"
# A longer gap between a user line and the next call is not a response time (a resumed session,
# lines out of order): the estimate is left unknown rather than skewing averages by hours.
MAX_LATENCY_MS = 15 * 60 * 1000
ERROR_TEXT_LIMIT = 200
# A full parse is needed only for lines holding one of these byte strings.
_NEEDLES = (b'"usage"', b"compact_boundary", b"isApiErrorMessage")
# Top-level keys of user lines end with ..."uuid":"<uuid>","timestamp":"<iso>"...
_USER_TS = re.compile(rb'"uuid":"[0-9a-fA-F-]{36}","timestamp":"([0-9T:.+Z-]{19,40})"')
_JSON_WHERE = re.compile(r": line \d+ column \d+ \(char \d+\)$")  # orjson's location suffix
_BLANK = re.compile(rb"[ \t\r]*")
_USAGE_INTS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass(frozen=True)
class FileContext:
    """What a line cannot say about itself but its file's place in the tree does."""

    path: str
    session: str
    project_fallback: str
    agent_id: str | None

    @classmethod
    def for_path(cls, path: str) -> FileContext:
        p = PurePath(path)
        agent = p.stem[len("agent-") :] if p.stem.startswith("agent-") else None
        if p.parent.name == "subagents":
            session = p.parent.parent.name
            project = p.parent.parent.parent.name
        else:
            session = p.stem
            project = p.parent.name
        return cls(path=path, session=session, project_fallback=project, agent_id=agent)


@dataclass
class ParseResult:
    """Rows found in a run of complete lines, plus the state the next run continues from."""

    calls: list[CallRow] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    lines: int = 0
    last_user_ms: int | None = None


class Rejected(Exception):
    """A line that cannot be used; the message is the recorded reason."""


def hash64(data: bytes) -> int:
    """A signed 64-bit hash (DuckDB BIGINT) of `data`."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def parse_ts(value: Any) -> int:
    """ISO-8601 timestamp -> ms since the epoch; naive values are taken as UTC."""
    if not isinstance(value, str):
        raise Rejected("timestamp missing or not a string")
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected("timestamp does not parse") from None
    # Integer arithmetic: float seconds * 1000 can land one millisecond low.
    epoch = _EPOCH_NAIVE if dt.tzinfo is None else _EPOCH_UTC
    return (dt - epoch) // _MS


_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def parse_lines(data: bytes, base_offset: int, ctx: FileContext, last_user_ms: int | None) -> ParseResult:
    """Parse `data`, which holds only complete lines (it ends with b"\\n" or is empty).

    `base_offset` is the byte offset of `data` in the file (for reject records) and
    `last_user_ms` the timestamp of the last user line before it (for latency estimates).
    Lines are examined in place (bounded `find`, a memoryview for orjson): a 50 MB line is
    never copied.
    """
    out = ParseResult(last_user_ms=last_user_ms)
    pos = 0
    end = len(data)
    while pos < end:
        nl = data.index(b"\n", pos)
        start = pos
        pos = nl + 1
        if _BLANK.fullmatch(data, start, nl):
            continue
        out.lines += 1
        try:
            _parse_line(data, start, nl, ctx, out)
        except Rejected as exc:
            out.rejects.append(RejectRow(ctx.path, base_offset + start, str(exc)))
    return out


def _has(data: bytes, needle: bytes, start: int, end: int) -> bool:
    return data.find(needle, start, end) >= 0


def _parse_line(data: bytes, start: int, end: int, ctx: FileContext, out: ParseResult) -> None:
    """Parse the line data[start:end] (without its newline)."""
    if _has(data, b"\x00", start, end):
        raise Rejected("NUL bytes in line")
    if not any(_has(data, n, start, end) for n in _NEEDLES):
        # Progress lines of 2.1.x nest whole subagent messages (with their own uuid/timestamp).
        if _has(data, b'"type":"user"', start, end) and not _has(data, b'"type":"progress"', start, end):
            m = _USER_TS.search(data, start, end)
            if m:
                with contextlib.suppress(Rejected):
                    out.last_user_ms = parse_ts(m.group(1).decode())
        return
    try:
        obj = orjson.loads(memoryview(data)[start:end])
    except orjson.JSONDecodeError as exc:
        reason = _JSON_WHERE.sub("", str(exc))
        raise Rejected(f"invalid JSON ({reason})") from None
    if not isinstance(obj, dict):
        raise Rejected("line is not a JSON object")
    kind = obj.get("type")
    message = obj.get("message")
    usage = message.get("usage") if isinstance(message, dict) else None
    if isinstance(usage, dict) and isinstance(message, dict):
        call = _call(obj, message, usage, lambda: data[start:end], ctx, out.last_user_ms)
        if call is not None:
            out.calls.append(call)
    elif kind == "user":
        with contextlib.suppress(Rejected):
            out.last_user_ms = parse_ts(obj.get("timestamp"))
    elif kind == "system" and obj.get("subtype") == "compact_boundary":
        meta = obj.get("compactMetadata")
        detail = orjson.dumps(
            {k: meta[k] for k in ("trigger", "preTokens") if k in meta} if isinstance(meta, dict) else {}
        ).decode()
        uid = obj.get("uuid")
        key = hash64(uid.encode() if isinstance(uid, str) else data[start:end])
        out.events.append(
            EventRow(key, parse_ts(obj.get("timestamp")), "compaction", ctx.session, _project(obj, ctx), detail)
        )


def _count(container: dict[str, Any], name: str, where: str) -> int:
    if name not in container:
        return 0
    value = container[name]
    if value is None:
        raise Rejected(f"{where}.{name} is null")
    if isinstance(value, bool) or not isinstance(value, int):
        raise Rejected(f"{where}.{name} is not an integer")
    if value < 0:
        raise Rejected(f"{where}.{name} is negative")
    return value


def _sub(container: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    value = container.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Rejected(f"{where}.{name} is not an object")
    return value


def _project(obj: dict[str, Any], ctx: FileContext) -> str:
    cwd = obj.get("cwd")
    return cwd if isinstance(cwd, str) and cwd else ctx.project_fallback


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _call(
    obj: dict[str, Any],
    message: dict[str, Any],
    usage: dict[str, Any],
    line: Callable[[], bytes],
    ctx: FileContext,
    last_user_ms: int | None,
) -> CallRow | None:
    model = message.get("model")
    model = model if isinstance(model, str) and model else "unknown"
    failed = obj.get("isApiErrorMessage") is True
    if model == SYNTHETIC_MODEL and not failed:
        return None
    inp, outp, cache_total, cache_read = (_count(usage, n, "usage") for n in _USAGE_INTS)
    creation = _sub(usage, "cache_creation", "usage")
    c1h = _count(creation, "ephemeral_1h_input_tokens", "usage.cache_creation")
    c5m = _count(creation, "ephemeral_5m_input_tokens", "usage.cache_creation")
    if "cache_creation_input_tokens" not in usage:
        cache_total = c1h + c5m
    c1h = min(c1h, cache_total)
    web = _count(_sub(usage, "server_tool_use", "usage"), "web_search_requests", "usage.server_tool_use")
    ts = parse_ts(obj.get("timestamp"))
    error = None
    if failed:
        inp = outp = cache_total = cache_read = c1h = web = 0
        error = _error_text(message)
    cost = obj.get("costUSD")
    cost_usd = float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) and cost >= 0 else None
    msg_id = _opt_str(message.get("id"))
    request_id = _opt_str(obj.get("requestId"))
    if msg_id is not None:
        key = hash64(f"{msg_id}\x1f{request_id or ''}".encode())
    else:
        uid = _opt_str(obj.get("uuid"))
        key = hash64(b"line\x1f" + (uid.encode() if uid else line()))
    latency = ts - last_user_ms if last_user_ms is not None and 0 <= ts - last_user_ms <= MAX_LATENCY_MS else None
    return CallRow(
        key=key,
        msg_hash=hash64(msg_id.encode()) if msg_id else 0,
        ts_ms=ts,
        model=model,
        session=ctx.session,
        project=_project(obj, ctx),
        branch=_opt_str(obj.get("gitBranch")),
        version=_opt_str(obj.get("version")),
        agent_id=_opt_str(obj.get("agentId")) or ctx.agent_id,
        sidechain=obj.get("isSidechain") is True,
        failed=failed,
        input_tokens=inp,
        output_tokens=outp,
        cache_5m_tokens=cache_total - c1h,
        cache_1h_tokens=c1h,
        cache_read_tokens=cache_read,
        web_searches=web,
        fast=usage.get("speed") == "fast",
        cost_usd=cost_usd,
        latency_ms=latency,
        error=error,
    )


def _error_text(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    if isinstance(content, str):
        return content[:ERROR_TEXT_LIMIT]
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                text: str = block["text"]
                return text[:ERROR_TEXT_LIMIT]
    return None


def merge_calls(a: CallRow, b: CallRow) -> CallRow:
    """Two rows of one call identity -> one, independent of order.

    Usage fields take their maximum (streamed lines repeat a growing snapshot), the timestamp its
    minimum; descriptive fields, the error text and the latency estimate come from the earlier
    row (latency is measured to a call's first line; a tool result can arrive between a call's
    lines), ties broken by session name, so fork copies resolve the same way on every read order.
    ("First non-null" would not be: merging in another order can pick another row's value.)
    """
    first = a if (a.ts_ms, a.session) <= (b.ts_ms, b.session) else b
    costs = [x for x in (a.cost_usd, b.cost_usd) if x is not None]
    return first._replace(
        sidechain=a.sidechain and b.sidechain,
        failed=a.failed or b.failed,
        input_tokens=max(a.input_tokens, b.input_tokens),
        output_tokens=max(a.output_tokens, b.output_tokens),
        cache_5m_tokens=max(a.cache_5m_tokens, b.cache_5m_tokens),
        cache_1h_tokens=max(a.cache_1h_tokens, b.cache_1h_tokens),
        cache_read_tokens=max(a.cache_read_tokens, b.cache_read_tokens),
        web_searches=max(a.web_searches, b.web_searches),
        fast=a.fast or b.fast,
        cost_usd=max(costs) if costs else None,
        latency_ms=first.latency_ms,
        error=first.error,
    )
