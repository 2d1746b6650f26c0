"""The store: merge rules independent of read order, one writer at a time, damaged files reported in one line."""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import index_held_elsewhere
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.errors import IndexCorrupt, IndexLocked
from indexer.ingest import sync
from indexer.store import Index


def line(msg: str, req: str, sec: int, out: int, *, side: bool = False, cwd: str = "/w", err: str = "") -> bytes:
    obj: dict[str, object] = {
        "type": "assistant",
        "cwd": cwd,
        "isSidechain": side,
        "requestId": req,
        "timestamp": f"2026-01-01T00:00:{sec:02d}.000Z",
        "message": {
            "id": msg,
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": err or "x"}],
            "usage": {"input_tokens": 1, "output_tokens": out, "cache_read_input_tokens": sec},
        },
    }
    if err:
        obj["isApiErrorMessage"] = True
    return orjson.dumps(obj) + b"\n"


def calls_table(index: Index) -> list[tuple[object, ...]]:
    return index.con.execute("SELECT * FROM calls ORDER BY key").fetchall()


def test_replay_flag_follows_a_merge_into_the_main_chain(tmp_path: Path) -> None:
    """A sidechain replay whose identity later shows up on the main chain is a counted call again."""
    projects = tmp_path / "claude" / "projects"
    main = projects / "-w" / "s.jsonl"
    sub = projects / "-w" / "s" / "subagents" / "agent-a.jsonl"
    other = projects / "-w" / "t.jsonl"
    sub.parent.mkdir(parents=True)
    main.write_bytes(line("m", "r1", 1, 10))
    sub.write_bytes(line("m", "r2", 2, 10, side=True))
    with Index(tmp_path / "a.duckdb") as index:
        sync(index, [projects])
        assert index.con.execute("SELECT count(*) FROM calls WHERE replay").fetchone() == (1,)
        other.write_bytes(line("m", "r2", 3, 10))
        sync(index, [projects])
        incremental = calls_table(index)
    with Index(tmp_path / "b.duckdb") as index:
        sync(index, [projects])
        assert calls_table(index) == incremental
        assert index.con.execute("SELECT count(*) FROM calls WHERE replay").fetchone() == (0,)


_LINES = st.lists(
    st.tuples(
        st.sampled_from(["m1", "m2", "m3"]),  # message.id
        st.sampled_from(["r1", "r2"]),  # requestId
        st.integers(0, 59),  # second
        st.integers(0, 500),  # output tokens
        st.booleans(),  # sidechain
        st.sampled_from(["/a", "/b"]),  # cwd
        st.sampled_from(["", "", "API Error: 500", "API Error: 529"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=_LINES, order=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 12), max_size=3))
def test_merge_is_independent_of_read_order_and_batching(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[tuple[str, str, int, int, bool, str, str]],
    order: random.Random,
    cuts: list[int],
) -> None:
    """Lines of the same identities spread over files and syncs in any order give the same calls table."""
    tmp = tmp_path_factory.mktemp("merge")
    encoded = [line(m, r, s, o, side=sd, cwd=c, err=e) for m, r, s, o, sd, c, e in lines]

    def build(name: str, chunks: list[list[bytes]]) -> list[tuple[object, ...]]:
        projects = tmp / name / "projects"
        with Index(tmp / f"{name}.duckdb") as index:
            for i, chunk in enumerate(chunks):
                path = projects / "-w" / f"f{i % 3}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("ab") as f:
                    f.writelines(chunk)
                sync(index, [projects])
            return calls_table(index)

    shuffled = list(encoded)
    order.shuffle(shuffled)
    bounds = sorted({0, len(shuffled), *(min(c, len(shuffled)) for c in cuts)})
    chunks = [shuffled[a:b] for a, b in itertools.pairwise(bounds)]
    # Sessions come from file names, so "one pass" uses the same file for each line as the batched run.
    by_file: list[list[bytes]] = [[], [], []]
    for i, chunk in enumerate(chunks):
        by_file[i % 3] += chunk
    assert build("batched", chunks) == build("one_pass", by_file)


def test_second_writer_is_told_who_holds_the_index(tmp_path: Path) -> None:
    db = tmp_path / "index.duckdb"
    Index(db).close()
    with index_held_elsewhere(db) as pid:
        with pytest.raises(IndexLocked) as info:
            Index(db)
        message = str(info.value)
        assert f"process {pid}" in message
        assert str(db) in message
        assert "\n" not in message
    Index(db).close()  # free again once the holder is gone


def test_garbage_file_is_reported_as_corrupt(tmp_path: Path) -> None:
    db = tmp_path / "index.duckdb"
    db.write_bytes(b"this is not a database" * 1000)
    with pytest.raises(IndexCorrupt) as info:
        Index(db)
    assert "cco index rebuild" in str(info.value)
    assert str(db) in str(info.value)


def test_damaged_blocks_surface_as_corrupt_not_a_duckdb_error(tmp_path: Path, samples_tree: Path) -> None:
    db = tmp_path / "index.duckdb"
    with Index(db) as index:
        sync(index, [samples_tree / "projects"])
    damage_blocks(db)
    with pytest.raises(IndexCorrupt) as info, Index(db) as index:
        index.con.execute("SELECT sum(output_tokens) FROM calls").fetchall()
    assert "cco index rebuild" in str(info.value)


def damage_blocks(db: Path) -> None:
    """Overwrite everything after DuckDB's headers (the first 3 blocks) with garbage."""
    data = bytearray(db.read_bytes())
    start = 3 * 4096
    assert len(data) > start
    data[start:] = bytes((i * 7 + 13) % 256 for i in range(len(data) - start))
    db.write_bytes(bytes(data))


def files_table(index: Index) -> list[tuple[object, ...]]:
    return index.con.execute("SELECT * EXCLUDE (ingested_at) FROM files ORDER BY path").fetchall()


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=_LINES, order=st.randoms(use_true_random=False), cuts=st.lists(st.integers(0, 12), max_size=3))
def test_few_row_commit_equals_the_bulk_upsert(
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[tuple[str, str, int, int, bool, str, str]],
    order: random.Random,
    cuts: list[int],
) -> None:
    """The probe-and-update path for small batches stores exactly what the set-based upsert stores."""
    import indexer.store as store

    tmp = tmp_path_factory.mktemp("small")
    encoded = [line(m, r, s, o, side=sd, cwd=c, err=e) for m, r, s, o, sd, c, e in lines]
    order.shuffle(encoded)
    bounds = sorted({0, len(encoded), *(min(c, len(encoded)) for c in cuts)})
    chunks = [encoded[a:b] for a, b in itertools.pairwise(bounds)]

    few_writes: list[bool] = []  # what each store._write_few_calls answered (True: it wrote the calls)
    write_few = store.Index._write_few_calls

    def counted(self: Index, calls: Any) -> bool:
        few_writes.append(write_few(self, calls))
        return few_writes[-1]

    def build(name: str, small: int, updates: int) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        few_writes.clear()
        projects = tmp / name / "projects"
        saved = store.SMALL_BATCH, store.SMALL_UPDATES
        store.SMALL_BATCH, store.SMALL_UPDATES = small, updates
        store.Index._write_few_calls = counted  # type: ignore[method-assign]
        try:
            with Index(tmp / f"{name}.duckdb") as index:
                for i, chunk in enumerate(chunks):
                    path = projects / "-w" / f"f{i % 3}.jsonl"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with path.open("ab") as f:
                        f.writelines(chunk)
                    sync(index, [projects])
                    sync(index, [projects], only={str(path)})
                # Paths differ by the build's folder; inode and mtime by the file.
                files = [(str(r[0]).replace(str(projects), ""), *r[3:6], *r[7:]) for r in files_table(index)]
                return calls_table(index), files
        finally:
            store.SMALL_BATCH, store.SMALL_UPDATES = saved
            store.Index._write_few_calls = write_few  # type: ignore[method-assign]

    few = build("few", 64, 64)
    assert any(few_writes) or not encoded  # the probe-and-update path did the writing
    assert few == build("bulk", 0, 0)
    assert not few_writes  # ... and here the upsert did
    assert few == build("fallback", 64, 1)  # too many updates: falls back to the upsert


def test_cached_file_states_equal_the_table(tmp_path: Path) -> None:
    """The writer answers file states from memory after its commits; they must equal what is stored."""
    projects = tmp_path / "claude" / "projects"
    a, b = projects / "-w" / "a.jsonl", projects / "-w" / "b.jsonl"
    a.parent.mkdir(parents=True)
    a.write_bytes(line("m1", "r1", 1, 10))
    b.write_bytes(line("m2", "r1", 2, 10))
    with Index(tmp_path / "i.duckdb") as index:
        sync(index, [projects])
        assert set(index.file_states()) == {str(a), str(b)}  # now every row is cached
        with a.open("ab") as f:
            f.write(line("m3", "r1", 3, 10))
        sync(index, [projects], only={str(a)})
        b.unlink()
        sync(index, [projects])
        cached = index.file_states()
    with Index(tmp_path / "i.duckdb") as fresh:
        assert fresh.file_states() == cached
        assert cached[str(b)].gone and not cached[str(a)].gone and cached[str(a)].lines == 2
