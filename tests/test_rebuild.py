"""`rebuild`: a fresh index from the transcripts plus the history only the old index still holds."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import index_held_elsewhere

from indexer.errors import IndexLocked
from indexer.ingest import sync
from indexer.rebuild import rebuild
from indexer.store import Index

RULES = Path(__file__).resolve().parent.parent / "fixtures" / "rules"


def rows(db: Path, sql: str = "SELECT * FROM calls ORDER BY key") -> list[tuple[object, ...]]:
    with Index(db) as index:
        return index.con.execute(sql).fetchall()


def test_rebuild_equals_a_sync_into_a_fresh_index(tmp_path: Path, samples_tree: Path) -> None:
    db = tmp_path / "index.duckdb"
    report = rebuild(db, [samples_tree / "projects"])
    assert report.salvaged_calls == 0 and report.salvage_error is None
    assert report.sync.call_lines == 45
    with Index(tmp_path / "plain.duckdb") as plain:
        sync(plain, [samples_tree / "projects"])
    assert rows(db) == rows(tmp_path / "plain.duckdb")


def test_a_rebuilt_index_has_its_prices_so_reading_it_writes_nothing(tmp_path: Path, samples_tree: Path) -> None:
    """Given the price book, rebuild stores every model's prices: the first report or status
    finds them current (a report can then open the index read-only) and the file does not grow."""
    from indexer.pricing import bundled, prices_current
    from indexer.status import index_status

    db = tmp_path / "index.duckdb"
    rebuild(db, [samples_tree / "projects"], book=bundled())
    size = db.stat().st_size
    with Index(db, read_only=True) as index:
        assert prices_current(index.con, bundled())
        models = {m for (m,) in index.con.execute("SELECT DISTINCT model FROM calls").fetchall()}
        assert {m for (m,) in index.con.execute("SELECT model FROM prices").fetchall()} == models
    with Index(db) as index:
        index_status(index, bundled())
    assert db.stat().st_size == size


@pytest.mark.parametrize("bound", ["COMMIT_CALLS", "DEFERRED_COMMIT_FILES"])
def test_rebuild_setting_calls_aside_equals_a_plain_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bound: str
) -> None:
    """A rebuild sets every commit's calls aside and inserts them at the end: with a commit after
    each file (the bound on call rows waiting, or on files), streamed duplicates, fork copies and
    sidechain replays across files merge and flag as in a plain sync, and are stored in time order."""
    import indexer.ingest as ingest
    import indexer.store as store

    tree = tmp_path / "tree" / "projects"
    for rule in ("duplicate_groups", "sidechain_replay", "fork_copy", "api_error", "cost_usd", "web_search"):
        shutil.copytree(RULES / rule / "projects", tree, dirs_exist_ok=True)
    with Index(tmp_path / "plain.duckdb") as plain:
        sync(plain, [tree])
    monkeypatch.setattr(ingest, bound, 1)
    commits: list[int] = []
    commit = store.Index.commit
    monkeypatch.setattr(
        store.Index, "commit", lambda self, reads, *a: commits.append(len(reads)) or commit(self, reads, *a)
    )
    report = rebuild(tmp_path / "index.duckdb", [tree], workers=1)
    assert report.sync.files_read > 3
    assert len(commits) == report.sync.files_read and set(commits) == {1}  # every file has calls
    files = 'SELECT path, size, "offset", tail_hash, lines, gone FROM files ORDER BY path'
    assert rows(tmp_path / "index.duckdb", files) == rows(tmp_path / "plain.duckdb", files)  # the last one's too
    assert rows(tmp_path / "index.duckdb") == rows(tmp_path / "plain.duckdb")
    assert rows(tmp_path / "index.duckdb", "SELECT count(*) FILTER (replay) FROM calls") == [(1,)]
    stored = [ts for (ts,) in rows(tmp_path / "index.duckdb", "SELECT ts FROM calls")]  # in storage order
    assert stored == sorted(stored)


def _indexed_then_subagent_deleted(tmp_path: Path, samples_tree: Path) -> tuple[Path, list[tuple[object, ...]], Path]:
    """The samples indexed, then Claude Code's 30-day cleanup deletes the subagent transcript (3
    calls): (index, its calls, the deleted file)."""
    db = tmp_path / "index.duckdb"
    with Index(db) as index:
        sync(index, [samples_tree / "projects"])
    (subagent,) = samples_tree.rglob("agent-aac57f5.jsonl")
    subagent.unlink()
    return db, rows(db), subagent


def test_calls_of_deleted_files_survive_rebuild(tmp_path: Path, samples_tree: Path) -> None:
    db, before, subagent = _indexed_then_subagent_deleted(tmp_path, samples_tree)
    report = rebuild(db, [samples_tree / "projects"])
    assert report.salvaged_calls == 3
    assert report.salvage_error is None
    assert rows(db) == before
    assert rows(db, "SELECT path, gone FROM files WHERE gone") == [(str(subagent), True)]
    # and again: salvage keeps them through any number of rebuilds
    assert rebuild(db, [samples_tree / "projects"]).salvaged_calls == 3
    assert rows(db) == before


def test_salvage_copies_no_row_this_version_would_reject(tmp_path: Path, samples_tree: Path) -> None:
    """Rows an older version stored from lines this one rejects (a count over 10^9, a time outside
    2000-2100) are not copied back, from any session; other rows only the old index has are."""
    db = tmp_path / "index.duckdb"
    (subagent,) = samples_tree.rglob("agent-aac57f5.jsonl")
    lost, whole = "ae4a77f8-aedd-4bc1-888f-c94edc91af04", "fed8ce56-bc79-401f-a83e-af084253362f"
    with Index(db) as index:
        sync(index, [samples_tree / "projects"])
        fresh = index.con.execute("SELECT count(*) FROM calls").fetchone()
        like = "INSERT INTO calls SELECT * REPLACE (? AS key, ? AS session, ? AS output_tokens, ?::TIMESTAMP AS ts) "
        for key, session, output, ts in [
            (1, whole, 5, "2026-01-01"),  # a line rewritten away in a file still on disk: history
            (2, lost, 5_000_000_000, "2026-01-01"),
            (3, lost, 5, "2026-01-01"),
            (4, whole, 5, "1900-01-01"),
        ]:
            index.con.execute(like + "FROM calls LIMIT 1", [key, session, output, ts])
    subagent.unlink()
    report = rebuild(db, [samples_tree / "projects"])
    assert report.salvaged_calls == 3 + 2  # the subagent's calls, and keys 1 and 3
    assert fresh is not None and rows(db, "SELECT count(*) FROM calls") == [(fresh[0] + 2,)]
    assert rows(db, "SELECT key FROM calls WHERE key IN (1, 2, 3, 4) ORDER BY key") == [(1,), (3,)]


def test_salvage_reads_a_cost_this_version_would_not_use_as_none(tmp_path: Path, samples_tree: Path) -> None:
    """An older version kept any costUSD >= 0; this one takes none over $10,000 (see parse.py), so
    a rebuild must not put $50,000,000 back into a call the transcripts still hold."""
    db = tmp_path / "index.duckdb"
    with Index(db) as index:
        sync(index, [samples_tree / "projects"])
        (key,) = index.con.execute("SELECT min(key) FROM calls").fetchone() or (None,)
        index.con.execute("UPDATE calls SET cost_usd = 5e7 WHERE key = ?", [key])
        index.con.execute(
            "INSERT INTO calls SELECT * REPLACE (1 AS key, 5e7 AS cost_usd) FROM calls WHERE key = ?", [key]
        )  # and one only the old index has
    rebuild(db, [samples_tree / "projects"])
    assert rows(db, "SELECT cost_usd FROM calls WHERE key = 1") == [(None,)]  # salvaged, without the cost
    assert rows(db, "SELECT count(*) FROM calls WHERE cost_usd > 10000") == [(0,)]


def test_calls_of_a_file_rewritten_in_place_survive_rebuild(tmp_path: Path) -> None:
    """Rewritten with the same first bytes and no shorter (a /rewind, then more turns): the index
    keeps the calls the old lines held, and so does a rebuild, though the file is whole on disk."""

    def call(n: int) -> bytes:
        message = {"id": f"m{n}", "model": "claude-opus-4-6", "usage": {"input_tokens": n}}
        ts = f"2026-01-01T00:00:{n:02d}.000Z"
        return orjson.dumps({"type": "assistant", "requestId": f"r{n}", "timestamp": ts, "message": message}) + b"\n"

    path = tmp_path / "projects" / "p" / "s.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(call(1) + call(2) + call(3))
    db = tmp_path / "index.duckdb"
    with Index(db) as index:
        sync(index, [tmp_path / "projects"])
    path.write_bytes(call(1) + call(12) + call(13) + call(14))
    with Index(db) as index:
        sync(index, [tmp_path / "projects"])
    expected = [(1,), (2,), (3,), (12,), (13,), (14,)]
    assert rows(db, "SELECT input_tokens FROM calls ORDER BY 1") == expected
    assert rebuild(db, [tmp_path / "projects"]).salvaged_calls == 2
    assert rows(db, "SELECT input_tokens FROM calls ORDER BY 1") == expected


def test_calls_of_files_rewritten_shorter_survive_rebuild(tmp_path: Path) -> None:
    tree = tmp_path / "claude"
    shutil.copytree(RULES / "duplicate_groups", tree)
    (path,) = tree.rglob("*.jsonl")
    db = tmp_path / "index.duckdb"
    with Index(db) as index:
        sync(index, [tree / "projects"])
    before = rows(db)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]))  # /rewind: only the first line of call A is left (out 1)
    report = rebuild(db, [tree / "projects"])
    assert report.salvaged_calls == 1  # call B
    assert rows(db) == before  # call A keeps its final output count (250) and first-line latency


def test_salvage_keeps_every_field_the_lost_lines_carried(tmp_path: Path) -> None:
    """Each call's later line adds one thing (a cache write, costUSD, web searches, fast mode) and is
    cut off by a rewrite; the main-chain copy of another call is deleted. The rebuilt rows keep what
    only the old index had, field by field (one field a call, so no other difference merges it)."""

    def line(msg: str, sec: int, usage: dict[str, object], **top: object) -> bytes:
        message = {"id": msg, "model": "claude-opus-4-6", "usage": {"input_tokens": 10, **usage}}
        ts = f"2026-01-01T00:00:{sec:02d}.000Z"
        return orjson.dumps({"type": "assistant", "requestId": f"r-{msg}", "timestamp": ts, "message": message, **top})

    adds: dict[str, tuple[dict[str, object], dict[str, object]]] = {
        "cache": ({"cache_creation_input_tokens": 500}, {}),
        "cost": ({}, {"costUSD": 0.5}),
        "web": ({"server_tool_use": {"web_search_requests": 2}}, {}),
        "fast": ({"speed": "fast"}, {}),
    }
    projects = tmp_path / "claude" / "projects"
    (projects / "-w").mkdir(parents=True)
    for n, (name, (usage, top)) in enumerate(adds.items()):
        first = line(name, 2 * n, {}) + b"\n"
        (projects / "-w" / f"{name}.jsonl").write_bytes(first + line(name, 2 * n + 1, usage, **top) + b"\n")
    # the sidechain copy is the earlier line: the call's time and session are the copy's, so only
    # the main-chain line (deleted below) says it is not a sidechain call
    (projects / "-w" / "main.jsonl").write_bytes(line("side", 21, {}, isSidechain=False) + b"\n")
    (projects / "-w" / "side.jsonl").write_bytes(line("side", 20, {}, isSidechain=True) + b"\n")
    db = tmp_path / "index.duckdb"
    query = "SELECT cache_5m_tokens, cost_usd, web_searches, fast, sidechain FROM calls ORDER BY ts"
    with Index(db) as index:
        sync(index, [projects])
    expected = [
        (500, None, 0, False, False),
        (0, 0.5, 0, False, False),
        (0, None, 2, False, False),
        (0, None, 0, True, False),
        (0, None, 0, False, False),  # a main-chain call: its sidechain copy does not make it one
    ]
    assert rows(db, query) == expected
    for name in adds:  # rewritten shorter: only each call's first line is left
        path = projects / "-w" / f"{name}.jsonl"
        path.write_bytes(path.read_bytes().splitlines(keepends=True)[0])
    (projects / "-w" / "main.jsonl").unlink()  # only the sidechain copy is left on disk
    report = rebuild(db, [projects])
    assert report.salvaged_calls == 0  # every call is on disk again, each with less than it had
    assert rows(db, query) == expected


def test_a_call_keeps_its_earliest_line_when_that_file_is_gone(tmp_path: Path) -> None:
    """Salvage merges an old row that holds something the transcripts lost (here the call's first
    line, in a deleted file) and leaves rows the transcripts gave again untouched."""

    def line(sec: int, out: int, cwd: str) -> bytes:
        usage = {"input_tokens": 1, "output_tokens": out}
        message = {"id": "m1", "model": "claude-sonnet-4-5", "usage": usage}
        ts = f"2026-01-01T00:00:0{sec}.000Z"
        return orjson.dumps({"type": "assistant", "cwd": cwd, "requestId": "r1", "timestamp": ts, "message": message})

    projects = tmp_path / "claude" / "projects"
    (projects / "-w").mkdir(parents=True)
    (projects / "-w" / "a.jsonl").write_bytes(line(1, 5, "/a") + b"\n")
    (projects / "-w" / "b.jsonl").write_bytes(line(5, 10, "/b") + b"\n")
    db = tmp_path / "index.duckdb"
    query = "SELECT ts, session, project, output_tokens FROM calls"
    rebuild(db, [projects])
    first = rows(db, query)
    assert [(r[1], r[2], r[3]) for r in first] == [("a", "/a", 10)]
    (projects / "-w" / "a.jsonl").unlink()
    report = rebuild(db, [projects])
    assert report.salvaged_calls == 0 and report.salvage_error is None  # merged, not added
    assert rows(db, query) == first


def test_rebuild_over_a_garbage_index_works_and_warns(tmp_path: Path, samples_tree: Path) -> None:
    db = tmp_path / "index.duckdb"
    db.write_bytes(b"\x00garbage" * 10_000)
    report = rebuild(db, [samples_tree / "projects"])
    assert report.salvaged_calls == 0
    assert report.salvage_error is not None and str(db) in report.salvage_error
    assert "cco index rebuild" not in report.salvage_error  # no advice to do what is being done
    with Index(tmp_path / "plain.duckdb") as plain:
        sync(plain, [samples_tree / "projects"])
    assert rows(db) == rows(tmp_path / "plain.duckdb")


def test_rebuild_over_damaged_blocks_works_and_warns(tmp_path: Path, samples_tree: Path) -> None:
    db = tmp_path / "index.duckdb"
    with Index(db) as index:
        sync(index, [samples_tree / "projects"])
    data = bytearray(db.read_bytes())
    data[3 * 4096 :] = bytes((i * 31 + 5) % 256 for i in range(len(data) - 3 * 4096))
    db.write_bytes(bytes(data))
    report = rebuild(db, [samples_tree / "projects"])
    assert report.salvage_error is not None
    assert report.salvaged_calls == 0
    with Index(tmp_path / "plain.duckdb") as plain:
        sync(plain, [samples_tree / "projects"])
    assert rows(db) == rows(tmp_path / "plain.duckdb")
    assert not list(tmp_path.glob("index.duckdb.rebuild-*"))


def damage_block_of(db: Path, table: str) -> None:
    """Overwrite the storage block holding `table`'s data (and only those bytes) with garbage."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    sql = f"SELECT DISTINCT block_id FROM pragma_storage_info('{table}') WHERE block_id >= 0"
    (block,) = [r[0] for r in con.execute(sql).fetchall()]
    (size,) = con.execute("SELECT block_size FROM pragma_database_size()").fetchall()[0]
    con.close()
    with db.open("r+b") as f:
        f.seek(3 * 4096 + block * size)  # three header blocks of 4 KiB, then the storage blocks
        f.write(bytes((i * 31 + 7) % 251 for i in range(size)))


def test_a_damaged_block_elsewhere_loses_no_readable_history(tmp_path: Path, samples_tree: Path) -> None:
    """Rebuild cannot open the old index for writing (its migrations table is damaged), yet its
    calls read: those the transcripts lost are salvaged, and the user is told the old one was damaged."""
    db = tmp_path / "index.duckdb"
    with Index(db) as index:
        sync(index, [samples_tree / "projects"])
    before = rows(db)
    damage_block_of(db, "migrations")
    (subagent,) = samples_tree.rglob("agent-aac57f5.jsonl")
    subagent.unlink()  # 3 calls only the old index holds now
    report = rebuild(db, [samples_tree / "projects"])
    assert report.old_damage is not None and str(db) in report.old_damage
    assert report.salvage_error is None and report.salvaged_calls == 3
    assert rows(db) == before


def test_a_damaged_calls_block_says_which_files_lost_history(tmp_path: Path, samples_tree: Path) -> None:
    db = tmp_path / "index.duckdb"
    with Index(db) as index:
        sync(index, [samples_tree / "projects"])
    damage_block_of(db, "calls")
    (subagent,) = samples_tree.rglob("agent-aac57f5.jsonl")
    subagent.unlink()
    report = rebuild(db, [samples_tree / "projects"])
    assert report.salvaged_calls == 0
    assert report.salvage_error is not None and "calls:" in report.salvage_error
    assert report.unsalvaged_files == 1  # the deleted subagent file, from the old index's readable files table


def test_no_other_process_writes_the_old_index_during_a_rebuild(tmp_path: Path, samples_tree: Path) -> None:
    """The old index is held until the new one replaces it: a sync started meanwhile is refused
    (its writes would be dropped), and the history only the old index has is kept."""
    from conftest import run_cco

    db = tmp_path / "index.duckdb"
    with Index(db) as index:
        sync(index, [samples_tree / "projects"])
    before = rows(db)
    (subagent,) = samples_tree.rglob("agent-aac57f5.jsonl")
    subagent.unlink()  # 3 calls only the old index holds now
    during: list[subprocess.CompletedProcess[str]] = []

    def meanwhile(_bytes: int) -> None:
        if not during:
            during.append(run_cco("index", "sync", "--source", str(samples_tree), "--db", str(db)))

    report = rebuild(db, [samples_tree / "projects"], progress=meanwhile)
    (other,) = during
    assert other.returncode == 2 and "is in use by process" in other.stderr
    assert report.salvaged_calls == 3 and report.salvage_error is None
    assert rows(db) == before


def test_rebuild_refuses_an_index_in_use(tmp_path: Path, samples_tree: Path) -> None:
    db = tmp_path / "index.duckdb"
    with Index(db) as index:
        sync(index, [samples_tree / "projects"])
    with index_held_elsewhere(db), pytest.raises(IndexLocked):
        rebuild(db, [samples_tree / "projects"])
    assert rows(db, "SELECT count(*) FROM calls") == [(15,)]


def test_leftovers_of_a_killed_rebuild_are_removed(tmp_path: Path, samples_tree: Path) -> None:
    db = tmp_path / "index.duckdb"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = [
        tmp_path / f"index.duckdb.rebuild-{dead.stdout.strip()}",
        tmp_path / f"index.duckdb.rebuild-{dead.stdout.strip()}.wal",
    ]
    for f in stale:
        f.write_bytes(b"half a database")
    rebuild(db, [samples_tree / "projects"])
    assert not any(f.exists() for f in stale)
    assert rows(db, "SELECT count(*) FROM calls") == [(15,)]


def _die(plans: object) -> None:
    """A parser task that kills its own worker process (as the OOM killer would)."""
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_parser_process_that_dies_leaves_the_old_index_as_it_was(
    tmp_path: Path, samples_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from indexer import ingest
    from indexer.errors import WorkerDied

    db = tmp_path / "index.duckdb"
    rebuild(db, [samples_tree / "projects"])
    before = rows(db)
    monkeypatch.setattr(ingest, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(ingest, "read_task", _die)  # pickled by reference: the workers import this module
    with pytest.raises(WorkerDied, match=f"{db} is unchanged: run the rebuild again"):
        rebuild(db, [samples_tree / "projects"], workers=2)
    assert rows(db) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("index")) == ["index.duckdb"]


def test_an_interrupted_rebuild_leaves_the_old_index_as_it_was(tmp_path: Path, samples_tree: Path) -> None:
    """Ctrl-C (the stopping event `cco index rebuild` sets) ends the rebuild before it replaces anything."""
    import threading

    from indexer.ingest import Stopped

    db, before, _ = _indexed_then_subagent_deleted(tmp_path, samples_tree)  # a rebuild would mark it gone
    stopping = threading.Event()
    stopping.set()
    with pytest.raises(Stopped):
        rebuild(db, [samples_tree / "projects"], stopping=stopping)
    assert rows(db) == before
    assert rows(db, "SELECT count(*) FROM files WHERE gone") == [(0,)]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("index.duckdb")) == ["index.duckdb"]
