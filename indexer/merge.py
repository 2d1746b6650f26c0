"""The merge rules in SQL and Python: the lines of one call identity become one row, and that
row meets the stored one, with the same result in any order.

The idea: usage fields take their maximum (streamed lines repeat a growing snapshot; of the cache
write, the total and the 1-hour part: see MAXIMA), the timestamp its minimum, and the descriptive
fields (model, session, project, latency, error) come from the earliest line, ties broken by
session name then arrival. parse.merge_calls states the
rules for two rows in Python; merged_columns applies them to a whole batch of numeric columns at
once (sort, then one reduction per column), and the SQL here to a batch against `calls`
(MERGE_SET), so the set-based path, the few-call path and rebuild's salvage agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from indexer.columns import CALL_COLUMNS, Arrays, CallColumns, decoded_calls
from indexer.parse import merge_calls
from schemas.records import CallRow

if TYPE_CHECKING:
    import numpy as np

# The columns a merge may change (key and msg_hash are the identity; replay is MARK_REPLAYS' job).
MERGED_COLUMNS = tuple(c for c in CALL_COLUMNS if c not in ("key", "msg_hash"))
# Each column's rule, as parse.merge_calls applies it: the earliest row's value, the maximum (the
# usage counts, and costUSD where present), or a flag that ORs in or ANDs out.
FIRST_ROW = ("model", "session", "project", "branch", "version", "agent_id", "latency_ms", "error")
# The cache write is stored as its 5-minute and 1-hour parts; what takes its maximum is the total and
# the 1-hour part (CACHE_TOTAL), the 5-minute part being the rest.
MAXIMA = ("input_tokens", "output_tokens", "cache_1h_tokens", "cache_read_tokens", "web_searches")
CACHE_TOTAL = "({t}.cache_5m_tokens + {t}.cache_1h_tokens)"
ANY_ROW = ("failed", "fast")
ALL_ROWS = ("sidechain",)

# The earlier row, by time, then session, then agent id (none first): the same line in a session's
# main file and in one of its subagent files must resolve the same way whichever is read first.
_EARLIER = (
    "(excluded.ts < calls.ts OR (excluded.ts = calls.ts AND (excluded.session < calls.session "
    "OR (excluded.session = calls.session AND coalesce(excluded.agent_id, '') < coalesce(calls.agent_id, '')))))"
)
# The merge rules in SQL, for a row `excluded` meeting the stored row `calls`: ingest and rebuild's
# salvage both use them, so the order in which lines (or old and new indexes) meet never changes
# the result.
MERGE_SET = ",\n".join(
    [
        "ts = least(calls.ts, excluded.ts)",
        *(f"{c} = CASE WHEN {_EARLIER} THEN excluded.{c} ELSE calls.{c} END" for c in FIRST_ROW),
        *(f"{c} = greatest(calls.{c}, excluded.{c})" for c in (*MAXIMA, "cost_usd")),
        "cache_5m_tokens = greatest({}, {}) - greatest(calls.cache_1h_tokens, excluded.cache_1h_tokens)".format(
            CACHE_TOTAL.format(t="calls"), CACHE_TOTAL.format(t="excluded")
        ),
        *(f"{c} = calls.{c} OR excluded.{c}" for c in ANY_ROW),
        *(f"{c} = calls.{c} AND excluded.{c}" for c in ALL_ROWS),
    ]
)


def changes(old: str, new: str) -> str:
    """SQL: whether merging row `old` into row `new` (same call) changes `new` by MERGE_SET."""
    return " OR ".join(
        [
            f"{old}.ts < {new}.ts",
            f"({old}.ts = {new}.ts AND {old}.session < {new}.session)",
            f"({old}.ts = {new}.ts AND {old}.session = {new}.session "
            f"AND coalesce({old}.agent_id, '') < coalesce({new}.agent_id, ''))",
            *(f"{old}.{c} > {new}.{c}" for c in MAXIMA),
            f"{CACHE_TOTAL.format(t=old)} > {CACHE_TOTAL.format(t=new)}",
            f"{old}.cost_usd > coalesce({new}.cost_usd, -1)",
            *(f"({old}.{c} AND NOT {new}.{c})" for c in ANY_ROW),
            *(f"({new}.{c} AND NOT {old}.{c})" for c in ALL_ROWS),
        ]
    )


def merged_columns(batch: CallColumns) -> CallColumns:
    """Rows of one call identity in `batch` -> one, by the rules of parse.merge_calls, in numpy,
    in key order. A batch without repeated keys comes back as it is.

    Workers merge their own batches (a streamed message's lines are in one file) and the writer
    merges again what meets across batches, where few keys repeat (a fork's or a sidechain's
    copies): only the rows of repeated keys go through the merge (_merged_runs); the rest are
    just put in key order (72,000 calls with 3% repeated: ~12 ms against ~20 ms all merged).
    """
    import numpy as np

    a = batch.arrays
    by_key = np.argsort(a["key"], kind="stable")
    keys = a["key"][by_key]
    repeats = keys[1:] == keys[:-1]
    if not repeats.any():
        return batch
    first = np.concatenate(([True], ~repeats))  # the first row (in key order) of each identity
    several = np.concatenate((repeats, [False])) | np.concatenate(([False], repeats))  # its identity has more
    out = {c: a[c][by_key[first]] for c in CALL_COLUMNS}
    merged = _merged_runs({c: a[c][by_key[several]] for c in CALL_COLUMNS})
    at = np.flatnonzero(several[first])  # where the merged identities go among all, both in key order
    for c in CALL_COLUMNS:
        out[c][at] = merged[c]
    return CallColumns(out, batch.vocab)


def _merged_runs(a: Arrays) -> Arrays:
    """One row per key of `a`, every key of which repeats, merged, in key order.

    Rows are sorted by (key, time, session code, agent id code, arrival), so each identity's rows
    are a run whose first row is the earliest (codes order as the names do, no agent id first):
    the FIRST_ROW fields and the time are taken from it, and the other rules are one `reduceat`
    per column over the runs.
    """
    import numpy as np

    order = np.lexsort((np.arange(len(a["key"])), a["agent_id"], a["session"], a["ts_ms"], a["key"]))
    keys = a["key"][order]
    firsts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
    out = {c: a[c][order[firsts]] for c in CALL_COLUMNS}
    for names, rule in ((MAXIMA, np.maximum), (ANY_ROW, np.logical_or), (ALL_ROWS, np.logical_and)):
        for c in names:
            out[c] = rule.reduceat(a[c][order], firsts)
    total = np.maximum.reduceat((a["cache_5m_tokens"] + a["cache_1h_tokens"])[order], firsts)
    out["cache_5m_tokens"] = total - out["cache_1h_tokens"]
    out["cost_usd"] = np.fmax.reduceat(a["cost_usd"][order], firsts)  # NaN (no costUSD) loses to a value
    return out


def decoded(relation: str, codes: bool = True, extra: tuple[str, ...] = ()) -> str:
    """The rows of `relation` (a batch's arrays, registered; its vocabulary the parameter $1, or,
    without `codes`, its text columns as strings) as `calls` rows, with its `extra` columns."""
    rows = decoded_calls(relation, codes, extra)
    return f"SELECT * EXCLUDE (ts_ms), make_timestamp(ts_ms * 1000) AS ts FROM ({rows})"


def merge_calls_from(rows: str) -> str:
    """SQL: the `calls` rows that query `rows` gives (one per key) merged into `calls` by MERGE_SET,
    as a hash join on the key column."""
    return f"""
MERGE INTO calls USING ({rows}) AS excluded ON calls.key = excluded.key
WHEN MATCHED THEN UPDATE SET {MERGE_SET}
WHEN NOT MATCHED THEN INSERT BY NAME
"""


# A registered batch (merged_columns: one row per key; its vocabulary the parameter) merged into `calls`.
MERGE_CALLS = merge_calls_from(decoded("batch_calls"))
# A compaction event copied into a resumed session's file (same uuid, same time) is one event:
# the copy of the session whose name sorts first is kept, as calls break such ties, so the order
# in which files are read never decides it.
EVENT_UPSERT = """
ON CONFLICT (key) DO UPDATE SET session = excluded.session, project = excluded.project, detail = excluded.detail
WHERE excluded.session < events.session
"""
# A sidechain call whose message.id belongs to a main-chain call under another requestId replays it.
# Recomputed for the sidechain (or flagged) calls sharing a message.id with the batch: a merge can
# turn a sidechain call into a main-chain one, which must then lose its replay flag.
# Only flags that change are written (an unchanged row is not rewritten).
MARK_REPLAYS = """
UPDATE calls SET replay = NOT replay
WHERE msg_hash <> 0 AND (sidechain OR replay) AND msg_hash IN ({msg_hashes})
  AND replay <> (sidechain AND EXISTS (
      SELECT 1 FROM calls AS main
      WHERE main.msg_hash = calls.msg_hash AND NOT main.sidechain AND main.key <> calls.key
  ))
"""


def replays(a: Arrays) -> np.ndarray[Any, Any]:
    """MARK_REPLAYS over the rows of `a` alone (one row per call, as in a fresh `calls`): which
    are replays, a sidechain call whose message.id a main-chain call has (under another key:
    every other row has one)."""
    import numpy as np

    hashes, side = a["msg_hash"], a["sidechain"]
    replay: np.ndarray[Any, Any] = side & (hashes != 0)
    main = np.sort(hashes[~side & (hashes != 0)])
    if not len(main) or not replay.any():
        return replay & False
    asked = hashes[replay]
    found = main[np.searchsorted(main, asked).clip(max=len(main) - 1)] == asked
    replay[replay] = found
    return replay


def merge_batch(calls: Iterable[CallRow]) -> list[CallRow]:
    """Merge rows sharing a call identity, in Python: the few-call path (big batches merge in SQL)."""
    merged: dict[int, CallRow] = {}
    for row in calls:
        prev = merged.get(row.key)
        merged[row.key] = row if prev is None else merge_calls(prev, row)
    return list(merged.values())
