"""StatsSnapshot: the numbers `/api/stats` serves, computed from the index in three small queries.

The idea: split by what a number depends on, so that with a `metrics.Memo` a snapshot between
commits costs one fingerprint query. All-time totals (one scan) and today's sums (one range
query) depend only on the index content and the day; the last ten minutes' calls are the
memoized `metrics.recent_rows`, cut at `now`. Without a memo the same three queries run each
time. All read `priced_calls`, so they agree with `cco index status`.

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

from indexer.engine import duckdb
from indexer.metrics import Memo, db_time, iso_utc, memoized, overall, priced, recent_rows
from indexer.reports import money
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
    today_cost, today_tokens, lines = memoized(
        memo, con, ("today", mode, day_start, day_end), lambda: _today(con, mode, day_start, day_end)
    )
    recent = recent_rows(con, now, mode, memo)  # now - 10 min < ts <= now
    recent_cost = sum(r[3] for r in recent)
    active = len({r[10] for r in recent})
    return StatsSnapshot(
        timestamp=iso_utc(now) or "",
        uptime_s=float(uptime_s),
        port=port,
        total_requests=everything.calls,
        successful_requests=everything.calls - everything.errors,
        failed_requests=everything.errors,
        avg_response_time_ms=everything.avg_latency,
        total_cost=money(everything.cost),  # amounts as reports and status print them
        total_tokens=everything.tokens,
        input_tokens=everything.input_tokens,
        output_tokens=everything.output_tokens,
        cache_creation_tokens=everything.cache_creation_tokens,
        cache_read_tokens=everything.cache_read_tokens,
        cache_savings=money(everything.savings),
        messages_count=lines,
        today_cost=money(today_cost),
        today_tokens=today_tokens,
        calls_per_minute=len(recent) / RECENT_MINUTES,
        cost_per_minute=money(recent_cost / RECENT_MINUTES),
        active_projects=active,
        last_activity=iso_utc(everything.last),
    )


def _today(con: duckdb.DuckDBPyConnection, mode: str, start: datetime, end: datetime) -> tuple[float, int, int]:
    """(cost, tokens) of calls with start <= ts < end, and the transcript lines indexed."""
    row = con.execute(
        f"""
        SELECT coalesce(sum(cost), 0), coalesce(sum(total_tokens), 0), (SELECT coalesce(sum(lines), 0) FROM files)
        FROM {priced(mode, "WHERE ts >= ? AND ts < ?")}
        """,
        [db_time(start), db_time(end)],
    ).fetchone()
    assert row is not None
    return float(row[0]), int(row[1]), int(row[2])
