"""Crash safety: `cco index sync` SIGKILLed at random moments while transcripts grow equals a clean rebuild.

A writer thread appends lines to several transcripts (duplicate groups with late final counts, fork
copies, sidechain replays, rejected lines, big progress lines, and lines written in two parts)
while real `cco index sync` processes are started and killed with SIGKILL at random moments (once
the index is open: migrations, reads, commits, checkpoints), until 20 of them were killed. Then one
sync runs to completion, and its index must equal a fresh `cco index rebuild` of the same files:
calls row for row, file offsets and rejected lines.

CCO_SLOW=1 kills 100 syncs, with more files; CCO_CRASH_SEED picks another writer sequence.

Likewise `cco index run` killed during a catch-up that its pass writer reads (indexer/staged.py).
"""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from indexer.store import Index
from tests.conftest import CCO, load_gen_corpus
from tests.live_helpers import free_port, start_cco_run, wait_for, wait_for_http

SLOW = os.environ.get("CCO_SLOW") == "1"
ROUNDS = 100 if SLOW else 20
MAIN_FILES = 5 if SLOW else 3
SEED = int(os.environ.get("CCO_CRASH_SEED", "20260301"))
TRACE_FDS = Path("/proc/self/fd").is_dir()  # kill only once the index is open (Linux)
BASE_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z


def iso(ms: int) -> str:
    secs, milli = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{milli:03d}Z"


class TranscriptWriter(threading.Thread):
    """Appends realistic lines to the transcripts until stopped; deterministic given its seed."""

    def __init__(self, projects: Path, seed: int) -> None:
        super().__init__(daemon=True)
        self.rnd = random.Random(seed)
        self.stop = threading.Event()
        project = projects / "-home-u-crash"
        self.sessions = [f"c{i}-0000-4000-8000-000000000000" for i in range(MAIN_FILES)]
        self.main = [project / f"{s}.jsonl" for s in self.sessions]
        self.sub = project / self.sessions[0] / "subagents" / "agent-x1.jsonl"
        self.sub.parent.mkdir(parents=True)
        self.clock = BASE_MS
        self.serial = 0
        self.history: list[list[bytes]] = [[] for _ in self.main]  # call lines written per main file
        self.main_ids: list[str] = []  # message ids of main-chain calls of session 0
        self.delayed: list[tuple[Path, bytes]] = []  # late final lines of duplicate groups
        self.writes = 0
        self.error: BaseException | None = None

    def tick(self) -> str:
        self.clock += self.rnd.randint(1, 900)
        return iso(self.clock)

    def line(self, session: str, kind: str, **extra: Any) -> bytes:
        self.serial += 1
        obj: dict[str, Any] = {
            "parentUuid": None,
            "isSidechain": extra.pop("side", False),
            "cwd": "/home/u/crash",
            "sessionId": session,
            "version": "2.1.39",
            "type": kind,
        }
        obj.update(extra)
        obj["uuid"] = f"00000000-0000-4000-8000-{self.serial:012d}"
        obj["timestamp"] = self.tick()
        return orjson.dumps(obj) + b"\n"

    def call(self, session: str, mid: str, req: str, out: int, side: bool = False) -> bytes:
        usage = {"input_tokens": 3, "output_tokens": out, "cache_creation_input_tokens": 10,
                 "cache_read_input_tokens": 100, "cache_creation": {"ephemeral_1h_input_tokens": 4}}  # fmt: skip
        message = {"id": mid, "model": "claude-opus-4-6", "role": "assistant", "usage": usage,
                   "content": [{"type": "text", "text": "x" * self.rnd.randint(0, 300)}]}  # fmt: skip
        extra: dict[str, Any] = {"message": message, "requestId": req, "side": side}
        if side:
            extra["agentId"] = "x1"
        return self.line(session, "assistant", **extra)

    def append(self, path: Path, data: bytes) -> None:
        """Write `data`, sometimes in two parts with a pause between (a partial line for a while)."""
        parts = [data]
        if len(data) > 2 and self.rnd.random() < 0.3:
            cut = self.rnd.randrange(1, len(data) - 1)
            parts = [data[:cut], data[cut:]]
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for i, part in enumerate(parts):
                if i:
                    time.sleep(self.rnd.uniform(0, 0.03))
                os.write(fd, part)
        finally:
            os.close(fd)
        self.writes += 1

    def step(self) -> None:
        r = self.rnd.random()
        i = self.rnd.randrange(len(self.main))
        path, session = self.main[i], self.sessions[i]
        if self.delayed and self.rnd.random() < 0.3:
            self.append(*self.delayed.pop(self.rnd.randrange(len(self.delayed))))
        elif r < 0.2:
            self.append(path, self.line(session, "user", message={"role": "user", "content": "go on"}))
        elif r < 0.55:  # a call of 1-4 lines; the final count may come later or never
            mid, req = f"msg_{self.serial}", f"req_{self.serial}"
            lines = [self.call(session, mid, req, out) for out in sorted(self.rnd.sample(range(1, 900), 3))]
            for ln in lines[: self.rnd.randint(1, 2)]:
                self.append(path, ln)
                self.history[i].append(ln)
            if self.rnd.random() < 0.6:
                self.delayed.append((path, lines[-1]))
            if i == 0:
                self.main_ids.append(mid)
        elif r < 0.62 and any(self.history[j] for j in range(len(self.main)) if j != i):  # fork copy
            j = self.rnd.choice([j for j in range(len(self.main)) if j != i and self.history[j]])
            self.append(path, self.rnd.choice(self.history[j]))
        elif r < 0.75:  # subagent: its own calls and replays of session 0's calls
            s0 = self.sessions[0]
            if self.main_ids and self.rnd.random() < 0.4:
                mid = self.rnd.choice(self.main_ids)
                self.append(self.sub, self.call(s0, mid, f"req_replay_{self.serial}", 5, side=True))
            elif self.rnd.random() < 0.5:
                self.append(self.sub, self.line(s0, "user", side=True, agentId="x1", message={"content": "q"}))
            else:
                self.append(self.sub, self.call(s0, f"msg_side_{self.serial}", f"req_{self.serial}", 7, side=True))
        elif r < 0.8:  # rejected: invalid JSON that passes the byte test
            self.append(path, b'{"message":{"usage":{"input_tokens":1}},"oops\n')
        elif r < 0.85:
            self.append(path, self.call(session, f"msg_bad_{self.serial}", "r", -1))  # negative: rejected
        else:  # a progress line: bytes that say nothing about cost
            pad = "p" * self.rnd.choice([200, 2_000, 60_000])
            self.append(path, self.line(session, "progress", data={"type": "hook_progress", "output": pad}))

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.step()
                time.sleep(self.rnd.uniform(0, 0.004))
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def cco(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([CCO, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_until_open(proc: subprocess.Popen[bytes], db: Path) -> bool:
    """Poll /proc until `proc` has the index file open (start-up is over); False if it exited first."""
    fds = Path(f"/proc/{proc.pid}/fd")
    target = str(db)
    while proc.poll() is None:
        try:
            if any(os.readlink(fd) == target for fd in fds.iterdir()):
                return True
        except OSError:
            pass  # an fd closed while we looked
        time.sleep(0.002)
    return False


def snapshot(db: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with Index(db) as index:
        calls = index.con.execute("SELECT * FROM calls ORDER BY key").fetchall()
        files = index.con.execute(
            'SELECT path, "offset", lines, last_user_ms, tail_hash, fp_len, fp_hash, gone FROM files ORDER BY path'
        ).fetchall()
        rejects = index.con.execute('SELECT path, "offset", reason FROM rejects ORDER BY path, "offset"').fetchall()
    return calls, files, rejects


@pytest.mark.timeout(900 if SLOW else 300)
def test_sigkilled_syncs_end_equal_to_a_clean_rebuild(tmp_path: Path) -> None:
    root = tmp_path / "claude"
    projects = root / "projects"
    db = tmp_path / "index.duckdb"
    writer = TranscriptWriter(projects, SEED)
    rnd = random.Random(SEED + 1)
    for _ in range(200):  # some history before the first sync
        writer.step()
    writer.start()
    try:
        # How long one sync holds the index here, so kills land anywhere in open, read, commit, close.
        first = cco("index", "sync", "--source", str(root), "--db", str(db))
        assert wait_until_open(first, db) or not TRACE_FDS
        opened = time.monotonic()
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err.decode()
        span = time.monotonic() - opened
        killed = finished = 0
        while killed < ROUNDS and killed + finished < 3 * ROUNDS:  # a sync may finish before its kill
            proc = cco("index", "sync", "--source", str(root), "--db", str(db))
            if TRACE_FDS:
                wait_until_open(proc, db)
                time.sleep(rnd.uniform(0, span * 0.8))
            else:
                time.sleep(rnd.uniform(0.05, 3.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            _, err = proc.communicate(timeout=120)
            if proc.returncode == 0:
                finished += 1
            else:
                assert proc.returncode == -signal.SIGKILL, err.decode()
    finally:
        writer.stop.set()
        writer.join(timeout=60)
    assert writer.error is None
    assert killed >= ROUNDS, f"only {killed} syncs were killed ({finished} finished first)"
    for path, data in writer.delayed[:5]:  # a few late lines after the last kill, one left half-written
        writer.append(path, data)
    with writer.main[0].open("ab") as f:
        f.write(b'{"type":"assistant","message":{"usage"')

    final = cco("index", "sync", "--source", str(root), "--db", str(db))
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err.decode()
    clean = tmp_path / "clean.duckdb"
    fresh = cco("index", "rebuild", "--source", str(root), "--db", str(clean))
    _, err = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, err.decode()

    got, want = snapshot(db), snapshot(clean)
    assert len(want[0]) > 50 and len(want[2]) > 5  # the run produced calls and rejected lines
    assert got[0] == want[0]
    assert got[1] == want[1]
    assert got[2] == want[2]


def read_some(base: str) -> bool:
    """Whether the service at `base` has read a file of its catch-up, or finished it."""
    catch_up = wait_for_http(f"{base}/api/metrics/health", timeout=10)["catch_up"]
    return bool(catch_up["done"] or catch_up["files_done"] > 0)


def test_a_service_killed_during_its_catch_up_ends_equal_to_a_clean_rebuild(tmp_path: Path) -> None:
    """`cco index run` SIGKILLed at several moments of a catch-up big enough for its pass writer
    (staged batches being written, merged, or neither): each restart goes on from what was merged,
    the last one finishes, and the index equals a rebuild, with no staging folder left behind."""
    gen = load_gen_corpus()
    root = tmp_path / "claude"
    gen.generate(root / "projects", 24 << 20, seed=11, days=10, jobs=1)  # above ingest.PARALLEL_BYTES
    db = tmp_path / "index.duckdb"
    rnd = random.Random(SEED + 2)
    staging_killed = 0  # kills that left a staging folder behind
    for kill in range(4):
        port = free_port()
        proc = start_cco_run(root, db, port)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for_http(f"{base}/api/stats", timeout=60)
            # Killed once the writer has read something (its batch staged, being merged, or not yet):
            # the first time at once, mid-pass (a fast machine reads the tree in a few tenths of a
            # second), then a moment later.
            wait_for(functools.partial(read_some, base), timeout=60, step=0.01)
            time.sleep(rnd.uniform(0, 0.2) if kill else 0)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        staging_killed += bool(list(tmp_path.glob("index.duckdb.pass-*")))
    assert staging_killed >= 1
    port = free_port()
    proc = start_cco_run(root, db, port)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/api/stats", timeout=60)
        wait_for(lambda: wait_for_http(f"{base}/api/metrics/health", timeout=10)["catch_up"]["done"], timeout=120)
        # The killed services' staging folders are gone (the live one may be in a pass of its own:
        # the whole-tree pass the watcher's start asks for).
        ours = f"index.duckdb.pass-{proc.pid}-"
        assert [p for p in tmp_path.glob("index.duckdb.pass-*") if not p.name.startswith(ours)] == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    clean = tmp_path / "clean.duckdb"
    fresh = cco("index", "rebuild", "--source", str(root), "--db", str(clean))
    _, err = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, err.decode()
    got, want = snapshot(db), snapshot(clean)
    assert len(want[0]) > 1000
    assert got == want
