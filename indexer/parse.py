"""Turn complete transcript lines into call, event and reject rows, without storing content.

The idea: most bytes are prompts, tool results and progress lines that say nothing about cost, so
a line is fully JSON-parsed only when a cheap byte test says it may carry `"usage"` or a
compaction boundary. User lines only lend their timestamp (for latency estimates), which is
found with a byte pattern. The byte tests run over a whole chunk at once (bytes.find jumps to
the few candidate lines), so the bulk of the bytes costs a handful of C scans, not Python per line.
Lines are split on b"\\n" only: JSON strings may hold U+2028.

The same work has a compiled fast path, indexer/_scan.c (parse_lines uses it when it is built):
it does the lines Claude Code writes and hands every other line back to this module, which stays
the reference for what a line means.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.records import SYNTHETIC_MODEL, CallRow, EventRow, RejectRow

try:  # the compiled fast path (indexer/_scan.c), built on install where a C compiler is present
    from indexer import _scan
except ImportError:  # pragma: no cover - then this module does all the work, the same way
    _scan = None  # type: ignore[assignment]

# A longer gap between a user line and the next call is not a response time (a resumed session,
# lines out of order): the estimate is left unknown rather than skewing averages by hours.
MAX_LATENCY_MS = 15 * 60 * 1000
ERROR_TEXT_LIMIT = 200
# A usage count above this is not a real one (a call's context is millions of tokens at most): the
# line is rejected, so no sum can overflow the index's 64-bit columns (10^9 counts of 10^9).
MAX_COUNT = 10**9
# A recorded costUSD above this (or negative) is not used: the call is priced as if it had none.
MAX_COST_USD = 10_000.0
# A full parse is needed only for lines holding one of these byte strings. API error notices need
# no needle of their own: a line is a call (failed or not) only if it has a usage object, and each
# needle costs one pass over the bytes.
_USAGE, _COMPACT = _NEEDLES = (b'"usage"', b"compact_boundary")
# Top-level keys of user lines end with ..."uuid":"<uuid>","timestamp":"<iso>"...
_USER_TS = re.compile(rb'"uuid":"[0-9a-fA-F-]{36}","timestamp":"([0-9T:.+Z-]{19,40})"')
_TS_KEY, _TS_KEY_AT = b'","timestamp":"', len(b'"uuid":"') + 36  # in every _USER_TS match, at this offset
_TYPE_KEY, _USER, _PROGRESS = b'"type":"', b'user"', b'progress"'
_TYPE_USER, _TYPE_PROGRESS = _TYPE_KEY + _USER, _TYPE_KEY + _PROGRESS
_TYPE_KEY_LEN, _USER_LEN, _PROGRESS_LEN = len(_TYPE_KEY), len(_USER), len(_PROGRESS)
_JSON_WHERE = re.compile(r": line \d+ column \d+ \(char \d+\)$")  # orjson's location suffix
_BLANK = re.compile(rb"[ \t\r]*")
_BLANK_START = frozenset(b" \t\r\n")  # the first byte of a line that may be blank


Bytes = bytes | bytearray  # what lines are parsed from: a read, or the reader's reused buffer


@dataclass(frozen=True)
class FileContext:
    """What a line cannot say about itself but its file's place in the tree does."""

    path: str
    session: str
    project_fallback: str
    agent_id: str | None

    @classmethod
    def for_path(cls, path: str) -> FileContext:
        # The names of PurePath(path).parts (a POSIX path: empty and "." parts are dropped),
        # without PurePath's cost, which counts once per file read.
        names = ["", "", "", *(n for n in path.split("/") if n and n != ".")]
        name = names[-1]
        dot = name.rfind(".")
        stem = name[:dot] if 0 < dot < len(name) - 1 else name  # PurePath.stem
        agent = stem[len("agent-") :] if stem.startswith("agent-") else None
        if names[-2] == "subagents":
            session, project = names[-3], names[-4]
        else:
            session, project = stem, names[-2]
        return cls(path=path, session=session, project_fallback=project, agent_id=agent)


@dataclass
class ParseResult:
    """Rows found in a run of complete lines, plus the state the next run continues from.

    With a `sink` (the compiled scanner's columns: a parser process's), calls go there, in line
    order, instead of into `calls`.
    """

    calls: list[CallRow] = field(default_factory=list)
    sink: _scan.Sink | None = None
    events: list[EventRow] = field(default_factory=list)
    rejects: list[RejectRow] = field(default_factory=list)
    lines: int = 0
    last_user_ms: int | None = None


class Rejected(Exception):
    """A line that cannot be used; the message is the recorded reason."""


def hash64(data: bytes | memoryview) -> int:
    """A signed 64-bit hash (DuckDB BIGINT) of `data`: 8-byte BLAKE2b, read as little-endian.

    Copying a ready hasher and unpacking with a compiled struct is half the cost of
    `int.from_bytes(blake2b(data, digest_size=8).digest(), "little", signed=True)`, same value.
    """
    h = _BLAKE2B_8.copy()
    h.update(data)
    value: int = _unpack_i64(h.digest())[0]
    return value


_BLAKE2B_8 = hashlib.blake2b(digest_size=8)
_unpack_i64 = struct.Struct("<q").unpack


@functools.lru_cache(maxsize=64)
def _id_keys(msg_id: str, request_id: str | None) -> tuple[int, int]:
    """(identity key, message hash) of a call; cached: a streamed message's lines follow each other."""
    msg_key = msg_id.encode()
    id_key = msg_key + b"\x1f" + request_id.encode() if request_id is not None else msg_key + b"\x1f"
    return hash64(id_key), hash64(msg_key)


_new_tuple = tuple.__new__


def parse_ts(value: Any) -> int:
    """ISO-8601 timestamp -> ms since the epoch; naive values are taken as UTC."""
    # The usual value (a string with an offset, as Claude Code writes: "...Z") takes the first
    # line alone; a naive time fails to subtract from the aware epoch and a non-string to parse,
    # both with TypeError, and are told apart there (no type or tzinfo test on the common path).
    try:
        delta = _fromisoformat(value) - _EPOCH_UTC
    except TypeError:
        if not isinstance(value, str):
            raise Rejected("timestamp missing or not a string") from None
        delta = _fromisoformat(value) - _EPOCH_NAIVE
    except ValueError:
        raise Rejected("timestamp does not parse") from None
    # Integer arithmetic: float seconds * 1000 can land one millisecond low. The fields of the
    # (normalised) timedelta give the floor directly; `delta // timedelta(milliseconds=1)` is the
    # same value at twice the cost.
    ms = delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000
    if not _FIRST_MS <= ms < _LAST_MS:
        raise Rejected(f"timestamp out of range ({value!r}: not between 2000 and 2100)")
    return ms


# Timestamps outside these years are corruption (Claude Code is from 2025): such a line is rejected,
# so no report spans millennia (local days are computed per day of the span) or meets dates before
# 1970, where integer division of negative epochs would need care.
_FIRST_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
_LAST_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z


_fromisoformat = datetime.fromisoformat
_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)


def parse_lines(
    data: Bytes,
    base_offset: int,
    ctx: FileContext,
    last_user_ms: int | None,
    end: int | None = None,
    sink: _scan.Sink | None = None,
) -> ParseResult:
    """Parse data[:end] (all of `data` by default), which holds only complete lines (it ends with
    b"\\n" or is empty); what follows `end` is not looked at.

    `base_offset` is the byte offset of `data` in the file (for reject records) and
    `last_user_ms` the timestamp of the last user line before it (for latency estimates).
    Lines are examined in place (bounded `find`, a memoryview for orjson): neither a 50 MB line
    nor the complete lines of a read chunk (`end`: up to its last newline) are ever copied.

    The work is per chunk, not per line: lines are counted in one cheap pass, the lines that
    need a full parse are found by searching the whole chunk for the needles, and the lines in
    between are only searched (backwards, from the next call) for the last user line's timestamp.
    A chunk holding a NUL byte takes the line-by-line path, which rejects such lines.
    """
    out = ParseResult(last_user_ms=last_user_ms, sink=sink)
    if end is None:
        end = len(data)
    if not end:
        return out
    if data[end - 1] != 0x0A:
        raise ValueError("parse_lines needs complete lines: data[:end] must end with a newline")
    if data.find(b"\x00", 0, end) >= 0:
        _parse_each_line(data, end, base_offset, ctx, out)
        return out
    if _scan is not None and use_scanner:
        scanned = _parse_scanned(data, end, base_offset, ctx, last_user_ms, sink)
        if scanned is not None:
            return scanned
    out.lines = _count_lines(data, end, base_offset, ctx, out)
    counted = len(out.rejects)  # odd lines', in offset order; the needles' rejects follow
    find = data.find
    rfind = data.rfind
    # The next occurrence of each needle at or after `pos` (-1: none left in the chunk); each is
    # searched again only once passed.
    usage = find(_USAGE, 0, end)
    compact = find(_COMPACT, 0, end)
    pos = 0  # start of the first line not yet examined
    while True:
        if 0 <= usage < pos:
            usage = find(_USAGE, pos, end)
        if 0 <= compact < pos:
            compact = find(_COMPACT, pos, end)
        hit = usage
        if compact >= 0 and (hit < 0 or compact < hit):
            hit = compact
        if hit < 0:
            break
        start = rfind(b"\n", pos, hit) + 1 or pos
        nl = find(b"\n", hit)
        if start > pos:
            out.last_user_ms = _last_user_ms(data, pos, start, out.last_user_ms)
        try:
            _parse_full(data, start, nl, ctx, out)
        except Rejected as exc:
            out.rejects.append(RejectRow(ctx.path, base_offset + start, str(exc)))
        pos = nl + 1
    if pos < end:
        out.last_user_ms = _last_user_ms(data, pos, end, out.last_user_ms)
    if 0 < counted < len(out.rejects):
        out.rejects.sort(key=_offset)  # both kinds: in file order
    return out


use_scanner = True  # tests switch the compiled fast path off to compare it with this module's


def _parse_scanned(
    data: Bytes, end: int, base_offset: int, ctx: FileContext, last_user_ms: int | None, sink: _scan.Sink | None
) -> ParseResult | None:
    """parse_lines through the compiled scanner (indexer/_scan.c); None when it gives the chunk back.

    The scanner does the common lines and stops at any line it cannot decide; that line is parsed
    here (_parse_full: the same reasons, the same values) and the scan goes on after it.
    """
    out = ParseResult(last_user_ms=last_user_ms, sink=sink)
    had = len(sink) if sink is not None else 0
    odd: list[tuple[int, int]] = []
    pos = 0
    while True:
        lines, out.last_user_ms, stop = _scan.scan(
            data,
            pos,
            end,
            out.last_user_ms,
            out.calls if sink is None else sink,
            odd,
            CallRow,
            ctx.session,
            ctx.project_fallback,
            ctx.agent_id,
        )
        if stop == -2:
            if sink is not None:
                sink.truncate(had)  # the chunk is parsed again from its start
            return None
        out.lines += lines
        for start, nl in odd:
            if reason := _odd_reason(data, start, nl):
                out.rejects.append(RejectRow(ctx.path, base_offset + start, reason))
        odd.clear()
        if stop < 0:
            return out
        nl = data.find(b"\n", stop)
        out.lines += 1
        try:
            _parse_full(data, stop, nl, ctx, out)
        except Rejected as exc:
            out.rejects.append(RejectRow(ctx.path, base_offset + stop, str(exc)))
        pos = nl + 1


def _offset(reject: RejectRow) -> int:
    return reject.offset


def _count_lines(data: Bytes, end: int, base_offset: int, ctx: FileContext, out: ParseResult) -> int:
    """How many lines of data[:end] (complete lines, not empty) are not blank (spaces, tabs, CRs only).

    Newlines are found with `bytes.find` (memchr) and only a line starting with whitespace is
    tested further: for transcript lines (hundreds of bytes to megabytes) this is 2-3x cheaper
    than `bytes.count(b"\\n")` or one regex pass. On the way, a line that cannot be a JSON object
    (its first byte is not `{` or its last not `}`) and holds no needle, which the full parse would
    reject, is rejected here (see _odd_reason).
    """
    find = data.find
    blank = _BLANK.fullmatch
    ws = _BLANK_START
    n = 0
    start = 0
    while start < end:
        nl = find(b"\n", start)
        if data[start] not in ws or blank(data, start, nl) is None:
            n += 1
            if (data[start] != 0x7B or data[nl - 1] != 0x7D) and (reason := _odd_reason(data, start, nl)):
                out.rejects.append(RejectRow(ctx.path, base_offset + start, reason))  # `{`, `}`: two tests
        start = nl + 1
    return n


def _odd_reason(data: Bytes, start: int, end: int) -> str | None:
    """Why the line data[start:end], whose first or last byte is not a brace, is rejected: the
    reason the full parse would give if it is not a JSON object; None if it is one after all (with
    blanks around it) or holds a needle (the full parse then rejects it itself)."""
    line = memoryview(data)[start:end]
    stripped = bytes(line).strip(b" \t\r")
    if (stripped[:1] == b"{" and stripped[-1:] == b"}") or any(_has(data, n, start, end) for n in _NEEDLES):
        return None
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON ({_JSON_WHERE.sub('', str(exc))})"
    return "line is not a JSON object"


def _last_user_ms(data: Bytes, start: int, end: int, current: int | None) -> int | None:
    """The timestamp of the last user line in data[start:end] (lines without needles), else `current`.

    Walks the lines backwards from `end` (memrchr) and stops at the first user line whose
    timestamp pattern parses, so the cost is the distance from `end` to that line, not the
    region size. A line's kind is read from its first `"type":"` key: Claude Code writes the
    top-level `type` before `message` (user lines) and `data` (progress lines, which nest user
    messages), so the test stops within a few hundred bytes, while the body (a tool result) can
    be megabytes. A line whose first type key is another (a key order not seen from Claude Code)
    is a user line when it holds `"type":"user"` and no `"type":"progress"` anywhere.
    """
    find = data.find
    le = end - 1  # the newline ending the line under test
    while le >= start:
        ls = data.rfind(b"\n", start, le) + 1 or start
        kind = find(_TYPE_KEY, ls, le)
        # The value after the first type key, compared as a slice (cheaper than a bounded
        # startswith): a slice reaching the newline at `le` cannot equal it.
        value = kind + _TYPE_KEY_LEN
        if kind >= 0 and (
            data[value : value + _USER_LEN] == _USER
            or (
                data[value : value + _PROGRESS_LEN] != _PROGRESS
                and find(_TYPE_USER, kind, le) >= 0
                and find(_TYPE_PROGRESS, kind, le) < 0
            )
        ):
            # _USER_TS.search(data, ls, le), but candidates are found with bytes.find (the regex
            # engine scans byte by byte), by the pattern's longer literal at its fixed offset.
            at = find(_TS_KEY, ls + _TS_KEY_AT, le)
            while at >= 0:
                m = _USER_TS.match(data, at - _TS_KEY_AT, le)
                if m:
                    try:  # not contextlib.suppress: its three Python-level calls, once per call line
                        return parse_ts(m.group(1).decode())
                    except Rejected:
                        break
                at = find(_TS_KEY, at + 1, le)
        le = ls - 1
    return current


def _parse_each_line(data: Bytes, end: int, base_offset: int, ctx: FileContext, out: ParseResult) -> None:
    """The line-by-line path for data[:end] (a chunk holding NUL bytes)."""
    pos = 0
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


def _has(data: Bytes, needle: bytes, start: int, end: int) -> bool:
    return data.find(needle, start, end) >= 0


def _parse_line(data: Bytes, start: int, end: int, ctx: FileContext, out: ParseResult) -> None:
    """Parse the line data[start:end] (without its newline)."""
    if _has(data, b"\x00", start, end):
        raise Rejected("NUL bytes in line")
    if not any(_has(data, n, start, end) for n in _NEEDLES):
        if (data[start] != 0x7B or data[end - 1] != 0x7D) and (reason := _odd_reason(data, start, end)):
            raise Rejected(reason)
        out.last_user_ms = _last_user_ms(data, start, end + 1, out.last_user_ms)  # end + 1: past its newline
        return
    _parse_full(data, start, end, ctx, out)


def _parse_full(data: Bytes, start: int, end: int, ctx: FileContext, out: ParseResult) -> None:
    """Fully parse the line data[start:end], which holds a needle and no NUL byte."""
    line = memoryview(data)[start:end]
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        reason = _JSON_WHERE.sub("", str(exc))
        raise Rejected(f"invalid JSON ({reason})") from None
    if not isinstance(obj, dict):
        raise Rejected("line is not a JSON object")
    message = obj.get("message")
    usage = message.get("usage") if isinstance(message, dict) else None
    if isinstance(usage, dict) and isinstance(message, dict):
        call = _call(obj, message, usage, line, ctx, out.last_user_ms)
        if call is not None:
            (out.calls if out.sink is None else out.sink).append(call)
        return
    kind = obj.get("type")
    if kind == "user":
        with contextlib.suppress(Rejected):
            out.last_user_ms = parse_ts(obj.get("timestamp"))
    elif kind == "system" and obj.get("subtype") == "compact_boundary":
        meta = obj.get("compactMetadata")
        detail = orjson.dumps(
            {k: meta[k] for k in ("trigger", "preTokens") if k in meta} if isinstance(meta, dict) else {}
        ).decode()
        uid = obj.get("uuid")
        key = hash64(uid.encode() if isinstance(uid, str) else line)
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
    if value > MAX_COUNT:
        raise Rejected(f"{where}.{name} is too large to be a count ({value})")
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
    line: memoryview,
    ctx: FileContext,
    last_user_ms: int | None,
) -> CallRow | None:
    # Fast paths first (`type(v) is int`, `type(v) is dict`); anything else goes through
    # `_count` / `_sub`, so the values and the reject reasons are those of the detailed checks.
    get = obj.get
    model = message.get("model")
    if not isinstance(model, str) or not model:
        model = "unknown"
    failed = get("isApiErrorMessage") is True
    if model == SYNTHETIC_MODEL and not failed:
        return None
    uget = usage.get
    inp = uget("input_tokens", 0)
    if type(inp) is not int or not 0 <= inp <= MAX_COUNT:
        inp = _count(usage, "input_tokens", "usage")
    outp = uget("output_tokens", 0)
    if type(outp) is not int or not 0 <= outp <= MAX_COUNT:
        outp = _count(usage, "output_tokens", "usage")
    cache_total = uget("cache_creation_input_tokens")  # None when absent: the split's sum, below
    if (type(cache_total) is not int or not 0 <= cache_total <= MAX_COUNT) and "cache_creation_input_tokens" in usage:
        cache_total = _count(usage, "cache_creation_input_tokens", "usage")
    cache_read = uget("cache_read_input_tokens", 0)
    if type(cache_read) is not int or not 0 <= cache_read <= MAX_COUNT:
        cache_read = _count(usage, "cache_read_input_tokens", "usage")
    creation = uget("cache_creation")
    if type(creation) is dict:
        c1h = creation.get("ephemeral_1h_input_tokens", 0)
        if type(c1h) is not int or not 0 <= c1h <= MAX_COUNT:
            c1h = _count(creation, "ephemeral_1h_input_tokens", "usage.cache_creation")
        c5m = creation.get("ephemeral_5m_input_tokens", 0)
        if type(c5m) is not int or not 0 <= c5m <= MAX_COUNT:
            c5m = _count(creation, "ephemeral_5m_input_tokens", "usage.cache_creation")
    else:
        creation = _sub(usage, "cache_creation", "usage")
        c1h = _count(creation, "ephemeral_1h_input_tokens", "usage.cache_creation")
        c5m = _count(creation, "ephemeral_5m_input_tokens", "usage.cache_creation")
    if cache_total is None:
        cache_total = c1h + c5m
    if c1h > cache_total:
        c1h = cache_total
    server = uget("server_tool_use")
    if server is None:
        web = 0
    else:
        web = server.get("web_search_requests", 0) if type(server) is dict else -1
        if type(web) is not int or not 0 <= web <= MAX_COUNT:
            web = _count(_sub(usage, "server_tool_use", "usage"), "web_search_requests", "usage.server_tool_use")
    ts = parse_ts(get("timestamp"))
    error = None
    if failed:
        inp = outp = cache_total = cache_read = c1h = web = 0
        error = _error_text(message)
    cost = get("costUSD")
    cost_usd = (
        None
        if cost is None
        else float(cost)
        if isinstance(cost, int | float) and not isinstance(cost, bool) and 0 <= cost <= MAX_COST_USD
        else None
    )
    msg_id = message.get("id")
    if not isinstance(msg_id, str) or not msg_id:
        msg_id = None
    request_id = get("requestId")
    if msg_id is not None:
        key, msg_hash = _id_keys(msg_id, request_id if isinstance(request_id, str) else None)
    else:
        uid = _opt_str(get("uuid"))
        key = hash64(b"line\x1f" + (uid.encode() if uid else line))
        msg_hash = 0
    latency = ts - last_user_ms if last_user_ms is not None and 0 <= ts - last_user_ms <= MAX_LATENCY_MS else None
    cwd = get("cwd")
    agent = get("agentId")
    branch = get("gitBranch")
    version = get("version")
    return _new_tuple(  # CallRow(...) without the NamedTuple constructor's Python frame
        CallRow,
        (
            key,
            msg_hash,
            ts,
            model,
            ctx.session,
            cwd if isinstance(cwd, str) and cwd else ctx.project_fallback,
            branch if isinstance(branch, str) and branch else None,
            version if isinstance(version, str) and version else None,
            agent if isinstance(agent, str) and agent else ctx.agent_id,
            get("isSidechain") is True,
            failed,
            inp,
            outp,
            cache_total - c1h,
            c1h,
            cache_read,
            web,
            uget("speed") == "fast",
            cost_usd,
            latency,
            error,
        ),
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

    Usage fields take their maximum (streamed lines repeat a growing snapshot; for the cache write,
    its total and its 1-hour part, the 5-minute part being the rest), the timestamp its
    minimum; descriptive fields, the error text and the latency estimate come from the earlier
    row (latency is measured to a call's first line; a tool result can arrive between a call's
    lines), ties broken by session name, then agent id (none first), so fork copies and a line in
    both a main file and its subagent file resolve the same way on every read order.
    ("First non-null" would not be: merging in another order can pick another row's value.)
    """
    first = a if (a.ts_ms, a.session, a.agent_id or "") <= (b.ts_ms, b.session, b.agent_id or "") else b
    costs = [x for x in (a.cost_usd, b.cost_usd) if x is not None]
    return first._replace(
        sidechain=a.sidechain and b.sidechain,
        failed=a.failed or b.failed,
        input_tokens=max(a.input_tokens, b.input_tokens),
        output_tokens=max(a.output_tokens, b.output_tokens),
        # The cache write's total and its 1-hour part take their maxima, the 5-minute part is the rest:
        # lines that split one total differently must not add up to more than it.
        cache_5m_tokens=max(a.cache_5m_tokens + a.cache_1h_tokens, b.cache_5m_tokens + b.cache_1h_tokens)
        - max(a.cache_1h_tokens, b.cache_1h_tokens),
        cache_1h_tokens=max(a.cache_1h_tokens, b.cache_1h_tokens),
        cache_read_tokens=max(a.cache_read_tokens, b.cache_read_tokens),
        web_searches=max(a.web_searches, b.web_searches),
        fast=a.fast or b.fast,
        cost_usd=max(costs) if costs else None,
        latency_ms=first.latency_ms,
        error=first.error,
    )
