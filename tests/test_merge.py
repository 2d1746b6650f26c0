"""The merge rules: the numpy merge of a whole batch gives what parse.merge_calls gives row by row."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.columns import CallColumns
from indexer.merge import decoded, merge_batch, merged_columns
from indexer.parse import merge_calls
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
    cache: tuple[int, int] = (0, 0),
) -> CallRow:
    return CallRow(
        key, key * 7, 1_767_225_600_000 + sec * 1000, model, session, f"/p/{session}", None, "2.1.0", None,
        side, failed, 1, out, cache[0], cache[1], 5, 0, False, cost, latency, error,
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
        st.tuples(st.integers(0, 1000), st.integers(0, 1000)),  # (5-minute, 1-hour) cache write
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


@settings(max_examples=60)
@given(_ROWS)
def test_the_batch_merge_equals_merge_calls(rows: list[CallRow]) -> None:
    """Usage maxima, earliest time, and the descriptive fields of the earliest row (by time, then
    session name in code point order, then arrival) in both."""
    assert column_merge(rows) == sorted(merge_batch(rows), key=lambda r: r.key)


@settings(max_examples=40)
@given(_ROWS, _ROWS)
def test_merging_merged_batches_equals_merging_all_rows(first: list[CallRow], second: list[CallRow]) -> None:
    """Workers merge their own batches and the writer merges the batches again: same result."""
    parts = [merged_columns(CallColumns.from_rows(first)), merged_columns(CallColumns.from_rows(second))]
    twice = stored(merged_columns(CallColumns.concat(parts)))
    assert twice == column_merge(first + second)


def test_every_merged_column_has_exactly_one_rule() -> None:
    """A column added to calls must be given a rule, or MERGE_SET and the batch pick would drop it."""
    from indexer.merge import ALL_ROWS, ANY_ROW, FIRST_ROW, MAXIMA, MERGED_COLUMNS

    ruled = ["ts_ms", "cost_usd", "cache_5m_tokens", *FIRST_ROW, *MAXIMA, *ANY_ROW, *ALL_ROWS]
    assert sorted(ruled) == sorted(MERGED_COLUMNS)


def test_a_cache_write_split_differently_by_two_lines_is_not_counted_twice() -> None:
    """One call, two lines: a total of 1000 without its split (5-minute then), and the same 1000 as 1-hour.

    Each usage field takes its maximum: the total 1000 and the 1-hour part 1000, so 0 at 5 minutes
    (not 1000 + 1000), in Python, in numpy and in the SQL that merges into `calls`.
    """
    from indexer.merge import MERGE_SET

    no_split = call(1, 0, "s-a", "claude-opus-4-6", 1, False, False, None, None, None, cache=(1000, 0))
    one_hour = call(1, 1, "s-a", "claude-opus-4-6", 2, False, False, None, None, None, cache=(0, 1000))
    want = no_split._replace(output_tokens=2, cache_5m_tokens=0, cache_1h_tokens=1000)
    assert merge_calls(no_split, one_hour) == merge_calls(one_hour, no_split) == want
    assert column_merge([no_split, one_hour]) == column_merge([one_hour, no_split]) == [want]
    for stored_row, incoming in ((no_split, one_hour), (one_hour, no_split)):
        con = duckdb.connect()
        con.register("first", CallColumns.from_rows([stored_row]).arrays)
        con.execute(f"CREATE TABLE calls AS {decoded('first')}", [CallColumns.from_rows([stored_row]).vocab])
        batch = CallColumns.from_rows([incoming])
        con.register("batch_calls", batch.arrays)
        con.execute(
            f"MERGE INTO calls USING ({decoded('batch_calls')}) AS excluded ON calls.key = excluded.key "
            f"WHEN MATCHED THEN UPDATE SET {MERGE_SET}",
            [batch.vocab],
        )
        got = con.execute("SELECT output_tokens, cache_5m_tokens, cache_1h_tokens FROM calls").fetchall()
        assert got == [(2, 0, 1000)]
