"""The activity feed: calls, errors, model switches and compactions as one newest-first stream.

Event types. Every counted call is exactly one event: `error` (an API error notice,
isApiErrorMessage; its text, cut to 200 characters at parse time), else `cache_hit` (it read
cached prompt tokens; carries `savings`), else `api_call`. `model_override`: a main-chain call
whose model differs from the previous main-chain call of its session (subagent calls and error
notices are left out: a subagent running on another model is not a switch). `compaction`: a
`compact_boundary` line (events table), with its trigger and pre-compaction token count.

The idea: a page is a merge of three sources, each asked only for its `offset + limit` newest
rows. Calls are ordered by two raw columns of `calls` (cheap even with a million rows) and
priced only for the page; model switches need a window function over every call, but only the
page's share of them and their count leave DuckDB (each page is memoized until the index
changes); compactions are few. Ties on the timestamp are broken by
source (switch, call, compaction) and then by key, so pages are stable.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from indexer.engine import duckdb
from indexer.metrics import Memo, Row, call_id, db_time, iso_utc, memoized, priced_rows, project_where
from indexer.pricing import cost_expr

EVENT_TYPES = ("api_call", "cache_hit", "error", "model_override", "compaction")
CALL_TYPES = {
    "error": "failed",
    "cache_hit": "(NOT failed AND cache_read_tokens > 0)",
    "api_call": "(NOT failed AND cache_read_tokens = 0)",
}
ACTIVITY_DEFAULT = 50
ACTIVITY_MAX = 1000
_RANK = {"model_override": 0, "call": 1, "compaction": 2}


@dataclass(frozen=True)
class ActivityQuery:
    """Filters and paging; `start` is inclusive and `end` exclusive (aware instants)."""

    limit: int = ACTIVITY_DEFAULT
    offset: int = 0
    types: frozenset[str] = field(default_factory=lambda: frozenset(EVENT_TYPES))
    project: str | None = None
    sessions: tuple[str, ...] = ()  # with `project`: the sessions filed in its folder (project_named)
    start: datetime | None = None
    end: datetime | None = None

    def where(self) -> tuple[str, list[Any]]:
        """SQL conditions on project and time (for `calls` and `events`), with parameters."""
        sql, params = "", list[Any]()
        if self.project is not None:
            condition, params = project_where(self.project, self.sessions)
            sql += f" AND {condition}"
        if self.start is not None:
            sql += " AND ts >= ?"
            params.append(db_time(self.start))
        if self.end is not None:
            sql += " AND ts < ?"
            params.append(db_time(self.end))
        return sql, params


# (ts, key, session, project, model, previous model), newest first
Override = tuple[datetime, int, str, str, str, str]
# A feed entry before it is rendered: (ts, source rank, key, payload)
Candidate = tuple[datetime, int, int, Any]

# The calls between which a model switch is counted (both lists of switches below start from them).
_SWITCH_CALLS = "SELECT key, ts, session, project, model FROM calls WHERE NOT replay AND NOT sidechain AND NOT failed"
# Every switch matching the feed's filters (appended as `AND ...` to the last WHERE), newest first,
# each with the number of them: a page never holds the whole list, which can be as long as the
# calls (a session that alternates models every call).
_OVERRIDES = f"""
WITH main AS ({_SWITCH_CALLS}), switching AS (
    SELECT session FROM main GROUP BY session HAVING count(DISTINCT model) > 1
)
SELECT ts, key, session, project, model, prev, count(*) OVER () FROM (
    SELECT *, lag(model) OVER (PARTITION BY session ORDER BY ts, key) AS prev
    FROM main WHERE session IN (SELECT session FROM switching)
)
WHERE prev IS NOT NULL AND prev <> model"""


# The switches among the newest calls (those at the newest counted call's ts): the only ones that
# can be the newest event, since every switch is a call. Each looks up just its own predecessor.
# Only the first of them in feed order (the smallest key) can lead. A window over the sessions of
# the newest calls, not a lookup per newest call: calls sharing one timestamp by the hundred
# thousand (a generated or corrupted transcript) made that a quadratic join, gigabytes and minutes.
_NEWEST_OVERRIDES = f"""
WITH main AS ({_SWITCH_CALLS}), newest AS (SELECT max(ts) AS ts FROM calls WHERE NOT replay),
ordered AS (
    SELECT *, lag(model) OVER (PARTITION BY session ORDER BY ts, key) AS prev FROM main
    WHERE session IN (SELECT session FROM main WHERE ts = (SELECT ts FROM newest))
)
SELECT ts, key, session, project, model, prev FROM ordered
WHERE ts = (SELECT ts FROM newest) AND prev <> model
ORDER BY key LIMIT 1
"""


def model_overrides(
    con: duckdb.DuckDBPyConnection, query: ActivityQuery | None = None, limit: int | None = None
) -> tuple[int, list[Override]]:
    """(how many, the `limit` newest) model switches within `query`'s project and time filters."""
    where, params = (query or ActivityQuery()).where()
    sql = f"{_OVERRIDES}{where} ORDER BY ts DESC, key" + ("" if limit is None else " LIMIT ?")
    rows = con.execute(sql, params if limit is None else [*params, limit]).fetchall()
    return (rows[0][6] if rows else 0), [tuple(r[:6]) for r in rows]


def _call_filter(types: Iterable[str]) -> str | None:
    conds = [CALL_TYPES[t] for t in EVENT_TYPES if t in CALL_TYPES and t in types]
    if not conds:
        return None
    return "" if len(conds) == len(CALL_TYPES) else f" AND ({' OR '.join(conds)})"


def _hex_id(kind: str, key: int) -> str:
    return f"{kind}-{call_id(key)}"


def _call_event(row: Row) -> dict[str, Any]:
    key, ts, model, tier, project, session, side, failed, inp, out, cw, cr, tok, cost, sav, lat, err = row
    kind = "error" if failed else "cache_hit" if cr > 0 else "api_call"
    event: dict[str, Any] = {
        "id": _hex_id("call", key),
        "type": kind,
        "timestamp": iso_utc(ts),
        "project": project,
        "session": session,
        "model": model,
        "tier": tier,
        "sidechain": side,
        "inputTokens": inp,
        "outputTokens": out,
        "cacheCreationTokens": cw,
        "cacheReadTokens": cr,
        "tokens": tok,
        "cost": round(cost, 6),
        "latencyMs": lat,
    }
    if kind == "cache_hit":
        event["savings"] = round(sav, 6)
    if kind == "error":
        event["error"] = err
    return event


def _override_event(o: Override) -> dict[str, Any]:
    ts, key, session, project, model, prev = o
    return {
        "id": _hex_id("model_override", key),
        "type": "model_override",
        "timestamp": iso_utc(ts),
        "project": project,
        "session": session,
        "model": model,
        "previousModel": prev,
    }


def _compaction_event(key: int, ts: datetime, session: str, project: str, detail: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if detail:
        try:
            loaded = orjson.loads(detail)
        except orjson.JSONDecodeError:
            loaded = {}
        meta = loaded if isinstance(loaded, dict) else {}
    return {
        "id": _hex_id("compaction", key),
        "type": "compaction",
        "timestamp": iso_utc(ts),
        "project": project,
        "session": session,
        "trigger": meta.get("trigger"),
        "preTokens": meta.get("preTokens"),
    }


def activity(
    con: duckdb.DuckDBPyConnection, query: ActivityQuery, *, mode: str = "auto", memo: Memo | None = None
) -> dict[str, Any]:
    """GET /api/metrics/activity: {events, total, hasMore}, newest first (memoized per query)."""
    cost_expr(mode)
    return memoized(memo, con, ("activity", query, mode), lambda: _activity(con, query, mode))


def _activity(con: duckdb.DuckDBPyConnection, query: ActivityQuery, mode: str) -> dict[str, Any]:
    need = query.offset + query.limit
    where, params = query.where()
    call_sql = f"NOT replay{call_where}{where}" if (call_where := _call_filter(query.types)) is not None else None
    event_sql = f"kind = 'compaction'{where}" if "compaction" in query.types else None
    total, overrides = model_overrides(con, query, need) if "model_override" in query.types else (0, [])
    for table, sql in (("calls", call_sql), ("events", event_sql)):
        if sql is not None:
            total += (con.execute(f"SELECT count(*) FROM {table} WHERE {sql}", params).fetchone() or (0,))[0]
    if query.offset >= total or not need:
        return {"events": [], "total": total, "hasMore": need < total}

    # Candidates: (ts, source rank, key, payload); each source gives at most `need`.
    candidates: list[Candidate] = [(o[0], _RANK["model_override"], o[1], o) for o in overrides]
    if call_sql is not None:
        rows = con.execute(
            f"SELECT ts, key FROM calls WHERE {call_sql} ORDER BY ts DESC, key LIMIT ?", [*params, need]
        ).fetchall()
        candidates += [(ts, _RANK["call"], key, None) for ts, key in rows]
    if event_sql is not None:
        rows = con.execute(
            f"SELECT ts, key, session, project, detail FROM events WHERE {event_sql} ORDER BY ts DESC, key LIMIT ?",
            [*params, need],
        ).fetchall()
        candidates += [(r[0], _RANK["compaction"], r[1], r) for r in rows]

    page = _newest_first(candidates)[query.offset : need]
    return {"events": _events(con, page, mode), "total": total, "hasMore": need < total}


def _newest_first(candidates: list[Candidate]) -> list[Candidate]:
    """Newest first; ties by source rank, then key (stable pages)."""
    candidates.sort(key=lambda c: (c[1], c[2]))
    candidates.sort(key=lambda c: c[0], reverse=True)
    return candidates


def _events(con: duckdb.DuckDBPyConnection, page: list[Candidate], mode: str) -> list[dict[str, Any]]:
    """The events of a page of candidates; calls are priced here, for the page only."""
    call_keys = [c[2] for c in page if c[1] == _RANK["call"]]
    oldest = min((c[0] for c in page if c[1] == _RANK["call"]), default=None)
    priced = {row[0]: row for row in priced_rows(con, call_keys, oldest, mode)}
    events: list[dict[str, Any]] = []
    for _ts, rank, key, payload in page:
        if rank == _RANK["call"]:
            if key in priced:  # always, unless the call changed between the two reads
                events.append(_call_event(priced[key]))
        elif rank == _RANK["model_override"]:
            events.append(_override_event(payload))
        else:
            events.append(_compaction_event(payload[1], payload[0], payload[2], payload[3], payload[4]))
    return events


def current(
    con: duckdb.DuckDBPyConnection, *, machine: str, mode: str = "auto", memo: Memo | None = None
) -> dict[str, Any]:
    """GET /api/metrics/current: the newest activity event, its project, and this machine.

    `activity` is that event (the shape of an /api/metrics/activity event), None on an empty index.
    It is the first event of an unfiltered feed page, found without listing every model switch:
    only a switch at the newest call's timestamp can come first (memoized until the index changes).
    """
    cost_expr(mode)
    latest = memoized(memo, con, ("current", mode), lambda: _newest_event(con, mode))
    return {"project": latest["project"] if latest else None, "machine": machine, "activity": latest}


def _newest_event(con: duckdb.DuckDBPyConnection, mode: str) -> dict[str, Any] | None:
    call = con.execute("SELECT ts, key FROM calls WHERE NOT replay ORDER BY ts DESC, key LIMIT 1").fetchone()
    candidates: list[Candidate] = []
    if call is not None:
        candidates.append((call[0], _RANK["call"], call[1], None))
        candidates += [
            (o[0], _RANK["model_override"], o[1], tuple(o)) for o in con.execute(_NEWEST_OVERRIDES).fetchall()
        ]
    compaction = con.execute(
        "SELECT ts, key, session, project, detail FROM events WHERE kind = 'compaction' ORDER BY ts DESC, key LIMIT 1"
    ).fetchone()
    if compaction is not None:
        candidates.append((compaction[0], _RANK["compaction"], compaction[1], compaction))
    events = _events(con, _newest_first(candidates)[:1], mode)
    return events[0] if events else None
