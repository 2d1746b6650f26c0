"""The merge rules: the numpy merge of a whole batch gives what parse.merge_calls gives row by row."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.columns import CallColumns
from indexer.merge import decoded, merge_batch, merged_columns
from schemas.records import CallRow


def call(
    key: int,
    sec: int,
    session: str,
    model: str,
    out: int,
    side: bool,
    failed: bool,
    latency: int | None,
    cost: float | None,
    error: str | None,
) -> CallRow:
    return CallRow(
        key, key * 7, 1_767_225_600_000 + sec * 1000, model, session, f"/p/{session}", None, "2.1.0", None,
        side, failed, 1, out, 0, 0, 5, 0, False, cost, latency, error,
    )  # fmt: skip


_ROWS = st.lists(
    st.builds(
        call,
        st.sampled_from([1, 2, 3]),  # call identity
        st.integers(0, 3),  # seconds: ties are common
        st.sampled_from(["s-a", "s-b", "s-ä"]),
        st.sampled_from(["claude-opus-4-6", "claude-sonnet-4-5"]),
        st.integers(0, 500),
        st.booleans(),
        st.booleans(),
        st.none() | st.integers(0, 10_000),
        st.none() | st.floats(0, 5, allow_nan=False),
        st.none() | st.sampled_from(["API Error: 500", "API Error: 529"]),
    ),
    min_size=1,
    max_size=12,
)


def stored(batch: CallColumns) -> list[CallRow]:
    """The rows `batch` becomes in `calls` (decoded in SQL, as the store does), by key."""
    con = duckdb.connect()
    con.register("batch_calls", batch.arrays)
    names = ", ".join("epoch_ms(ts)" if f == "ts_ms" else f for f in CallRow._fields)
    sql = f"SELECT {names} FROM ({decoded('batch_calls')}) ORDER BY key"
    return [CallRow(*r) for r in con.execute(sql, [batch.vocab]).fetchall()]


def column_merge(rows: list[CallRow]) -> list[CallRow]:
    return stored(merged_columns(CallColumns.from_rows(rows)))


@settings(max_examples=60, deadline=None)
@given(_ROWS)
def test_the_batch_merge_equals_merge_calls(rows: list[CallRow]) -> None:
    """Usage maxima, earliest time, and the descriptive fields of the earliest row (by time, then
    session name in code point order, then arrival) in both."""
    assert column_merge(rows) == sorted(merge_batch(rows), key=lambda r: r.key)


@settings(max_examples=40, deadline=None)
@given(_ROWS, _ROWS)
def test_merging_merged_batches_equals_merging_all_rows(first: list[CallRow], second: list[CallRow]) -> None:
    """Workers merge their own batches and the writer merges the batches again: same result."""
    parts = [merged_columns(CallColumns.from_rows(first)), merged_columns(CallColumns.from_rows(second))]
    twice = stored(merged_columns(CallColumns.concat(parts)))
    assert twice == column_merge(first + second)


def test_every_merged_column_has_exactly_one_rule() -> None:
    """A column added to calls must be given a rule, or MERGE_SET and the batch pick would drop it."""
    from indexer.merge import ALL_ROWS, ANY_ROW, FIRST_ROW, MAXIMA, MERGED_COLUMNS

    ruled = ["ts_ms", "cost_usd", *FIRST_ROW, *MAXIMA, *ANY_ROW, *ALL_ROWS]
    assert sorted(ruled) == sorted(MERGED_COLUMNS)
