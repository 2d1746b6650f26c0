"""Claude's 5-hour usage windows ("blocks"), with burn rate, projection and a token limit.

Rules: a block starts at its first call's time floored to the UTC hour and lasts the session
length (5 h). A call more than that after the block's start, or more than that after the previous
call, starts a new block; when the pause between calls exceeded the session length, a gap block
covers the idle time from the previous block's end to the next block's start. A block is active
when its last call is less than a session length ago and now is before its end.

The idea: the chaining is sequential (a block's start depends on the previous block), but it only
needs calls at a coarse grain. DuckDB sums calls per bucket, a slot of W minutes (W divides both
60 and the session length) open at the start and closed at the end: (t, t+W]. Block starts are
whole hours and block ends whole multiples of W, so a bucket lies entirely inside or entirely
after a block; and calls in one bucket are less than W apart, so an idle break can only fall
between buckets (next bucket's first call minus previous bucket's last). Python then chains a few
thousand buckets instead of sorting a million calls.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from indexer.errors import BadInput
from indexer.pricing import check_cost_mode, cost_expr
from indexer.reports import money
from schemas import SYNTHETIC_MODEL

if TYPE_CHECKING:
    import duckdb

DEFAULT_SESSION_HOURS = 5.0
RECENT_DAYS = 3
WARNING_PERCENT = 80.0
HOUR_MS = 3_600_000


class BlockOptions(NamedTuple):
    """A validated blocks request (build it with `block_options`)."""

    session_hours: float = DEFAULT_SESSION_HOURS
    token_limit: int | str | None = None  # a number of tokens, "max", or none
    active: bool = False
    recent: bool = False
    mode: str = "auto"

    @property
    def session_minutes(self) -> int:
        """The block length in whole minutes."""
        return round(self.session_hours * 60)


def block_options(
    *,
    session_length: float | str | None = None,
    token_limit: str | int | None = None,
    active: bool = False,
    recent: bool = False,
    mode: str = "auto",
) -> BlockOptions:
    """Validate user-given values (CLI options or query strings) into BlockOptions."""
    hours = DEFAULT_SESSION_HOURS
    if session_length is not None and session_length != "":
        try:
            hours = float(session_length)
        except ValueError:
            raise BadInput(f"--session-length {session_length!r} is not a number of hours") from None
        minutes = hours * 60
        # At least an hour: a block starts on the hour, so a shorter one could end before its first call.
        if not math.isfinite(hours) or hours < 1 or hours > 24 * 7 or abs(minutes - round(minutes)) > 1e-9:
            raise BadInput(f"--session-length must be hours from 1 to 168 (a week), in whole minutes, got {hours:g}")
    limit: int | str | None = None
    if token_limit is not None and str(token_limit) != "":
        text = str(token_limit).strip().lower()
        if text == "max":
            limit = "max"
        else:
            try:
                limit = int(text)
            except ValueError:
                raise BadInput(f"--token-limit must be a number of tokens or 'max', got {token_limit!r}") from None
            if limit <= 0:
                raise BadInput(f"--token-limit must be positive, got {limit}")
    return BlockOptions(
        session_hours=hours, token_limit=limit, active=active, recent=recent, mode=check_cost_mode(mode)
    )


class _Block:
    __slots__ = ("cost", "cr", "cw", "end_ms", "entries", "first_ms", "inp", "last_ms", "models", "out", "start_ms")

    def __init__(self, start_ms: int, length_ms: int, first_ms: int) -> None:
        self.start_ms = start_ms
        self.end_ms = start_ms + length_ms
        self.first_ms = first_ms
        self.last_ms = first_ms
        self.entries = self.inp = self.out = self.cw = self.cr = 0
        self.cost = 0.0
        self.models: set[str] = set()

    @property
    def total(self) -> int:
        return self.inp + self.out + self.cw + self.cr


def _when(ms: int) -> str:
    """Milliseconds since the epoch as ccusage prints instants (reports.iso_utc's format).

    From the integer seconds' UTC fields: a report prints hundreds of these, and a datetime's
    isoformat() costs several times more.
    """
    sec, milli = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(sec))}.{milli:03d}Z"


def _bucket_minutes(length_min: int) -> int:
    return math.gcd(60, length_min)


def _buckets(con: duckdb.DuckDBPyConnection, bucket_ms: int, mode: str) -> list[tuple[Any, ...]]:
    """(bucket, first ms, last ms, entries, input, output, cache write, cache read, cost, models) rows in time order."""
    sql = f"""
        SELECT (epoch_us(ts) // 1000 - 1) // {bucket_ms} AS b,
            min(epoch_us(ts)) // 1000, max(epoch_us(ts)) // 1000, count(*),
            sum(input_tokens)::BIGINT, sum(output_tokens)::BIGINT, sum(cache_creation_tokens)::BIGINT,
            sum(cache_read_tokens)::BIGINT, sum({cost_expr(mode)}), list(DISTINCT model)
        FROM priced_calls GROUP BY b ORDER BY b
    """
    return con.execute(sql).fetchall()


def _chain(rows: list[tuple[Any, ...]], length_ms: int, bucket_ms: int) -> list[tuple[_Block | None, _Block]]:
    """Blocks in time order, each with the block before it when an idle break separates them."""
    out: list[tuple[_Block | None, _Block]] = []
    current: _Block | None = None
    for b, first, last, n, inp, outp, cw, cr, cost, models in rows:
        idle = current is not None and first - current.last_ms > length_ms
        if current is None or idle or (b + 1) * bucket_ms > current.start_ms + length_ms:
            block = _Block(first // HOUR_MS * HOUR_MS, length_ms, first)
            out.append((current if idle else None, block))
            current = block
        current.last_ms = max(current.last_ms, last)
        current.entries += n
        current.inp += inp
        current.out += outp
        current.cw += cw
        current.cr += cr
        current.cost += cost
        current.models.update(models)  # SYNTHETIC_MODEL too: _block_json leaves it out
    return out


def _gap(prev: _Block, nxt: _Block) -> dict[str, Any] | None:
    if nxt.start_ms <= prev.end_ms:
        return None
    zero = {"inputTokens": 0, "outputTokens": 0, "cacheCreationInputTokens": 0, "cacheReadInputTokens": 0}
    start = _when(prev.end_ms)
    return {
        "id": f"gap-{start}",
        "startTime": start,
        "endTime": _when(nxt.start_ms),
        "actualEndTime": None,
        "isActive": False,
        "isGap": True,
        "entries": 0,
        "tokenCounts": zero,
        "totalTokens": 0,
        "costUSD": 0.0,
        "models": [],
        "burnRate": None,
        "projection": None,
        "tokenLimitStatus": None,
    }


def _block_json(b: _Block, now_ms: int, length_ms: int) -> dict[str, Any]:
    b.cost = money(b.cost)
    active = now_ms - b.last_ms < length_ms and now_ms < b.end_ms
    minutes = (b.last_ms - b.first_ms) / 60_000
    burn = None
    if minutes > 0:
        burn = {
            "tokensPerMinute": b.total / minutes,
            "tokensPerMinuteForIndicator": (b.inp + b.out) / minutes,
            "costPerMinute": b.cost / minutes,
            "costPerHour": b.cost / minutes * 60,
        }
    projection = None
    if active:
        remaining = max(0.0, (b.end_ms - now_ms) / 60_000)
        tpm = burn["tokensPerMinute"] if burn else 0.0
        cpm = burn["costPerMinute"] if burn else 0.0
        projection = {
            "totalTokens": round(b.total + tpm * remaining),
            "totalCost": money(b.cost + cpm * remaining),
            "remainingMinutes": round(remaining),
        }
    b.models.discard(SYNTHETIC_MODEL)
    start = _when(b.start_ms)
    return {
        "id": start,
        "startTime": start,
        "endTime": _when(b.end_ms),
        "actualEndTime": _when(b.last_ms),
        "isActive": active,
        "isGap": False,
        "entries": b.entries,
        "tokenCounts": {
            "inputTokens": b.inp,
            "outputTokens": b.out,
            "cacheCreationInputTokens": b.cw,
            "cacheReadInputTokens": b.cr,
        },
        "totalTokens": b.total,
        "costUSD": b.cost,
        "models": sorted(b.models),
        "burnRate": burn,
        "projection": projection,
        "tokenLimitStatus": None,
    }


def _limit_status(block: dict[str, Any], limit: int) -> dict[str, Any]:
    used = block["projection"]["totalTokens"] if block["projection"] else block["totalTokens"]
    percent = used / limit * 100
    status = "exceeds" if percent > 100 else "warning" if percent > WARNING_PERCENT else "ok"
    return {"limit": limit, "projectedUsage": used, "percentUsed": percent, "status": status}


def bucket_rows(con: duckdb.DuckDBPyConnection, opts: BlockOptions) -> list[tuple[Any, ...]]:
    """The part of a blocks report that depends on the index alone (a service can keep it until
    the index changes): the calls summed per bucket.

    `prices` must be current (pricing.apply_prices) before calling this.
    """
    return _buckets(con, _bucket_minutes(opts.session_minutes) * 60_000, opts.mode)


def settled(buckets: list[tuple[Any, ...]], opts: BlockOptions, now: datetime) -> bool:
    """Whether no block can be active at `now` or later, until new calls come: the last call is a
    session length ago (or there is none). The report then no longer depends on the time, except
    for --recent's cutoff.
    """
    if not buckets:
        return True
    last_ms: int = max(row[2] for row in buckets)
    return now.timestamp() * 1000 - last_ms >= opts.session_minutes * 60_000


def blocks_report(con: duckdb.DuckDBPyConnection, opts: BlockOptions, now: datetime | None = None) -> dict[str, Any]:
    """{"blocks": [...]} in time order, ccusage's shape; `now` (aware or naive UTC) decides what is active.

    `prices` must be current (pricing.apply_prices) before calling this.
    """
    return blocks_from_buckets(bucket_rows(con, opts), opts, now)


def blocks_from_buckets(
    buckets: list[tuple[Any, ...]], opts: BlockOptions, now: datetime | None = None
) -> dict[str, Any]:
    """blocks_report from its bucket_rows."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    now_ms = int(now.timestamp() * 1000)
    length_min = opts.session_minutes
    length_ms = length_min * 60_000
    bucket_ms = _bucket_minutes(length_min) * 60_000
    chained = _chain(buckets, length_ms, bucket_ms)
    blocks: list[dict[str, Any]] = []
    for prev, block in chained:
        gap = _gap(prev, block) if prev is not None else None
        if gap is not None:
            blocks.append(gap)
        blocks.append(_block_json(block, now_ms, length_ms))
    limit: int | None = None
    if opts.token_limit == "max":
        past = [b["totalTokens"] for b in blocks if not b["isGap"] and not b["isActive"]]
        limit = max(past) if past and max(past) > 0 else None
    elif isinstance(opts.token_limit, int):
        limit = opts.token_limit
    if limit is not None:
        for b in blocks:
            if not b["isGap"]:
                b["tokenLimitStatus"] = _limit_status(b, limit)
    if opts.active:
        blocks = [b for b in blocks if b["isActive"]]
    elif opts.recent:
        cutoff = _when(now_ms - RECENT_DAYS * 86_400_000)
        blocks = [b for b in blocks if b["isActive"] or b["startTime"] >= cutoff]
    return {"blocks": blocks}
