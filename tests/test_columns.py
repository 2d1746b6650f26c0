"""Call rows as column arrays: lossless, typed for DuckDB, cheap to pickle."""

from __future__ import annotations

import pickle

from indexer.columns import CALL_COLUMNS, CallColumns
from schemas.records import CallRow


def row(key: int, project: str, latency: int | None, cost: float | None) -> CallRow:
    return CallRow(
        key, key * 10, 1_767_225_600_000 + key, "claude-opus-4-6", "s", project, None, "2.1.0", None,
        False, key == 2, 1, 2, 3, 4, 5, 0, False, cost, latency, None,
    )  # fmt: skip


def back_to_rows(cols: CallColumns) -> list[CallRow]:
    arrays = [cols.arrays[name].tolist() for name in CALL_COLUMNS]
    return [CallRow(*values) for values in zip(*arrays, strict=True)]


def test_rows_survive_columns_concat_and_pickle() -> None:
    a = [row(1, "/p/a", 120, None), row(2, "/p/b", None, 0.25)]
    b = [row(3, "/p/a", 7, None)]
    cols = pickle.loads(pickle.dumps(CallColumns.concat([CallColumns.from_rows(a), CallColumns.from_rows(b)])))
    assert len(cols) == 3
    assert back_to_rows(cols) == a + b
    assert cols.arrays["key"].dtype.name == "int64" and cols.arrays["failed"].dtype.name == "bool"
    assert len(CallColumns.concat([])) == 0


def test_repeated_strings_are_stored_once_in_a_pickle() -> None:
    rows = [row(i, "/home/someone/a/rather/long/project/path" + "x" * 200, None, None) for i in range(500)]
    rows = [r._replace(project="".join(r.project)) for r in rows]  # distinct str objects, equal values
    assert len({id(r.project) for r in rows}) == 500
    size = len(pickle.dumps(CallColumns.from_rows(rows)))
    assert size < 500 * 200  # the 240-character path is pickled once, not 500 times
