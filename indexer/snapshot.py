"""StatsSnapshot: the numbers `/api/stats` serves, computed from the index in two aggregate queries.

The idea: split by what a number depends on. All-time totals depend only on the index content
(one scan, memoized by `metrics.Memo` until the next commit when a memo is passed); today's and
the last ten minutes' numbers depend on `now` and read only calls from the start of the local
day onwards. Both read `priced_calls`, so they agree with `cco index status`.

Definitions: `today` is the local calendar day of `now` in `tz` (default: the system's zone),
from its local midnight to the next one, DST-aware. The last ten minutes are
now - 10 min < ts <= now; calls_per_minute and cost_per_minute divide their sums by 10.
active_projects counts distinct projects with a call in those ten minutes. avg_response_time_ms
is the mean estimated latency of the calls that have one (failed ones included).
cache_savings = sum(would_be_cost - cost_calculated): what cached prompt tokens saved against
paying full input price for them. messages_count is the number of transcript lines indexed.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, tzinfo

import duckdb

from indexer.metrics import Memo, db_time, iso_utc, overall, priced
from schemas.stats import StatsSnapshot

RECENT_MINUTES = 10


def local_day(now: datetime, tz: tzinfo | None = None) -> tuple[datetime, datetime]:
    """[start, end) of the local calendar day holding `now`, as aware UTC instants."""
    if tz is None:
        day = now.astimezone().date()
        # A naive local time's astimezone() uses the offset in force at that time (DST-aware).
        start = datetime.combine(day, time()).astimezone()
        end = datetime.combine(day + timedelta(days=1), time()).astimezone()
    else:
        day = now.astimezone(tz).date()
        start = datetime.combine(day, time(), tzinfo=tz)
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def compute_snapshot(
    con: duckdb.DuckDBPyConnection,
    *,
    now: datetime,
    uptime_s: float,
    port: int,
    mode: str = "auto",
    tz: tzinfo | None = None,
    memo: Memo | None = None,
) -> StatsSnapshot:
    """The snapshot at `now` (tz-aware). Pass the service's `memo` to reuse all-time totals."""
    everything = overall(con, mode, memo)
    day_start, day_end = local_day(now, tz)
    recent_start = now - timedelta(minutes=RECENT_MINUTES)
    lower = min(day_start, recent_start)
    row = con.execute(
        f"""
        SELECT coalesce(sum(cost) FILTER (WHERE ts >= $day_start AND ts < $day_end), 0),
               coalesce(sum(total_tokens) FILTER (WHERE ts >= $day_start AND ts < $day_end), 0),
               count(*) FILTER (WHERE ts > $recent AND ts <= $now),
               coalesce(sum(cost) FILTER (WHERE ts > $recent AND ts <= $now), 0),
               count(DISTINCT project) FILTER (WHERE ts > $recent AND ts <= $now),
               (SELECT coalesce(sum(lines), 0) FROM files)
        FROM {priced(mode, "WHERE ts >= $lower")}
        """,
        {
            "day_start": db_time(day_start),
            "day_end": db_time(day_end),
            "recent": db_time(recent_start),
            "now": db_time(now),
            "lower": db_time(lower),
        },
    ).fetchone()
    assert row is not None
    today_cost, today_tokens, recent_calls, recent_cost, active, lines = row
    return StatsSnapshot(
        timestamp=iso_utc(now) or "",
        uptime_s=float(uptime_s),
        port=port,
        total_requests=everything.calls,
        successful_requests=everything.calls - everything.errors,
        failed_requests=everything.errors,
        avg_response_time_ms=everything.avg_latency,
        total_cost=everything.cost,
        total_tokens=everything.tokens,
        input_tokens=everything.input_tokens,
        output_tokens=everything.output_tokens,
        cache_creation_tokens=everything.cache_creation_tokens,
        cache_read_tokens=everything.cache_read_tokens,
        cache_savings=everything.savings,
        messages_count=int(lines),
        today_cost=float(today_cost),
        today_tokens=int(today_tokens),
        calls_per_minute=recent_calls / RECENT_MINUTES,
        cost_per_minute=float(recent_cost) / RECENT_MINUTES,
        active_projects=int(active),
        last_activity=iso_utc(everything.last),
    )
