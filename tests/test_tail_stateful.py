"""The tailer against a model: any sequence of appends, partial writes, truncations, replacements,
deletions and re-creations, synced at any points, leaves exactly the calls the model expects.

The model is simple on purpose: after a sync the index holds, for every call identity ever seen in a
complete line, the maximum of each usage field (calls are never removed; re-reads change nothing),
and each file's offset is the end of its last complete line. A sync reads only the bytes after what
it read before when the file still starts with those bytes (same inode); otherwise the whole file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import orjson
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from indexer.ingest import sync
from indexer.parse import hash64
from indexer.store import Index

IDS = [f"msg_{i}" for i in range(6)]


class TailMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="cco-tail-"))
        self.projects = self.tmp / "claude" / "projects"
        self.paths = [self.projects / "-w" / "a.jsonl", self.projects / "-w" / "b" / "subagents" / "agent-1.jsonl"]
        for p in self.paths:
            p.parent.mkdir(parents=True, exist_ok=True)
        self.index = Index(self.tmp / "index.duckdb")
        self.serial = 0
        self.disk: dict[Path, bytes | None] = dict.fromkeys(self.paths)  # what each file holds
        self.pending: dict[Path, bytes] = {}  # the rest of a half-written last line
        self.expected: dict[int, tuple[int, int]] = {}  # call key -> (input, output) maxima
        self.synced: dict[Path, tuple[int, bytes]] = {}  # (inode, complete lines) at the last sync

    def teardown(self) -> None:
        self.index.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------------------------

    def line(self, mid: str, inp: int, out: int) -> bytes:
        self.serial += 1
        obj = {
            "type": "assistant",
            "timestamp": f"2026-01-01T00:00:{self.serial % 60:02d}.000Z",
            "requestId": f"req_{mid}",
            "message": {"id": mid, "model": "claude-opus-4-6", "usage": {"input_tokens": inp, "output_tokens": out}},
            "pad": "p" * (inp * 20),  # files outgrow the 1 KiB fingerprint: the tail hash must do its part
            "uuid": f"serial-{self.serial:012d}",  # unique bytes at the end of every line
        }
        return orjson.dumps(obj) + b"\n"

    def write(self, path: Path, content: bytes, *, replace: bool = False) -> None:
        if replace:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(content)
            os.replace(tmp, path)
        else:
            with path.open("r+b" if path.exists() else "wb") as f:  # same inode when it exists
                f.write(content)
                f.truncate()
        self.disk[path] = content

    def append(self, path: Path, data: bytes) -> None:
        with path.open("ab") as f:
            f.write(data)
        self.disk[path] = (self.disk[path] or b"") + data

    @staticmethod
    def complete(content: bytes) -> bytes:
        return content[: content.rfind(b"\n") + 1]

    # --- rules -----------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        self.write(self.paths[0], b"")

    @precondition(lambda self: any(self.disk[p] is not None and p not in self.pending for p in self.paths))
    @rule(
        which=st.integers(0, 1),
        calls=st.lists(st.tuples(st.sampled_from(IDS), st.integers(0, 50), st.integers(0, 1000)), max_size=4),
    )
    def append_lines(self, which: int, calls: list[tuple[str, int, int]]) -> None:
        path = self.paths[which]
        if self.disk[path] is None or path in self.pending:
            return
        self.append(path, b"".join(self.line(*c) for c in calls))

    @precondition(lambda self: any(self.disk[p] is not None and p not in self.pending for p in self.paths))
    @rule(which=st.integers(0, 1), mid=st.sampled_from(IDS), out=st.integers(0, 1000), cut=st.integers(1, 200))
    def partial_write(self, which: int, mid: str, out: int, cut: int) -> None:
        path = self.paths[which]
        if self.disk[path] is None or path in self.pending:
            return
        data = self.line(mid, 1, out)
        cut = min(cut, len(data) - 1)
        self.append(path, data[:cut])
        self.pending[path] = data[cut:]

    @precondition(lambda self: bool(self.pending))
    @rule(data=st.data())
    def finish_partial(self, data: st.DataObject) -> None:
        path = data.draw(st.sampled_from(sorted(self.pending)))
        self.append(path, self.pending.pop(path))

    @precondition(lambda self: any(self.disk[p] is not None for p in self.paths))
    @rule(which=st.integers(0, 1), keep=st.integers(0, 10))
    def truncate_shorter(self, which: int, keep: int) -> None:
        """/compact or /rewind: the same file, rewritten in place with only its first `keep` lines."""
        path = self.paths[which]
        content = self.disk[path]
        if content is None:
            return
        lines = self.complete(content).splitlines(keepends=True)
        kept = b"".join(lines[: min(keep, max(len(lines) - 1, 0))])
        self.pending.pop(path, None)
        self.write(path, kept)  # same inode: the tailer must notice from size, fingerprint or tail hash

    @precondition(lambda self: any(self.disk[p] is not None for p in self.paths))
    @rule(which=st.integers(0, 1), mid=st.sampled_from(IDS), out=st.integers(0, 1000))
    def rewrite_keeping_start(self, which: int, mid: str, out: int) -> None:
        """Rewritten in place: the first lines kept, the rest replaced by new lines at least as long.

        Neither the size nor the 1 KiB fingerprint shows it; the hash of the bytes before the offset must.
        """
        path = self.paths[which]
        content = self.disk[path]
        if content is None:
            return
        lines = self.complete(content).splitlines(keepends=True)
        new = b"".join(lines[: (len(lines) + 1) // 2])
        while len(new) < len(content):
            new += self.line(mid, 50, out)
        self.pending.pop(path, None)
        self.write(path, new)

    @precondition(lambda self: any(self.disk[p] for p in self.paths))
    @rule(
        which=st.integers(0, 1),
        mid=st.sampled_from(IDS),
        calls=st.lists(st.tuples(st.sampled_from(IDS), st.integers(0, 50), st.integers(0, 1000)), max_size=2),
    )
    def rewrite_first_line(self, which: int, mid: str, calls: list[tuple[str, int, int]]) -> None:
        """The first line replaced in place by another call's line of the same length, the rest kept,
        maybe lines appended: the size does not shrink and the bytes before the offset are the same,
        so only the fingerprint of the first bytes shows the rewrite."""
        path = self.paths[which]
        content = self.disk[path]
        lines = self.complete(content or b"").splitlines(keepends=True)
        if not lines:
            return
        first = orjson.loads(lines[0])
        if first["message"]["id"] == mid:
            return  # nothing would change that the index could see
        self.serial += 1
        first["message"]["id"], first["requestId"] = mid, f"req_{mid}"
        # Its unique bytes first, within the 1 KiB fingerprint: at the end of a long line (beyond it)
        # a rewrite back to an id synced before (msg_1 -> msg_0 -> msg_1) would differ from the
        # synced bytes only where neither the fingerprint nor the tail hash looks, and change no call.
        first = {"uuid": f"serial-{self.serial:012d}", **{k: v for k, v in first.items() if k != "uuid"}}
        new = orjson.dumps(first) + b"\n"
        assert len(new) == len(lines[0])
        self.pending.pop(path, None)
        self.write(path, new + b"".join(lines[1:]) + b"".join(self.line(*c) for c in calls))

    @precondition(lambda self: any(self.disk[p] is not None for p in self.paths))
    @rule(
        which=st.integers(0, 1),
        keep=st.integers(0, 10),
        calls=st.lists(st.tuples(st.sampled_from(IDS), st.integers(0, 50), st.integers(0, 1000)), max_size=3),
    )
    def replace_file(self, which: int, keep: int, calls: list[tuple[str, int, int]]) -> None:
        """A new file (new inode) renamed over the old one: a prefix of its lines plus new ones."""
        path = self.paths[which]
        content = self.disk[path]
        if content is None:
            return
        lines = self.complete(content).splitlines(keepends=True)
        self.pending.pop(path, None)
        self.write(path, b"".join(lines[:keep]) + b"".join(self.line(*c) for c in calls), replace=True)

    @precondition(lambda self: any(self.disk[p] is not None for p in self.paths))
    @rule(which=st.integers(0, 1))
    def delete(self, which: int) -> None:
        path = self.paths[which]
        if self.disk[path] is None:
            return
        path.unlink()
        self.disk[path] = None
        self.pending.pop(path, None)

    @precondition(lambda self: any(self.disk[p] is None for p in self.paths))
    @rule(
        which=st.integers(0, 1),
        calls=st.lists(st.tuples(st.sampled_from(IDS), st.integers(0, 50), st.integers(0, 1000)), max_size=3),
    )
    def recreate(self, which: int, calls: list[tuple[str, int, int]]) -> None:
        path = self.paths[which]
        if self.disk[path] is not None:
            return
        self.write(path, b"".join(self.line(*c) for c in calls))

    @rule()
    def sync_and_check(self) -> None:
        report = sync(self.index, [self.projects])
        want_bytes = 0
        for path in self.paths:
            content = self.disk[path]
            if content is None:
                self.synced.pop(path, None)  # marked gone: a new file there is read whole
                continue
            done = self.complete(content)
            inode = path.stat().st_ino  # a replaced file may get a freed inode back: then only content tells
            before = self.synced.get(path)
            if before is None or before[0] != inode or not done.startswith(before[1]):
                want_bytes += len(done)
            else:
                want_bytes += len(done) - len(before[1])
            for raw in done.splitlines():
                obj = orjson.loads(raw)
                usage = obj["message"]["usage"]
                key = hash64(f"{obj['message']['id']}\x1f{obj['requestId']}".encode())
                inp, out = self.expected.get(key, (0, 0))
                self.expected[key] = (max(inp, usage["input_tokens"]), max(out, usage["output_tokens"]))
            self.synced[path] = (inode, done)
        assert report.bytes_read == want_bytes
        assert report.rejected == 0

        got = {
            k: (i, o)
            for k, i, o in self.index.con.execute("SELECT key, input_tokens, output_tokens FROM calls").fetchall()
        }
        assert got == self.expected
        files = {
            Path(p): (off, lines, gone)
            for p, off, lines, gone in self.index.con.execute(
                'SELECT path, "offset", lines, gone FROM files'
            ).fetchall()
        }
        for path in self.paths:
            content = self.disk[path]
            if content is None:
                assert path not in files or files[path][2] is True
            else:
                done = self.complete(content)
                assert files[path] == (len(done), done.count(b"\n"), False)


TailMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25)
test_tail_state_machine = TailMachine.TestCase
