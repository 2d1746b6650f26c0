"""A big pass by a writer process (indexer/staged.py): the same index as an in-process pass, each
batch's offsets with its rows, nothing left behind when the writer dies."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from indexer import ingest
from indexer.errors import WorkerDied
from indexer.ingest import plan, sync
from indexer.staged import PassFailed, remove_stale, staged_sync
from indexer.store import Index
from tests.conftest import FIXTURES

RULES = FIXTURES / "rules"
TABLES = {
    "calls": "SELECT * FROM calls ORDER BY key",
    "files": "SELECT * EXCLUDE (ingested_at) FROM files ORDER BY path",
    "rejects": 'SELECT * FROM rejects ORDER BY path, "offset"',
    "events": "SELECT * FROM events ORDER BY key",
}


def contents(index: Index) -> dict[str, list[tuple[Any, ...]]]:
    return {name: index.con.execute(sql).fetchall() for name, sql in TABLES.items()}


def rules_tree(root: Path, rules: tuple[str, ...]) -> Path:
    for rule in rules:
        shutil.copytree(RULES / rule / "projects", root, dirs_exist_ok=True)
    return root


def staged_pass(index: Index, roots: list[Path], **kwargs: Any) -> ingest.SyncReport:
    return staged_sync(index, plan(index, roots), **kwargs)


@pytest.mark.parametrize("planner", ["service", "writer"])
def test_a_staged_pass_stores_what_a_pass_in_this_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planner: str
) -> None:
    """Over an index that already holds calls: appends, a rewritten file whose old rejects must go,
    a fork copy and a sidechain replay across files and batches, a compaction event, rejected
    lines and a deleted file, with one batch per file read by parser processes; planned by the
    caller, or by the writer process from the file states the index exported."""
    tree = rules_tree(tmp_path / "projects", ("duplicate_groups", "bad_tokens", "nul_run"))
    shutil.copytree(FIXTURES / "service" / "projects", tree, dirs_exist_ok=True)  # holds a compaction
    plain, stager = Index(tmp_path / "plain.duckdb"), Index(tmp_path / "staged.duckdb")
    for index in (plain, stager):
        sync(index, [tree])
    assert contents(plain) == contents(stager)
    indexed = sorted(tree.rglob("*.jsonl"))
    # What changes before the next pass:
    rules_tree(tree, ("fork_copy", "sidechain_replay", "cost_usd", "api_error", "cache_1h"))  # new files
    rewritten = tree / "-home-u-rules" / "cccccccc-0000-4000-8000-000000000001.jsonl"  # bad_tokens': rejects
    rewritten.write_bytes(rewritten.read_bytes().splitlines(keepends=True)[-1])  # shorter: read again whole
    first = indexed[0]
    with first.open("ab") as f:
        f.write(first.read_bytes().splitlines(keepends=True)[0])  # an append (a repeated line)
    gone = next(p for p in indexed if p not in (first, rewritten))
    gone.unlink()
    monkeypatch.setattr(ingest, "PARALLEL_BYTES", 0)  # the writer's parsers read (ingest.settings)
    monkeypatch.setattr(ingest, "STAGED_COMMIT_CALLS", 1)  # a batch per file with calls
    monkeypatch.setattr(ingest, "TASK_BYTES", 1)  # a parser task per file
    try:
        expected = sync(plain, [tree])
        progressed: list[int] = []
        batches: list[tuple[set[str], int]] = []  # each batch's tables, and the files counted when it came
        helpers: list[list[int]] = []
        planned: list[tuple[int, int]] = []
        real = stager.commit_staged

        def commit_staged(parts: dict[str, Path]) -> None:
            batches.append((set(parts), len(progressed)))
            assert all(p.exists() for p in parts.values())
            real(parts)

        stager.commit_staged = commit_staged  # type: ignore[method-assign]
        report = staged_sync(
            stager,
            plan(stager, [tree]) if planner == "service" else None,
            roots=[tree],
            progress=progressed.append,
            helpers=helpers.append,
            planned=lambda files, nbytes: planned.append((files, nbytes)),
        )
        assert report == dataclasses.replace(expected, seconds=report.seconds)
        assert contents(stager) == contents(plain)
        got = contents(stager)
        assert (str(gone), True) in [(r[0], r[-1]) for r in got["files"]]
        assert {r[0] for r in got["rejects"]} and str(rewritten) not in {r[0] for r in got["rejects"]}
        assert got["events"]
        assert stager.con.execute("SELECT count(*) FILTER (replay) FROM calls").fetchone() == (1,)
        assert planned == ([] if planner == "service" else [(report.files_read, report.bytes_read)])
        # The deleted transcript comes first, in a batch of its own. Then every file read is counted
        # before the batch holding it is merged; one batch per file with calls.
        assert len(progressed) == report.files_read and sum(progressed) == report.bytes_read
        assert batches[0] == ({"gone"}, 0)
        counts = [counted for _, counted in batches[1:]]
        assert len(counts) >= 4 and all(counted >= i + 1 for i, counted in enumerate(counts))
        assert len(helpers) == 1 and len(helpers[0]) == 1 + (os.cpu_count() or 2)  # the writer, its parsers
        assert not list(tmp_path.glob("*.pass-*"))  # its staging folder is removed
        if sys.platform == "linux":  # nor does multiprocessing's resource tracker stay (13 MB)
            assert not children(b"resource_tracker")
    finally:
        plain.close()
        stager.close()


def children(fragment: bytes) -> list[int]:
    """This process's children whose command line holds `fragment` (Linux: /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ours = int(stat.read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
            if ours and fragment in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
    return found


def test_a_killed_writer_fails_the_pass_and_the_next_pass_reads_it_all(
    tmp_path: Path, parser_gate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = rules_tree(tmp_path / "projects", ("duplicate_groups", "fork_copy", "sidechain_replay"))
    with Index(tmp_path / "plain.duckdb") as plain:
        sync(plain, [tree])  # read here: no parser, no gate
        expected = contents(plain)
    monkeypatch.setattr(ingest, "PARALLEL_BYTES", 0)  # the writer's parsers read, and wait at the gate
    with Index(tmp_path / "index.duckdb") as index:
        # Killed once its parsers run (they wait at the gate): nothing was merged, nothing is left.
        with pytest.raises(WorkerDied, match="writer process ended"):
            staged_pass(index, [tree], helpers=lambda pids: os.kill(pids[0], 9))
        assert index.con.execute("SELECT count(*) FROM files").fetchone() == (0,)
        assert not list(tmp_path.glob("*.pass-*"))
        parser_gate.touch()
        staged_pass(index, [tree])
        assert contents(index) == expected


def test_a_failure_in_the_writer_is_raised_here_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = rules_tree(tmp_path / "projects", ("duplicate_groups",))
    monkeypatch.setattr(ingest, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(ingest, "read_task", failing_read_task)
    with Index(tmp_path / "index.duckdb") as index, pytest.raises(PassFailed) as failed:
        staged_pass(index, [tree])
    assert str(failed.value) == "the pass's writer process failed: RuntimeError: a parser failed"
    assert not list(tmp_path.glob("*.pass-*"))


def failing_read_task(plans: list[Any]) -> Any:
    """A parser task that fails (a bug, say): the writer process ends the pass."""
    raise RuntimeError("a parser failed\nwith a second line")


def test_stale_staging_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    db = tmp_path / "index.duckdb"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"index.duckdb.pass-{ended.stdout.strip()}-x"
    alive = tmp_path / f"index.duckdb.pass-{os.getpid()}-y"
    other = tmp_path / f"other.duckdb.pass-{ended.stdout.strip()}-z"
    for folder in (dead, alive, other):
        folder.mkdir()
        (folder / "1-calls.parquet").write_bytes(b"")
    remove_stale(db)
    assert not dead.exists() and alive.exists() and other.exists()
