"""Call rows as column arrays: lossless, typed for DuckDB, cheap to pickle."""

from __future__ import annotations

import pickle

import duckdb

from indexer.columns import CallColumns, decoded_calls
from schemas.records import CallRow


def row(key: int, project: str, latency: int | None, cost: float | None) -> CallRow:
    return CallRow(
        key, key * 10, 1_767_225_600_000 + key, "claude-opus-4-6", "s", project, None, "2.1.0", None,
        False, key == 2, 1, 2, 3, 4, 5, 0, False, cost, latency, None,
    )  # fmt: skip


def back_to_rows(cols: CallColumns) -> list[CallRow]:
    """Decoded in SQL, as the store does."""
    con = duckdb.connect()
    con.register("batch_calls", cols.arrays)
    rows = con.execute(decoded_calls("batch_calls"), [cols.vocab]).fetchall()  # a projection: in order
    return [CallRow(*r) for r in rows]


def test_rows_survive_columns_concat_and_pickle() -> None:
    a = [row(1, "/p/a", 120, None), row(2, "/p/b", None, 0.25)._replace(error="API Error: 500", branch="main")]
    b = [row(3, "/p/a", 7, None)]
    cols = pickle.loads(pickle.dumps(CallColumns.concat([CallColumns.from_rows(a), CallColumns.from_rows(b)])))
    assert len(cols) == 3
    assert back_to_rows(cols) == a + b
    assert sorted(cols.vocab) == sorted({"claude-opus-4-6", "s", "/p/a", "/p/b", "2.1.0", "main", "API Error: 500"})
    assert {x.dtype.kind for x in cols.arrays.values()} <= {"i", "b", "f"}  # nothing DuckDB scans with the GIL
    assert back_to_rows(CallColumns.concat([])) == []


def test_repeated_strings_are_stored_once_in_a_pickle() -> None:
    rows = [row(i, "/home/someone/a/rather/long/project/path" + "x" * 200, None, None) for i in range(500)]
    rows = [r._replace(project="".join(r.project)) for r in rows]  # distinct str objects, equal values
    assert len({id(r.project) for r in rows}) == 500
    size = len(pickle.dumps(CallColumns.from_rows(rows)))
    assert size < 500 * 200  # the 240-character path is pickled once, not 500 times


def test_texts_decode_as_the_vocabulary_does() -> None:
    """The rebuild's insert (strings, no $1 lookups) reads the same rows as the codes do."""
    rows = [row(1, "/p/a", 120, None), row(2, "/p/b", None, 0.25)._replace(error="API Error: 500", agent_id="x")]
    cols = CallColumns.from_rows(rows)
    con = duckdb.connect()
    con.register("batch_calls", cols.texts())
    assert [CallRow(*r) for r in con.execute(decoded_calls("batch_calls", codes=False)).fetchall()] == rows
