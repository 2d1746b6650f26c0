"""Live metrics over the index: time windows, tiers, recent calls, projects and models.

The idea: nearly every answer depends on the index content alone, so a `Memo` keeps it until the
index changes and a request between commits costs no query at all when the caller knows when it
writes (the service counts its commits), or one tiny one otherwise (`index_version`, a
fingerprint of the small files and prices tables). All-time numbers come from one grouped scan each (per
project; per model, summed into tiers; overall). Windows (the last 1, 5 or 10 minutes before
`now`) are cut, exactly at `now`, from the calls of the last ten-odd minutes (`recent_rows`),
fetched once per commit and 5-minute bucket. Every number reads `priced_calls`, so it agrees
with `cco index status` and the snapshot.

Conventions: `now` is passed in (tz-aware); the index stores naive UTC timestamps; responses carry
ISO-8601 UTC strings with milliseconds and a `Z`. `tokens_in` counts every prompt token (input +
cache writes + cache reads), `tokens_out` the output tokens, so in + out = total_tokens.
Cache hit rate = cache-read tokens / prompt tokens (None when there were no prompt tokens).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from indexer.engine import duckdb
from indexer.errors import BadInput
from indexer.pricing import cost_expr
from schemas.pricing import TIERS

WINDOWS: dict[str, int] = {"1m": 60, "5m": 300, "10m": 600}  # name -> seconds
RECENT_DEFAULT = 20
RECENT_MAX = 1000

T = TypeVar("T")
Row = tuple[Any, ...]


# --- time ---------------------------------------------------------------------------------------


def db_time(dt: datetime) -> datetime:
    """A tz-aware instant as the index stores it: naive UTC."""
    if dt.tzinfo is None:
        raise ValueError("expected a timezone-aware datetime")
    return dt.astimezone(UTC).replace(tzinfo=None)


def iso_utc(ts: datetime | None) -> str | None:
    """Index timestamp (naive UTC) or aware instant -> '2026-02-10T22:57:57.941Z'."""
    if ts is None:
        return None
    aware = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return aware.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- the all-time memo --------------------------------------------------------------------------

_VERSION = """
SELECT max(ingested_at), coalesce(sum("offset"), 0) + coalesce(sum(lines), 0), count(*),
       (SELECT coalesce(sum(hash(p)), 0) FROM prices p) + (SELECT coalesce(sum(hash(q)), 0) FROM price_periods q)
FROM files
"""


def index_version(con: duckdb.DuckDBPyConnection) -> Row:
    """A fingerprint that changes whenever a commit or a price change can change a total.

    Calls only enter the index in a store commit, and every commit rewrites the state (offset,
    lines, ingested_at) of each file it read; `apply_prices` rewrites `prices`. Both tables are
    small, so this costs about as little as a query can, even with a million calls.
    """
    return tuple(con.execute(_VERSION).fetchone() or ())


Version = Callable[[duckdb.DuckDBPyConnection], Hashable]
_NEVER = object()  # the version before the first lookup


class Memo:
    """Results that depend only on the index content, kept until the index version changes.

    The version is `index_version(con)` unless `version` is given: the service, the only writer,
    passes a counter it bumps after each commit and price change, which costs nothing to read
    (`index_version` is a 1-2 ms query, most of a memoized request). Thread-safe (routes run
    queries in a thread pool). Each key computes once per version: a burst of requests after a
    commit waits for one computation, and different keys never wait for each other (a cheap
    snapshot is not held up by a slow all-time scan). Values are shared: treat them as
    read-only. At most `max_entries` results are kept (keys carry request parameters).
    """

    def __init__(self, max_entries: int = 512, version: Version = index_version) -> None:
        self._lock = threading.Lock()  # guards the fields below, held only briefly
        self._version: Hashable = _NEVER
        self._values: dict[Hashable, object] = {}
        self._computing: dict[Hashable, threading.Lock] = {}
        self._max = max_entries
        self._version_of = version

    def get(self, con: duckdb.DuckDBPyConnection, key: Hashable, compute: Callable[[], T]) -> T:
        version = self._version_of(con)
        with self._lock:
            if version != self._version or (key not in self._values and len(self._values) >= self._max):
                self._version, self._values, self._computing = version, {}, {}
            if key in self._values:
                return cast(T, self._values[key])
            key_lock = self._computing.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if self._version == version and key in self._values:
                    return cast(T, self._values[key])
            # Computed after reading the version: a commit in between only makes the next read miss.
            value = compute()
            with self._lock:
                if self._version == version:
                    self._values[key] = value
            return value


def memoized(memo: Memo | None, con: duckdb.DuckDBPyConnection, key: Hashable, compute: Callable[[], T]) -> T:
    return compute() if memo is None else memo.get(con, key, compute)


# --- aggregates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agg:
    """Sums over a set of priced calls (cost in the chosen cost mode)."""

    calls: int = 0
    errors: int = 0
    cost: float = 0.0
    tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    savings: float = 0.0
    latency_sum: float = 0.0
    latency_n: int = 0
    last: datetime | None = None
    p95_latency: float | None = None

    @property
    def tokens_in(self) -> int:
        return self.input_tokens + self.cache_creation_tokens + self.cache_read_tokens

    @property
    def avg_latency(self) -> float | None:
        return self.latency_sum / self.latency_n if self.latency_n else None

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_read_tokens / self.tokens_in if self.tokens_in else None


# Columns of an Agg (without p95), in order, over rows that have a `cost` column.
AGG_SQL = """
count(*), count(*) FILTER (WHERE failed), coalesce(sum(cost), 0), coalesce(sum(total_tokens), 0),
coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cache_creation_tokens), 0),
coalesce(sum(cache_read_tokens), 0), coalesce(sum(would_be_cost - cost_calculated), 0),
coalesce(sum(latency_ms), 0), count(latency_ms), max(ts)
"""


def agg_of(values: Sequence[Any], p95: Any = None) -> Agg:
    c, e, cost, tok, inp, out, cw, cr, sav, lsum, ln, last = values
    return Agg(
        int(c), int(e), float(cost), int(tok), int(inp), int(out), int(cw), int(cr), float(sav),
        float(lsum), int(ln), last, None if p95 is None else float(p95),
    )  # fmt: skip


def priced(mode: str, where: str = "") -> str:
    """priced_calls with a `cost` column for `mode`, optionally filtered."""
    return f"(SELECT *, {cost_expr(mode)} AS cost FROM priced_calls {where})"


def combine(aggs: Iterable[Agg]) -> Agg:
    """The Agg of the union of disjoint call sets (p95 is not additive: left None)."""
    out = Agg()
    for a in aggs:
        out = Agg(
            out.calls + a.calls, out.errors + a.errors, out.cost + a.cost, out.tokens + a.tokens,
            out.input_tokens + a.input_tokens, out.output_tokens + a.output_tokens,
            out.cache_creation_tokens + a.cache_creation_tokens, out.cache_read_tokens + a.cache_read_tokens,
            out.savings + a.savings, out.latency_sum + a.latency_sum, out.latency_n + a.latency_n,
            max((t for t in (out.last, a.last) if t is not None), default=None),
        )  # fmt: skip
    return out


def project_named(con: duckdb.DuckDBPyConnection, name: str, memo: Memo | None = None) -> tuple[str, tuple[str, ...]]:
    """What `?project=NAME` means, as `cco report --project` takes it: (the project, matched by its
    path, the path's last folder or Claude Code's folder name; the sessions filed in the folder
    NAME, whatever their cwd, see reports.sessions_in_folder). BadInput when NAME fits several."""
    from indexer.reports import project_matches, sessions_in_folder

    sessions = tuple(sessions_in_folder(con, name))
    known = by_project(con, "auto", memo)
    if name in known:
        return name, sessions
    found = sorted(p for p in known if project_matches(p, name))
    if len(found) > 1:
        raise BadInput(f"project {name!r} could be any of {', '.join(found)}; give its path")
    return (found[0] if found else name), sessions


def project_where(project: str, sessions: tuple[str, ...]) -> tuple[str, list[Any]]:
    """SQL condition (and parameters) for the calls or events of `project_named`'s answer."""
    if not sessions:
        return "project = ?", [project]
    return "(project = ? OR session IN (SELECT unnest(?::VARCHAR[])))", [project, list(sessions)]


def by_project(con: duckdb.DuckDBPyConnection, mode: str = "auto", memo: Memo | None = None) -> dict[str, Agg]:
    """All-time aggregate per project (memoized until the index changes when `memo` is given)."""
    cost_expr(mode)  # validate before caching anything

    def compute() -> dict[str, Agg]:
        rows = con.execute(f"SELECT project, {AGG_SQL} FROM {priced(mode)} GROUP BY project").fetchall()
        return {r[0]: agg_of(r[1:]) for r in rows}

    return memoized(memo, con, ("by_project", mode), compute)


def by_model(
    con: duckdb.DuckDBPyConnection,
    mode: str = "auto",
    memo: Memo | None = None,
    project: tuple[str, tuple[str, ...]] | None = None,
) -> dict[str, tuple[str, Agg]]:
    """All-time aggregate per model id (of one project's calls, if given as project_named answers):
    model -> (tier, agg); tiers are sums of these."""
    cost_expr(mode)
    source, params = priced(mode), list[Any]()
    if project is not None:
        where, params = project_where(*project)
        source = priced(mode, f"WHERE {where}")

    def compute() -> dict[str, tuple[str, Agg]]:
        sql = f"SELECT model, any_value(tier), {AGG_SQL} FROM {source} GROUP BY model"
        return {r[0]: (r[1], agg_of(r[2:])) for r in con.execute(sql, params).fetchall()}

    return memoized(memo, con, ("by_model", mode, project), compute)


def overall(con: duckdb.DuckDBPyConnection, mode: str = "auto", memo: Memo | None = None) -> Agg:
    """All-time aggregate of every call: one ungrouped scan (what the snapshot needs)."""
    cost_expr(mode)

    def compute() -> Agg:
        return agg_of(con.execute(f"SELECT {AGG_SQL} FROM {priced(mode)}").fetchone() or ())

    return memoized(memo, con, ("overall", mode), compute)


# --- windows ------------------------------------------------------------------------------------


def p95(values: list[float]) -> float | None:
    """The 95th percentile with linear interpolation (DuckDB's quantile_cont, numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = 0.95 * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _sum_rows(rows: Sequence[Row]) -> Agg:
    """Agg of `_WINDOW_COLUMNS` rows."""
    latencies = [float(r[9]) for r in rows if r[9] is not None]
    return Agg(
        calls=len(rows),
        errors=sum(1 for r in rows if r[2]),
        cost=sum(r[3] for r in rows),
        tokens=sum(r[4] + r[5] + r[6] + r[7] for r in rows),
        input_tokens=sum(r[4] for r in rows),
        output_tokens=sum(r[5] for r in rows),
        cache_creation_tokens=sum(r[6] for r in rows),
        cache_read_tokens=sum(r[7] for r in rows),
        savings=sum(r[8] for r in rows),
        latency_sum=sum(latencies),
        latency_n=len(latencies),
        last=max((r[0] for r in rows), default=None),
        p95_latency=p95(latencies),
    )


_WINDOW_COLUMNS = """ts, tier, failed, cost, input_tokens, output_tokens, cache_creation_tokens, cache_read_tokens,
would_be_cost - cost_calculated, latency_ms, project"""
RECENT_SPAN = timedelta(seconds=max(WINDOWS.values()))
_BUCKET_S = 300


def recent_rows(
    con: duckdb.DuckDBPyConnection, now: datetime, mode: str = "auto", memo: Memo | None = None
) -> list[Row]:
    """`_WINDOW_COLUMNS` of the calls with now - 10 min < ts <= now, oldest first.

    With a memo, the calls since the start of the 5-minute bucket holding now - 10 min are
    fetched once per index version and bucket, and cut to the exact span here: still exact,
    since they can only change with a commit, and a query is saved on nearly every request.
    """
    cost_expr(mode)
    end = db_time(now)
    start = end - RECENT_SPAN
    if memo is None:
        return _fetch_rows(con, start, end, mode)
    epoch = datetime(1970, 1, 1)
    bucket = epoch + timedelta(seconds=(start - epoch).total_seconds() // _BUCKET_S * _BUCKET_S)
    rows = memoized(memo, con, ("recent_rows", mode, bucket), lambda: _fetch_rows(con, bucket, None, mode))
    return [r for r in rows if start < r[0] <= end]


def _fetch_rows(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime | None, mode: str) -> list[Row]:
    where = "WHERE ts > ?" + ("" if end is None else " AND ts <= ?")
    params = [start] if end is None else [start, end]
    return con.execute(f"SELECT {_WINDOW_COLUMNS} FROM {priced(mode, where)} ORDER BY ts, key", params).fetchall()


def _window_aggs(
    con: duckdb.DuckDBPyConnection, now: datetime, names: Sequence[str], mode: str, memo: Memo | None
) -> dict[str, tuple[Agg, dict[str, Agg]]]:
    """For each window name: (all calls, per tier), calls with now - window < ts <= now.

    The widest window holds few calls (hundreds in a busy ten minutes), so they are fetched in
    one simple query (`recent_rows`) and summed here: cheaper than grouped quantiles in SQL.
    """
    end = db_time(now)
    rows = recent_rows(con, now, mode, memo)
    out: dict[str, tuple[Agg, dict[str, Agg]]] = {}
    for name in names:
        start = end - timedelta(seconds=WINDOWS[name])
        inside = [r for r in rows if r[0] > start]
        by_tier: dict[str, list[Row]] = {}
        for r in inside:
            by_tier.setdefault(r[1], []).append(r)
        out[name] = (_sum_rows(inside), {tier: _sum_rows(tier_rows) for tier, tier_rows in by_tier.items()})
    return out


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


def tier_json(agg: Agg, seconds: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "calls": agg.calls,
        "failed_calls": agg.errors,
        "cost_usd": _round(agg.cost),
        "tokens_in": agg.tokens_in,
        "tokens_out": agg.output_tokens,
        "cache_savings_usd": _round(agg.savings),
        "avg_latency_ms": _round(agg.avg_latency, 1),
        "p95_latency_ms": _round(agg.p95_latency, 1),
    }
    if seconds is not None:
        out["calls_per_minute"] = _round(agg.calls * 60 / seconds, 3)
        out["cost_per_minute_usd"] = _round(agg.cost * 60 / seconds)
    return out


def _window_json(name: str, now: datetime, overall: Agg, tiers: dict[str, Agg]) -> dict[str, Any]:
    seconds = WINDOWS[name]
    return {
        "window": name,
        "from": iso_utc(now - timedelta(seconds=seconds)),
        "to": iso_utc(now),
        "total_calls": overall.calls,
        "failed_calls": overall.errors,
        "total_cost_usd": _round(overall.cost),
        "total_tokens_in": overall.tokens_in,
        "total_tokens_out": overall.output_tokens,
        "cache_savings_usd": _round(overall.savings),
        "avg_latency_ms": _round(overall.avg_latency, 1),
        "p95_latency_ms": _round(overall.p95_latency, 1),
        "calls_per_minute": _round(overall.calls * 60 / seconds, 3),
        "cost_per_minute_usd": _round(overall.cost * 60 / seconds),
        "tiers": {t: tier_json(tiers.get(t, Agg())) for t in TIERS},
    }


def window_stats(
    con: duckdb.DuckDBPyConnection, *, now: datetime, window: str, mode: str = "auto", memo: Memo | None = None
) -> dict[str, Any]:
    """GET /api/metrics/stats: one window's totals and per-tier metrics."""
    overall, tiers = _window_aggs(con, now, [window], mode, memo)[window]
    return _window_json(window, now, overall, tiers)


def realtime(
    con: duckdb.DuckDBPyConnection, *, now: datetime, mode: str = "auto", memo: Memo | None = None
) -> dict[str, Any]:
    """GET /api/metrics/realtime: every window at once (one query)."""
    aggs = _window_aggs(con, now, list(WINDOWS), mode, memo)
    return {
        "timestamp": iso_utc(now),
        "windows": {name: _window_json(name, now, *aggs[name]) for name in WINDOWS},
    }


def tier_detail(
    con: duckdb.DuckDBPyConnection, tier: str, *, now: datetime, mode: str = "auto", memo: Memo | None = None
) -> dict[str, Any]:
    """GET /api/metrics/tiers/{tier}: the tier in every window, all time, and its models."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}")
    aggs = _window_aggs(con, now, list(WINDOWS), mode, memo)
    models = {m: agg for m, (t, agg) in by_model(con, mode, memo).items() if t == tier}
    all_time = combine(models.values())
    return {
        "tier": tier,
        "timestamp": iso_utc(now),
        "windows": {name: tier_json(aggs[name][1].get(tier, Agg()), WINDOWS[name]) for name in WINDOWS},
        "all_time": {**tier_json(all_time), "last_activity": iso_utc(all_time.last)},
        "models": sorted(models),
    }


# --- recent calls -------------------------------------------------------------------------------

_CALL_COLUMNS = """key, ts, model, tier, project, session, sidechain, failed, input_tokens, output_tokens,
cache_creation_tokens, cache_read_tokens, total_tokens, cost, would_be_cost - cost_calculated, latency_ms, error"""


def call_id(key: int) -> str:
    return f"{key & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def newest_keys(
    con: duckdb.DuckDBPyConnection, n: int, where: str = "", params: Sequence[Any] = ()
) -> tuple[list[int], datetime | None]:
    """Keys of the `n` newest counted calls matching `where` (over `calls`), and the oldest ts among them.

    Ordering reads only two raw columns (no pricing), which keeps a top-N over a million calls cheap.
    """
    rows = con.execute(
        f"SELECT key, ts FROM calls WHERE NOT replay {where} ORDER BY ts DESC, key LIMIT ?", [*params, n]
    ).fetchall()
    return [r[0] for r in rows], (rows[-1][1] if rows else None)


def priced_rows(con: duckdb.DuckDBPyConnection, keys: list[int], oldest: datetime | None, mode: str) -> list[Row]:
    """`_CALL_COLUMNS` of the calls with these keys, newest first."""
    if not keys:
        return []
    return con.execute(
        f"SELECT {_CALL_COLUMNS} FROM {priced(mode, 'WHERE ts >= ? AND key IN (SELECT unnest(?))')} "
        "ORDER BY ts DESC, key",
        [oldest, keys],
    ).fetchall()


def recent_calls(
    con: duckdb.DuckDBPyConnection, *, limit: int = RECENT_DEFAULT, mode: str = "auto", memo: Memo | None = None
) -> dict[str, Any]:
    """GET /api/metrics/recent: the newest calls, newest first (memoized until the index changes)."""
    cost_expr(mode)
    return memoized(memo, con, ("recent", limit, mode), lambda: _recent_calls(con, limit, mode))


def _recent_calls(con: duckdb.DuckDBPyConnection, limit: int, mode: str) -> dict[str, Any]:
    keys, oldest = newest_keys(con, limit)
    calls = []
    for row in priced_rows(con, keys, oldest, mode):
        key, ts, model, tier, project, session, side, failed, inp, out, cw, cr, tok, cost, sav, lat, err = row
        calls.append(
            {
                "id": call_id(key),
                "timestamp": iso_utc(ts),
                "model": model,
                "tier": tier,
                "project": project,
                "session": session,
                "sidechain": side,
                "failed": failed,
                "input_tokens": inp,
                "output_tokens": out,
                "cache_creation_tokens": cw,
                "cache_read_tokens": cr,
                "total_tokens": tok,
                "cost_usd": _round(cost),
                "cache_savings_usd": _round(sav),
                "latency_ms": lat,
                "error": err,
            }
        )
    return {"calls": calls}


# --- projects and models ------------------------------------------------------------------------


def _entity(agg: Agg) -> dict[str, Any]:
    return {
        "cost": _round(agg.cost),
        "tokens": agg.tokens,
        "calls": agg.calls,
        "errors": agg.errors,
        "cacheHitRate": _round(agg.cache_hit_rate, 4),
        "avgLatency": _round(agg.avg_latency, 1),
        "lastActivity": iso_utc(agg.last),
    }


def project_stats(con: duckdb.DuckDBPyConnection, *, mode: str = "auto", memo: Memo | None = None) -> dict[str, Any]:
    """GET /api/metrics/projects: every project, most recently active first."""
    ordered = sorted(
        by_project(con, mode, memo).items(), key=lambda kv: (kv[1].last or datetime.min, kv[0]), reverse=True
    )
    return {"projects": [{"name": name, **_entity(agg)} for name, agg in ordered]}


def model_stats(
    con: duckdb.DuckDBPyConnection,
    *,
    mode: str = "auto",
    memo: Memo | None = None,
    project: tuple[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """GET /api/metrics/models: every model id as transcripts spell it, most requests first (of
    one project's calls, `?project=` as /api/metrics/projects names it).

    API error notices are written by Claude Code under the model id `<synthetic>`, so their
    errors are counted on that row.
    """
    ordered = sorted(by_model(con, mode, memo, project).items(), key=lambda kv: (-kv[1][1].calls, kv[0]))
    out = []
    for model, (tier, agg) in ordered:
        entity = _entity(agg)
        out.append(
            {
                "model": model,
                "tier": tier,
                "requests": agg.calls,
                "cost": entity["cost"],
                "tokens": agg.tokens,
                "cacheHitRate": entity["cacheHitRate"],
                "avgLatency": entity["avgLatency"],
                "errors": agg.errors,
                "lastActivity": entity["lastActivity"],
            }
        )
    return {"models": out}
