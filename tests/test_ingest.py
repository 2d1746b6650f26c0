"""Counting rules end to end: fixtures/rules/* and the real samples through sync into a DuckDB file.

Every expected number here is the hand-computed one from fixtures/rules/README.md.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from indexer import ingest, worker
from indexer.errors import WorkerDied
from indexer.ingest import sync
from indexer.parse import hash64
from indexer.store import Index
from tests.live_helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "fixtures" / "rules"

# rule folder -> (lines, calls, failed, input, output, cache 5m, cache 1h, cache read, web searches, fast calls,
#                 sum of costUSD, replay rows, [(reject offset, reason)])
EXPECTED: dict[str, tuple[Any, ...]] = {
    "duplicate_groups": (7, 2, 0, 13, 255, 100, 0, 3000, 0, 0, None, 0, []),
    "fork_copy": (7, 2, 0, 9, 49, 50, 0, 1050, 0, 0, None, 0, []),
    "fork_copy_web_cost": (3, 1, 0, 20, 180, 0, 0, 0, 3, 0, 0.3, 0, []),
    "no_message_id": (2, 2, 0, 3, 17, 0, 0, 0, 0, 0, None, 0, []),
    "sidechain_replay": (5, 2, 0, 9, 38, 20, 0, 100, 0, 0, None, 1, []),
    "api_error": (5, 2, 1, 1, 2, 0, 0, 0, 0, 0, None, 0, []),
    "partial_last_line": (1, 1, 0, 1, 1, 0, 0, 0, 0, 0, None, 0, []),
    "spliced_line": (3, 1, 0, 5, 6, 0, 0, 0, 0, 0, None, 0, [
        (313, "invalid JSON (unexpected character, expected ':' after key)"),
    ]),
    "nul_run": (4, 2, 0, 4, 6, 0, 0, 0, 0, 0, None, 0, [(612, "NUL bytes in line"), (629, "NUL bytes in line")]),
    "cache_1h": (2, 2, 0, 3, 13, 1000, 2500, 400, 0, 0, None, 0, []),
    "web_search": (2, 1, 0, 20, 180, 0, 0, 0, 3, 0, None, 0, []),
    "fast_mode": (2, 2, 0, 12, 120, 0, 0, 0, 0, 1, None, 0, []),
    "cost_usd": (2, 2, 0, 110, 220, 0, 0, 0, 0, 0, 0.0123, 0, []),
    "bad_tokens": (6, 2, 0, 10, 3, 0, 0, 0, 0, 0, None, 0, [
        (0, "usage.input_tokens is null"),
        (529, "usage.output_tokens is not an integer"),
        (1058, "usage.cache_read_input_tokens is not an integer"),
        (1615, "usage.input_tokens is negative"),
    ]),
    "invalid_utf8": (2, 1, 0, 4, 4, 0, 0, 0, 0, 0, None, 0, [
        (0, "invalid JSON (str is not valid UTF-8: surrogates not allowed)"),
    ]),
    "non_object": (5, 1, 0, 1, 1, 0, 0, 0, 0, 0, None, 0, [
        (0, "line is not a JSON object"), (16, "line is not a JSON object"),
        (24, "line is not a JSON object"), (27, "line is not a JSON object"),
    ]),
    "deep_nesting": (3, 1, 0, 9, 9, 0, 0, 0, 0, 0, None, 0, [
        (0, "invalid JSON (depth limit exceeded)"), (4042, "invalid JSON (depth limit exceeded)"),
    ]),
    "u2028": (2, 1, 0, 11, 22, 0, 0, 0, 0, 0, None, 0, []),
}  # fmt: skip

# Hand-computed totals of the real samples (fixtures/rules/README.md, "The real samples").
SAMPLES_TOTALS = {
    "calls": 15,
    "failed": 0,
    "input": 2558,
    "output": 1666,
    "cache_5m": 79835 - 17696,
    "cache_1h": 17696,
    "cache_read": 601758,
    "lines": 156,
    "call_lines": 45,
}


def totals(index: Index) -> tuple[Any, ...]:
    """The counted totals (replays excluded), in EXPECTED's order, from the calls table itself."""
    row = index.con.execute(
        """
        SELECT count(*) FILTER (WHERE NOT replay), count(*) FILTER (WHERE failed AND NOT replay),
            coalesce(sum(input_tokens) FILTER (WHERE NOT replay), 0),
            coalesce(sum(output_tokens) FILTER (WHERE NOT replay), 0),
            coalesce(sum(cache_5m_tokens) FILTER (WHERE NOT replay), 0),
            coalesce(sum(cache_1h_tokens) FILTER (WHERE NOT replay), 0),
            coalesce(sum(cache_read_tokens) FILTER (WHERE NOT replay), 0),
            coalesce(sum(web_searches) FILTER (WHERE NOT replay), 0),
            count(*) FILTER (WHERE fast AND NOT replay),
            sum(cost_usd) FILTER (WHERE NOT replay),
            count(*) FILTER (WHERE replay)
        FROM calls
        """
    ).fetchone()
    assert row is not None
    lines = index.con.execute("SELECT coalesce(sum(lines), 0) FROM files").fetchone()
    assert lines is not None
    rejects = index.con.execute('SELECT "offset", reason FROM rejects ORDER BY "offset"').fetchall()
    return (int(lines[0]), *(int(v) if isinstance(v, int) else v for v in row), rejects)


def index_of(tmp_path: Path, *roots: Path) -> Index:
    index = Index(tmp_path / "index.duckdb")
    sync(index, [r / "projects" for r in roots])
    return index


WRITE_PATHS = ("few", "bulk", "file_by_file", "rebuild")


@pytest.mark.parametrize("path", WRITE_PATHS)
@pytest.mark.parametrize("rule", sorted(EXPECTED))
def test_rule_fixture_totals(tmp_path: Path, rule: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each rule's hand-checked totals, by every way calls reach the index: a few calls probed and
    inserted one by one (store._write_few_calls), the set-based SQL merge (store._merge_batch), the
    merge across commits (each file its own pass: a fork copy meets a stored row), and a rebuild's
    deferred insert."""
    from indexer import store
    from indexer.rebuild import rebuild

    root = RULES / rule / "projects"
    db = tmp_path / "index.duckdb"
    if path != "few":
        monkeypatch.setattr(store, "SMALL_BATCH", 0)
    if path == "rebuild":
        rebuild(db, [root])
    with Index(db) as index:
        if path in ("few", "bulk"):
            sync(index, [root])
        elif path == "file_by_file":
            for f in sorted(str(p) for p in root.rglob("*.jsonl")):
                sync(index, [root], only={f})
        assert totals(index) == (*EXPECTED[rule][:-1], [tuple(r) for r in EXPECTED[rule][-1]])


def test_every_rule_folder_has_expectations() -> None:
    assert sorted(p.name for p in RULES.iterdir() if p.is_dir()) == sorted(EXPECTED)


def test_all_rules_together_sum_up(tmp_path: Path) -> None:
    with index_of(tmp_path, *(RULES / r for r in EXPECTED)) as index:
        got = totals(index)
    want = [sum(e[i] for e in EXPECTED.values()) for i in range(10)]
    assert list(got[:10]) == want == [63, 28, 1, 245, 1126, 1170, 2500, 4550, 6, 1]
    assert got[10] == pytest.approx(0.0123 + 0.3)
    assert got[11] == 1
    assert len(got[12]) == 14


def test_resync_is_exactly_once(tmp_path: Path) -> None:
    with index_of(tmp_path, *(RULES / r for r in EXPECTED)) as index:
        before = totals(index)
        rows = index.con.execute("SELECT * FROM calls ORDER BY key").fetchall()
        again = sync(index, [RULES / r / "projects" for r in EXPECTED])
        assert (again.files_read, again.bytes_read, again.call_lines) == (0, 0, 0)
        assert totals(index) == before
        assert index.con.execute("SELECT * FROM calls ORDER BY key").fetchall() == rows


def test_call_metadata(tmp_path: Path) -> None:
    """Session, project, agent, latency and error of the rule fixtures' calls."""
    with index_of(tmp_path, RULES / "duplicate_groups", RULES / "sidechain_replay", RULES / "api_error") as index:
        rows = index.con.execute(
            "SELECT session, project, agent_id, sidechain, replay, failed, model, latency_ms, error, branch, version "
            "FROM calls ORDER BY ts"
        ).fetchall()
    dup = "11111111-0000-4000-8000-000000000001"
    side = "33333333-0000-4000-8000-000000000001"
    err = "44444444-0000-4000-8000-000000000001"
    sonnet, opus = "claude-sonnet-4-5-20250929", "claude-opus-4-6"
    common = ("main", "2.1.39")
    assert rows == [
        (dup, "/home/u/rules", None, False, False, False, sonnet, 2000, None, *common),  # to A's first line
        (dup, "/home/u/rules", None, False, False, False, sonnet, 2000, None, *common),
        (side, "/home/u/rules", None, False, False, False, opus, 1000, None, *common),
        (side, "/home/u/rules", "r1", True, True, False, opus, 1000, None, *common),
        (side, "/home/u/rules", "r1", True, False, False, sonnet, 2000, None, *common),
        (err, "/home/u/rules", None, False, False, True, "<synthetic>", 1000, rows[5][8], *common),
        (err, "/home/u/rules", None, False, False, False, sonnet, 2000, None, *common),
    ]
    assert rows[5][8].startswith("API Error: 529")


def test_fork_copy_keeps_the_original_session(tmp_path: Path) -> None:
    with index_of(tmp_path, RULES / "fork_copy") as index:
        rows = index.con.execute("SELECT session, output_tokens FROM calls ORDER BY ts").fetchall()
    assert rows == [("22222222-0000-4000-8000-000000000001", 40), ("22222222-0000-4000-8000-000000000002", 9)]


def test_a_compaction_copied_into_a_resumed_session_is_one_event_whatever_the_read_order(tmp_path: Path) -> None:
    """A resumed session's file copies the compaction line (same uuid): one event, in the session
    whose name sorts first (as calls break ties), whether the copies meet in one batch or not."""
    line = (
        b'{"type":"system","subtype":"compact_boundary","cwd":"/w/p","timestamp":"2026-03-01T11:45:00.000Z",'
        b'"uuid":"00000000-0000-4000-8000-00000000000c","compactMetadata":{"trigger":"auto","preTokens":9}}\n'
    )
    folder = tmp_path / "claude" / "projects" / "-w-p"
    folder.mkdir(parents=True)
    paths = [str(folder / f"{name}.jsonl") for name in ("s-b", "s-a")]
    for path in paths:
        Path(path).write_bytes(line)
    roots = [tmp_path / "claude" / "projects"]
    for n, order in enumerate(([paths], [paths[:1], paths[1:]], [paths[1:], paths[:1]])):
        with Index(tmp_path / f"index{n}.duckdb") as index:
            for only in order:
                sync(index, roots, only=set(only))
            assert index.con.execute("SELECT session, detail FROM events").fetchall() == [
                ("s-a", '{"trigger":"auto","preTokens":9}')
            ]


def test_partial_last_line_counts_once_its_newline_arrives(tmp_path: Path) -> None:
    tree = tmp_path / "claude"
    shutil.copytree(RULES / "partial_last_line", tree)
    (path,) = (tree / "projects").rglob("*.jsonl")
    with index_of(tmp_path, tree) as index:
        assert totals(index)[1:5] == (1, 0, 1, 1)
        assert index.con.execute('SELECT "offset" FROM files').fetchone() == (612,)
        with path.open("ab") as f:
            f.write(b"\n")
        report = sync(index, [tree / "projects"])
        assert report.bytes_read == path.stat().st_size - 612
        assert totals(index)[:5] == (2, 2, 0, 101, 101)


def test_samples_totals(tmp_path: Path, samples_tree: Path) -> None:
    with Index(tmp_path / "index.duckdb") as index:
        report = sync(index, [samples_tree / "projects"])
        got = totals(index)
        subagent = index.con.execute(
            "SELECT DISTINCT session, agent_id, project FROM calls WHERE sidechain ORDER BY 1"
        ).fetchall()
    assert report.call_lines == SAMPLES_TOTALS["call_lines"]
    assert report.rejected == 0
    t = SAMPLES_TOTALS
    assert got == (
        t["lines"], t["calls"], t["failed"], t["input"], t["output"], t["cache_5m"], t["cache_1h"],
        t["cache_read"], 0, 0, None, 0, [],
    )  # fmt: skip
    assert subagent == [
        ("ae4a77f8-aedd-4bc1-888f-c94edc91af04", "aac57f5", "/home/USER/projects/spotter-worktrees/spotter-4te")
    ]


def test_worker_processes_give_the_same_rows(
    tmp_path: Path, samples_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_workers: list[bool] = []  # per chunk: parsed by worker.read_task (it hands calls over as columns)
    results = ingest.start_reading

    def spy(*args: Any, **kwargs: Any) -> Any:
        for chunk in results(*args, **kwargs):
            in_workers.append(chunk[1] is not None)
            yield chunk

    monkeypatch.setattr(ingest, "start_reading", spy)
    with Index(tmp_path / "a.duckdb") as a, Index(tmp_path / "b.duckdb") as b:
        sync(a, [samples_tree / "projects"], workers=1)
        assert in_workers and not any(in_workers)
        in_workers.clear()
        monkeypatch.setattr(ingest, "PARALLEL_BYTES", 0)
        monkeypatch.setattr(ingest, "TASK_FILES", 1)  # a task, and a part of columns, per file ...
        monkeypatch.setattr(ingest, "JOIN_PARTS", 2)  # ... joined as they come
        sync(b, [samples_tree / "projects"], workers=2)
        assert in_workers == [True] * 4  # the worker processes ran, not the in-process path
        q = "SELECT * FROM calls ORDER BY key"
        assert a.con.execute(q).fetchall() == b.con.execute(q).fetchall()


def _die(plans: Any) -> None:
    """A parser task that kills its own worker process (as the OOM killer would)."""
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_parser_process_that_dies_fails_the_pass_and_loses_nothing(
    tmp_path: Path, samples_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """multiprocessing.Pool loses a dead worker's task and would wait for it forever, holding the
    index: the pass fails with WorkerDied instead, and the next pass reads everything."""
    from indexer.errors import WorkerDied

    monkeypatch.setattr(ingest, "PARALLEL_BYTES", 0)
    with Index(tmp_path / "i.duckdb") as index:
        monkeypatch.setattr(ingest, "read_task", _die)  # pickled by reference: the workers import this module
        with pytest.raises(WorkerDied, match="a parser process ended in the middle of the pass"):
            sync(index, [samples_tree / "projects"], workers=2)
        assert index.con.execute("SELECT count(*) FROM calls").fetchone() == (0,)
        monkeypatch.setattr(ingest, "read_task", worker.read_task)
        report = sync(index, [samples_tree / "projects"], workers=2)
        assert report.files_read == 4 and report.call_lines == 45
        assert index.con.execute("SELECT count(*) FROM calls").fetchone() == (15,)


def _die_while_sending(size: int) -> bytes:
    """A parser task whose worker is killed halfway through sending its result back: the pipe then
    holds the start of a message whose rest never comes."""
    import multiprocessing.connection

    def send(self: Any, buf: Any, write: Any = os.write) -> None:
        if len(buf) < size:
            return real(self, buf)
        write(self._handle, bytes(memoryview(buf)[: 1 << 20]))  # a first MiB of it, then the kill
        os.kill(os.getpid(), signal.SIGKILL)

    real = multiprocessing.connection.Connection._send  # type: ignore[attr-defined]
    multiprocessing.connection.Connection._send = send  # type: ignore[attr-defined]
    return b"x" * size


def test_a_parser_killed_while_sending_its_result_fails_the_pass_and_ends_the_pool() -> None:
    """Killed halfway through sending a result (the OOM killer, or terminate during a shutdown),
    a worker leaves the executor's manager thread waiting for the rest of the message, for good:
    the executor never noticed the death, and terminate (then every exit of the process) waited
    for that thread. An audit saw a service's shutdown hang so. Now the pass fails with
    WorkerDied and terminate returns."""
    import threading

    pool = ingest.ParserPool(1)
    try:
        with pytest.raises(WorkerDied):
            list(pool.imap_unordered(_die_while_sending, [8 << 20]))
    finally:
        ended = threading.Thread(target=pool.terminate, daemon=True)
        ended.start()
        ended.join(30)
    assert not ended.is_alive()


def test_a_parser_dying_while_the_others_start_fails_the_pass_as_a_death(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed while submit is still starting the others breaks the executor, which closes
    its queues; the next process to start then fails on them, with OSError("handle is closed") or
    ValueError("bad value(s) in fds_to_keep") (both seen with 16 parsers). That is reported as the
    death it is, not as a puzzling error. The race is a matter of microseconds, so the executor's
    failure is played here, after a real death."""
    pool = ingest.ParserPool(2)
    try:
        assert list(pool.imap_unordered(abs, [-1])) == [1]  # a process started, and alive
        closed = OSError("handle is closed")

        def fails(*args: Any) -> Any:
            raise closed

        monkeypatch.setattr(pool._executor, "submit", fails)
        with pytest.raises(OSError, match="handle is closed"):  # no worker died: not a death
            pool.submit(abs, [-1])
        (pid,) = pool.pids()[:1]
        os.kill(pid, signal.SIGKILL)
        wait_for(pool._lost_a_worker)
        with pytest.raises(WorkerDied):
            pool.submit(abs, [-1])
    finally:
        pool.terminate()


# Peak RSS from /proc: VmHWM starts afresh at exec (ru_maxrss would inherit pytest's own peak).
_BIG_LINE_SCRIPT = r"""
import re, sys
from datetime import datetime, timedelta
from pathlib import Path
from indexer.ingest import sync
from indexer.store import Index
def peak_kb():
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))
with Index(Path(sys.argv[1])) as index:
    before = peak_kb()
    report = sync(index, [Path(sys.argv[2])])
    row = index.con.execute("SELECT count(*), sum(input_tokens), sum(output_tokens) FROM calls").fetchone()
print(report.bytes_read, *row, before, peak_kb())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_valid_50_mb_line_is_counted_in_bounded_memory(tmp_path: Path) -> None:
    projects = tmp_path / "claude" / "projects" / "-p"
    projects.mkdir(parents=True)
    big = {
        "type": "assistant",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "requestId": "req_big",
        "cwd": "/p",
        "message": {
            "id": "msg_big",
            "model": "claude-opus-4-6",
            "content": [{"type": "text", "text": "é" * (25 << 20)}],  # 50 MB of UTF-8
            "usage": {"input_tokens": 5, "output_tokens": 7},
        },
    }
    path = projects / "s.jsonl"
    data = orjson.dumps(big) + b"\n"
    path.write_bytes(data)
    del data, big
    out = subprocess.run(
        [sys.executable, "-c", _BIG_LINE_SCRIPT, str(tmp_path / "i.duckdb"), str(projects.parent)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
        timeout=120,
    ).stdout.split()
    bytes_read, calls, inp, outp, before_kb, peak_kb = (int(x) for x in out)
    assert bytes_read == path.stat().st_size > 50 << 20
    assert (calls, inp, outp) == (1, 5, 7)
    assert peak_kb < 400 * 1024, f"peak RSS {peak_kb // 1024} MB"
    # The line is read once into one buffer (50 MB) and parsed (a 25 MB str): no copies of it
    # while it is assembled or examined (those took the peak above 200 MB over the baseline).
    assert peak_kb - before_kb < 160 * 1024, f"sync added {(peak_kb - before_kb) // 1024} MB"


def test_samples_latency_and_compaction(tmp_path: Path, samples_tree: Path) -> None:
    """Latency recomputed independently: each call's earliest line minus the last user line before it."""
    expected: dict[int, int | None] = {}
    for path in (samples_tree / "projects").rglob("*.jsonl"):
        last_user: datetime | None = None
        first: dict[int, tuple[datetime, int | None]] = {}
        for raw in path.read_bytes().splitlines():
            obj = orjson.loads(raw)
            ts = datetime.fromisoformat(obj["timestamp"]) if "timestamp" in obj else None
            if obj.get("type") == "user":
                last_user = ts
            elif isinstance(obj.get("message"), dict) and isinstance(obj["message"].get("usage"), dict):
                assert ts is not None
                key = hash64(f"{obj['message']['id']}\x1f{obj['requestId']}".encode())
                lat = None if last_user is None or ts < last_user else (ts - last_user) // timedelta(milliseconds=1)
                if key not in first or ts < first[key][0]:
                    first[key] = (ts, lat)
        expected.update({k: lat for k, (_, lat) in first.items()})
    with Index(tmp_path / "index.duckdb") as index:
        sync(index, [samples_tree / "projects"])
        got = dict(index.con.execute("SELECT key, latency_ms FROM calls").fetchall())
        events = index.con.execute("SELECT kind, session, detail FROM events").fetchall()
    assert got == expected
    assert sum(v is not None for v in got.values()) == 15
    assert events == [("compaction", "ae4a77f8-aedd-4bc1-888f-c94edc91af04", '{"trigger":"manual","preTokens":142431}')]


@pytest.mark.skipif(not hasattr(os, "nice"), reason="no process priorities here")
def test_worker_processes_run_niced() -> None:
    """Parsers leave the cores to the serving event loop first."""
    pool = ingest.ParserPool(1)
    try:
        assert list(pool.imap_unordered(os.nice, [0])) == [min(19, os.nice(0) + worker.WORKER_NICE)]
    finally:
        pool.close()
        pool.join()


def test_a_parser_lost_before_its_first_task_is_a_worker_died_error() -> None:
    """A pool started ahead of its work (a rebuild's) can lose a process while idle: its first
    submit then raises BrokenProcessPool, which must read as WorkerDied, not a traceback."""
    pool = ingest.ParserPool(1)
    pool.warm()
    try:
        (process,) = list(pool._executor._processes.values())  # type: ignore[attr-defined]
        process.kill()
        process.join(10)
        with pytest.raises(WorkerDied):
            for _ in range(50):  # until the executor has noticed the death
                list(pool.imap_unordered(len, ["abc"]))
    finally:
        pool.terminate()


def test_rejected_lines_waiting_for_a_commit_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A damaged tree's many short bad lines would otherwise wait in memory for the byte threshold."""
    projects = tmp_path / "projects" / "p"
    projects.mkdir(parents=True)
    for i in range(3):
        (projects / f"s{i}.jsonl").write_bytes(b"not json\n" * 2)
    monkeypatch.setattr(ingest, "COMMIT_REJECTS", 2)
    commits: list[int] = []
    with Index(tmp_path / "index.duckdb") as index:
        original = index.commit
        monkeypatch.setattr(
            index, "commit", lambda results, columns=(): (commits.append(len(results)), original(results, columns))
        )
        report = sync(index, [tmp_path / "projects"])
    assert (report.rejected, commits) == (6, [1, 1, 1])


@pytest.mark.skipif(sys.platform != "linux", reason="forked parsers: Linux only")
def test_parsers_are_forked_only_from_a_process_without_other_threads() -> None:
    """A fork copies one thread: a lock another thread held stays locked in the child forever."""
    code = """
import threading
from indexer import ingest, worker
pool = ingest.ParserPool(1, fork=True)
print(pool.forked, list(pool.imap_unordered(len, ["abc"])))
pool.close(); pool.join()
threading.Thread(target=threading.Event().wait, args=(5,), daemon=True).start()
pool = ingest.ParserPool(1, fork=True)
print(pool.forked, list(pool.imap_unordered(len, ["abcd"])))
pool.close(); pool.join()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[:2] == ["True [3]", "False [4]"]


@pytest.mark.skipif(sys.platform != "linux", reason="forked parsers: Linux only")
def test_forked_parsers_end_with_a_killed_command() -> None:
    """A SIGKILLed rebuild must not leave its parsers running (they would hold its output pipes)."""
    code = """
import os, signal
from indexer import ingest
pool = ingest.ParserPool(2, fork=True)
assert list(pool.imap_unordered(len, ["ab"])) == [2]
print(" ".join(str(p) for p in pool._executor._processes), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    # Parsers left running would hold the pipes open: run() would wait for them (its timeout).
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    pids = [int(p) for p in out.stdout.split()]
    assert out.returncode == -signal.SIGKILL and len(pids) == 2

    def running(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return False

    for _ in range(100):
        alive = [p for p in pids if running(p)]
        if not alive:
            break
        time.sleep(0.05)
    assert alive == []


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="no idle scheduling class here")
def test_idle_worker_processes_run_in_the_idle_class() -> None:
    """The service's parsers (its catch-up, and any later pass big enough) run only on idle cores."""
    pool = ingest.ParserPool(1, idle=True)
    try:
        assert list(pool.imap_unordered(os.sched_getscheduler, [0])) == [os.SCHED_IDLE]
    finally:
        pool.close()
        pool.join()


@pytest.mark.skipif(sys.platform != "linux", reason="file names of any bytes: Linux")
def test_a_file_name_that_is_not_utf8_is_skipped_and_reported(tmp_path: Path) -> None:
    """Such a name (never Claude Code's) cannot be stored as text: it used to fail every sync."""
    line = (RULES / "web_search").rglob("*.jsonl").__next__().read_bytes()
    projects = tmp_path / "cfg" / "projects"
    (projects / "-w-a").mkdir(parents=True)
    (projects / "-w-a" / "good.jsonl").write_bytes(line)
    os.makedirs(os.fsencode(projects) + b"/-w-\xff")
    with open(os.fsencode(projects) + b"/-w-\xff/s\xfe.jsonl", "wb") as f:
        f.write(line.replace(b'"id":"', b'"id":"other-'))
    with Index(tmp_path / "i.duckdb") as index:
        report = sync(index, [projects])
        calls = index.con.execute("SELECT count(*) FROM calls").fetchone()
    assert (report.files_read, report.files_unnamed, calls) == (1, 1, (1,))
    assert report.unnamed_example is not None and report.unnamed_example.endswith("/s\ufffd.jsonl")


def test_a_stopped_sync_keeps_what_it_committed_and_the_next_reads_the_rest(tmp_path: Path, samples_tree: Path) -> None:
    """Ctrl-C on `cco index sync` sets this event (not a KeyboardInterrupt inside a DuckDB statement)."""
    import threading

    stopping = threading.Event()
    stopping.set()
    with Index(tmp_path / "i.duckdb") as index:
        with pytest.raises(ingest.Stopped):
            sync(index, [samples_tree / "projects"], stopping=stopping)
        report = sync(index, [samples_tree / "projects"])
        assert index.con.execute("SELECT count(*) FROM calls").fetchone() == (15,)
        assert report.call_lines <= 45


@pytest.mark.parametrize("path", WRITE_PATHS)
def test_a_line_in_a_main_file_and_its_subagent_file_resolves_the_same_in_any_order(
    tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same id, request id, time and session (S1.jsonl and S1/subagents/agent-a7.jsonl): the tie on
    (time, session) is broken by agent id, none first, so the row is the main file's either way."""
    from indexer import store
    from indexer.rebuild import rebuild

    line = orjson.dumps(
        {
            "type": "assistant",
            "timestamp": "2026-03-01T10:00:00.000Z",
            "requestId": "r1",
            "cwd": "/w",
            "message": {"id": "m1", "model": "claude-opus-4-6", "usage": {"input_tokens": 1}},
        }
    )
    root = tmp_path / "claude" / "projects"
    main, side = root / "-w" / "S1.jsonl", root / "-w" / "S1" / "subagents" / "agent-a7.jsonl"
    side.parent.mkdir(parents=True)
    main.write_bytes(line + b"\n")
    side.write_bytes(line + b"\n")
    if path != "few":
        monkeypatch.setattr(store, "SMALL_BATCH", 0)
    got = []
    for order in ((main, side), (side, main)):
        db = tmp_path / f"{order[0].stem}.duckdb"
        if path == "rebuild":
            rebuild(db, [root])
        with Index(db) as index:
            if path == "file_by_file":
                for f in order:
                    sync(index, [root], only={str(f)})
            elif path != "rebuild":
                sync(index, [root])
            got.append(index.con.execute("SELECT session, agent_id FROM calls").fetchall())
    assert got == [[("S1", None)], [("S1", None)]]


def test_a_rebuild_gives_its_parsers_each_big_file_as_the_walk_finds_it(
    tmp_path: Path, samples_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """plan_and_start: a file of TASK_BYTES or more is a task of its own, submitted as soon as the
    walk finds it; the small files, grouped largest first, once the walk is done. The reads then
    index what a plain sync does."""
    monkeypatch.setattr(ingest, "TASK_BYTES", 40_000)  # two of the four samples (47 and 78 KB)
    events: list[tuple[str, tuple[str, ...]]] = []
    walk = ingest.iter_transcripts

    def walking(*args: Any, **kwargs: Any) -> Any:
        for path, st in walk(*args, **kwargs):
            events.append(("found", (os.path.basename(path),)))
            yield path, st
        events.append(("walked", ()))

    monkeypatch.setattr(ingest, "iter_transcripts", walking)
    pool = ingest.ParserPool(2)
    submit = pool.submit

    def submitting(func: Any, items: Any) -> Any:
        items = list(items)
        events.extend(("task", tuple(os.path.basename(p.path) for p in task)) for task in items)
        return submit(func, items)

    monkeypatch.setattr(pool, "submit", submitting)
    try:
        todo, chunks = ingest.plan_and_start([samples_tree / "projects"], pool)
        started = list(events)
        with Index(tmp_path / "a.duckdb") as a, Index(tmp_path / "b.duckdb") as b:
            report = sync(a, [samples_tree / "projects"], planned=todo, chunks=chunks)
            sync(b, [samples_tree / "projects"], workers=1)
            assert (report.files_read, report.call_lines) == (4, 45)
            q = "SELECT * FROM calls ORDER BY key"
            assert a.con.execute(q).fetchall() == b.con.execute(q).fetchall()
    finally:
        pool.close()
        pool.join()
    sizes = {p.name: p.stat().st_size for p in (samples_tree / "projects").rglob("*.jsonl")}
    big = {name for name, size in sizes.items() if size >= 40_000}
    assert len(big) == 2
    walked = started.index(("walked", ()))
    for name in big:  # right after it was found, before the walk went on
        assert started[started.index(("found", (name,))) + 1] == ("task", (name,))
    small = sorted(set(sizes) - big, key=sizes.__getitem__, reverse=True)
    assert started[walked + 1 :] == [("task", tuple(small))]


@pytest.mark.parametrize("fork", [False, True])
def test_joining_a_closed_pool_waits_for_its_processes(fork: bool) -> None:
    """close() then join(reap=True): every parser process has ended and been reaped when join
    returns (a rebuild then ends at once, and its parsers' CPU time is its children's)."""
    pool = ingest.ParserPool(2, fork=fork)
    assert sorted(pool.imap_unordered(len, ["a", "bb"])) == [1, 2]
    processes = list(pool._executor._processes.values())  # type: ignore[attr-defined]
    assert len(processes) == 2
    pool.close()
    pool.join(reap=True)
    assert [p.exitcode for p in processes] == [0, 0]
