"""The merge rules in SQL and Python: the lines of one call identity become one row, and that
row meets the stored one, with the same result in any order.

The idea: usage fields take their maximum (streamed lines repeat a growing snapshot), the
timestamp its minimum, and the descriptive fields (model, session, project, latency, error) come
from the earliest line, ties broken by session name then arrival. parse.merge_calls states the
rules for two rows in Python; the SQL here applies them to a whole batch at once (group, pick,
decode) and to a batch against `calls` (MERGE_SET), so the set-based path, the few-call path and
rebuild's salvage agree.
"""

from __future__ import annotations

from collections.abc import Iterable

from indexer.columns import CALL_COLUMNS, decoded_calls
from indexer.parse import merge_calls
from schemas.records import CallRow

# The columns a merge may change (key and msg_hash are the identity; replay is MARK_REPLAYS' job).
MERGED_COLUMNS = tuple(c for c in CALL_COLUMNS if c not in ("key", "msg_hash"))
# Each column's rule, as parse.merge_calls applies it: the earliest row's value, the maximum (the
# usage counts, and costUSD where present), or a flag that ORs in or ANDs out.
FIRST_ROW = ("model", "session", "project", "branch", "version", "agent_id", "latency_ms", "error")
MAXIMA = ("input_tokens", "output_tokens", "cache_5m_tokens", "cache_1h_tokens", "cache_read_tokens", "web_searches")
ANY_ROW = ("failed", "fast")
ALL_ROWS = ("sidechain",)

_EARLIER = "(excluded.ts < calls.ts OR (excluded.ts = calls.ts AND excluded.session < calls.session))"
# The merge rules in SQL, for a row `excluded` meeting the stored row `calls`: ingest and rebuild's
# salvage both use them, so the order in which lines (or old and new indexes) meet never changes
# the result.
MERGE_SET = ",\n".join(
    [
        "ts = least(calls.ts, excluded.ts)",
        *(f"{c} = CASE WHEN {_EARLIER} THEN excluded.{c} ELSE calls.{c} END" for c in FIRST_ROW),
        *(f"{c} = greatest(calls.{c}, excluded.{c})" for c in (*MAXIMA, "cost_usd")),
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
            *(f"{old}.{c} > {new}.{c}" for c in MAXIMA),
            f"{old}.cost_usd > coalesce({new}.cost_usd, -1)",
            *(f"({old}.{c} AND NOT {new}.{c})" for c in ANY_ROW),
            *(f"({new}.{c} AND NOT {old}.{c})" for c in ALL_ROWS),
        ]
    )


_AGGREGATES = ", ".join(
    [
        *(f"max(b.{c}) AS {c}" for c in MAXIMA),
        "max(b.cost_usd) FILTER (NOT isnan(b.cost_usd)) AS cost_usd",  # NaN: no costUSD
        *(f"bool_or(b.{c}) AS {c}" for c in ANY_ROW),
        *(f"bool_and(b.{c}) AS {c}" for c in ALL_ROWS),
    ]
)
_AGGREGATED = ", ".join(
    [*(f"agg.{c} AS {c}" for c in (*MAXIMA, *ANY_ROW, *ALL_ROWS)), "coalesce(agg.cost_usd, 'NaN'::DOUBLE) AS cost_usd"]
)
# Rows of one call identity in the registered batch -> one, by the same rules: the aggregates, and
# the FIRST_ROW fields of the earliest row (by time, then session, then arrival as merge_batch
# does), picked once per key by row number (`rn`, arrival order). The work is on the numeric
# columns (session codes order as the names do); only the picked rows are decoded. Then merged
# into `calls` by MERGE_SET, as a hash join on the key column.
PICKED = f"""
    WITH agg AS (
        SELECT arg_min(b.rn, (b.ts_ms, b.session, b.rn)) AS rn, {_AGGREGATES}
        FROM batch_calls AS b
        GROUP BY b.key
    ),
    picked AS (SELECT b.* REPLACE ({_AGGREGATED}) FROM agg JOIN batch_calls AS b USING (rn))
    SELECT * FROM picked
"""


def decoded(relation: str) -> str:
    """The rows of `relation` (picked, still numeric) as `calls` rows."""
    return f"SELECT * EXCLUDE (ts_ms, rn), make_timestamp(ts_ms * 1000) AS ts FROM ({decoded_calls(relation)})"


MERGED_BATCH = decoded(f"({PICKED})")
MERGE_CALLS = f"""
MERGE INTO calls USING ({MERGED_BATCH}) AS excluded ON calls.key = excluded.key
WHEN MATCHED THEN UPDATE SET {MERGE_SET}
WHEN NOT MATCHED THEN INSERT BY NAME
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


def merge_batch(calls: Iterable[CallRow]) -> list[CallRow]:
    """Merge rows sharing a call identity, in Python: the few-call path (big batches merge in SQL)."""
    merged: dict[int, CallRow] = {}
    for row in calls:
        prev = merged.get(row.key)
        merged[row.key] = row if prev is None else merge_calls(prev, row)
    return list(merged.values())
