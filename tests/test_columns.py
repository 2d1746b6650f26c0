"""Call rows as column arrays: lossless, typed for DuckDB, cheap to pickle."""

from __future__ import annotations

import pickle

import duckdb
import numpy as np
import pytest

from indexer import columns
from indexer.columns import CALL_COLUMNS, CallColumns, decoded_calls
from indexer.merge import merged_columns
from indexer.tail import ReadPlan, read_plan
from schemas.records import CallRow
from tests.conftest import FIXTURES


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


def fixture_rows() -> list[CallRow]:
    """Every call row the fixtures' transcripts hold (as parsed, before merging)."""
    rows: list[CallRow] = []
    for path in sorted(FIXTURES.rglob("*.jsonl")):
        got = read_plan(ReadPlan(str(path), 0, True, None, path.stat().st_size))
        assert got is not None
        rows += got.parsed.calls
    return rows


def python_columns(rows: list[CallRow], monkeypatch: pytest.MonkeyPatch) -> CallColumns:
    with monkeypatch.context() as m:
        m.setattr(columns, "use_compiled", False)
        return CallColumns.from_rows(rows)


def same(a: CallColumns, b: CallColumns) -> bool:
    return a.vocab == b.vocab and all(
        a.arrays[c].dtype == b.arrays[c].dtype and np.array_equal(a.arrays[c], b.arrays[c], equal_nan=True)
        for c in CALL_COLUMNS
    )


@pytest.mark.skipif(columns._scan is None, reason="the compiled sink is not built (no C compiler)")
def test_the_compiled_sink_gives_the_python_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """On every fixture row (errors, agents, costUSD, missing latencies, non-ASCII), and on rows whose
    optional fields are all missing or all present."""
    rows = fixture_rows()
    assert len(rows) > 100 and {r.error is None for r in rows} == {True, False}
    extremes = [
        row(1, "/p", None, None)._replace(key=-(2**63), msg_hash=2**63 - 1, branch="é", agent_id="🚀", version=None),
        row(2, "", 0, 1e-9)._replace(key=2**63 - 1, msg_hash=0, model="", session="é", fast=True, sidechain=True),
    ]
    for sample in (rows, extremes, rows[:1]):
        compiled = CallColumns.from_rows(sample)
        assert same(compiled, python_columns(sample, monkeypatch))
        assert back_to_rows(compiled) == sample


@pytest.mark.skipif(columns._scan is None, reason="the compiled sink is not built (no C compiler)")
def test_a_parser_task_writes_the_columns_its_rows_make(monkeypatch: pytest.MonkeyPatch) -> None:
    """worker.read_task reads every fixture into one sink, the scanner writing its calls straight
    into columns and parse.py appending the lines it decides: the same columns, and per file the
    same count of call lines, as rows read into lists and transposed by the reference."""
    from indexer.worker import read_task

    paths = sorted(FIXTURES.rglob("*.jsonl"))
    plans = [ReadPlan(str(p), 0, True, None, p.stat().st_size) for p in paths]
    reads, got = read_task(plans)
    rows = [read_plan(p) for p in plans]
    assert reads.call_lines == sum(len(r.parsed.calls) for r in rows if r is not None) > 100
    with monkeypatch.context() as m:
        m.setattr(columns, "use_compiled", False)
        assert read_task(plans)[0] == reads
        assert got is not None and same(got, merged_columns(python_columns(fixture_rows(), m)))


def test_a_field_the_compiled_sink_does_not_take_is_transposed_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A float where a count belongs (parse.py never makes one) gives what numpy's conversion gives."""
    rows = [row(1, "/p/a", 3, None), row(2, "/p/b", None, None)._replace(input_tokens=2.0)]  # type: ignore[arg-type]
    got = CallColumns.from_rows(rows)
    assert same(got, python_columns(rows, monkeypatch))
    assert got.arrays["input_tokens"].tolist() == [1, 2]
