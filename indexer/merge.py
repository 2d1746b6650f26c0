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
# The counts that take their maximum.
USAGE_SQL_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_5m_tokens",
    "cache_1h_tokens",
    "cache_read_tokens",
    "web_searches",
)

_EARLIER = "(excluded.ts < calls.ts OR (excluded.ts = calls.ts AND excluded.session < calls.session))"
# The merge rules of parse.merge_calls, in SQL: ingest and rebuild's salvage both use them, so the
# order in which lines (or old and new indexes) meet never changes the result.
MERGE_SET = f"""
    ts = least(calls.ts, excluded.ts),
    model = CASE WHEN {_EARLIER} THEN excluded.model ELSE calls.model END,
    session = CASE WHEN {_EARLIER} THEN excluded.session ELSE calls.session END,
    project = CASE WHEN {_EARLIER} THEN excluded.project ELSE calls.project END,
    branch = CASE WHEN {_EARLIER} THEN excluded.branch ELSE calls.branch END,
    version = CASE WHEN {_EARLIER} THEN excluded.version ELSE calls.version END,
    agent_id = CASE WHEN {_EARLIER} THEN excluded.agent_id ELSE calls.agent_id END,
    sidechain = calls.sidechain AND excluded.sidechain,
    failed = calls.failed OR excluded.failed,
    input_tokens = greatest(calls.input_tokens, excluded.input_tokens),
    output_tokens = greatest(calls.output_tokens, excluded.output_tokens),
    cache_5m_tokens = greatest(calls.cache_5m_tokens, excluded.cache_5m_tokens),
    cache_1h_tokens = greatest(calls.cache_1h_tokens, excluded.cache_1h_tokens),
    cache_read_tokens = greatest(calls.cache_read_tokens, excluded.cache_read_tokens),
    web_searches = greatest(calls.web_searches, excluded.web_searches),
    fast = calls.fast OR excluded.fast,
    cost_usd = greatest(calls.cost_usd, excluded.cost_usd),
    latency_ms = CASE WHEN {_EARLIER} THEN excluded.latency_ms ELSE calls.latency_ms END,
    error = CASE WHEN {_EARLIER} THEN excluded.error ELSE calls.error END
"""
# Rows of one call identity in the registered batch -> one, by the rules of parse.merge_calls:
# usage maxima, and the descriptive fields of the earliest row (by time, then session, then
# arrival as merge_batch does), picked once per key by row number (`rn`, arrival order). The work
# is on the numeric columns (session codes order as the names do); only the picked rows are
# decoded. Then merged into `calls` the same way (MERGE_SET), as a hash join on the key column.
PICKED = """
    WITH agg AS (
        SELECT arg_min(b.rn, (b.ts_ms, b.session, b.rn)) AS rn, bool_and(b.sidechain) AS sidechain,
               bool_or(b.failed) AS failed, max(b.input_tokens) AS input_tokens,
               max(b.output_tokens) AS output_tokens, max(b.cache_5m_tokens) AS cache_5m_tokens,
               max(b.cache_1h_tokens) AS cache_1h_tokens, max(b.cache_read_tokens) AS cache_read_tokens,
               max(b.web_searches) AS web_searches, bool_or(b.fast) AS fast,
               max(b.cost_usd) FILTER (NOT isnan(b.cost_usd)) AS cost_usd
        FROM batch_calls AS b
        GROUP BY b.key
    ),
    picked AS (
        SELECT b.* REPLACE (agg.sidechain AS sidechain, agg.failed AS failed, agg.input_tokens AS input_tokens,
                            agg.output_tokens AS output_tokens, agg.cache_5m_tokens AS cache_5m_tokens,
                            agg.cache_1h_tokens AS cache_1h_tokens, agg.cache_read_tokens AS cache_read_tokens,
                            agg.web_searches AS web_searches, agg.fast AS fast,
                            coalesce(agg.cost_usd, 'NaN'::DOUBLE) AS cost_usd)
        FROM agg JOIN batch_calls AS b USING (rn)
    )
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
