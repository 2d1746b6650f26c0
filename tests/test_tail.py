"""The tailer against a real index: only new bytes are read, partial lines wait, rewrites and deletions
never double-count or lose a call."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import orjson
import pytest

from indexer import tail
from indexer.ingest import sync
from indexer.parse import FileContext, hash64, parse_lines
from indexer.store import Index
from indexer.tail import CHUNK_BYTES, FINGERPRINT_BYTES, ReadPlan, plan_read, read_plan


def call(n: int, out: int = 1, msg: str | None = None, pad: str = "") -> bytes:
    """A complete assistant call line (identity msg_<n>/req_<n> unless msg is given)."""
    mid = msg or f"msg_{n}"
    return (
        orjson.dumps(
            {
                "type": "assistant",
                "cwd": "/w",
                "sessionId": "s",
                "requestId": f"req_{mid}",
                "timestamp": f"2026-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}.000Z",
                "message": {
                    "id": mid,
                    "model": "claude-opus-4-6",
                    "content": [{"type": "text", "text": pad}],
                    "usage": {"input_tokens": n, "output_tokens": out},
                },
            }
        )
        + b"\n"
    )


def setup(tmp_path: Path, data: bytes) -> tuple[Index, Path, Path]:
    projects = tmp_path / "claude" / "projects"
    path = projects / "-w" / "s.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    index = Index(tmp_path / "index.duckdb")
    return index, projects, path


def calls(index: Index) -> list[tuple[str, int, int]]:
    rows = index.con.execute("SELECT session, input_tokens, output_tokens FROM calls ORDER BY input_tokens").fetchall()
    return [(str(s), int(i), int(o)) for s, i, o in rows]


def file_row(index: Index) -> tuple[int, int, bool]:
    row = index.con.execute('SELECT "offset", lines, gone FROM files').fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), bool(row[2])


def test_appends_are_read_from_the_offset_only(tmp_path: Path) -> None:
    first = b"".join(call(n, pad="x" * 5000) for n in range(1, 40))
    index, projects, path = setup(tmp_path, first)
    with index:
        assert sync(index, [projects]).bytes_read == len(first)
        for round_ in range(3):
            added = call(100 + round_)
            with path.open("ab") as f:
                f.write(added)
            report = sync(index, [projects])
            assert (report.files_read, report.bytes_read, report.call_lines) == (1, len(added), 1)
        assert sync(index, [projects]).files_read == 0
        assert len(calls(index)) == 42
        assert file_row(index) == (path.stat().st_size, 42, False)


def test_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    line = call(7, out=30)
    index, projects, path = setup(tmp_path, call(1) + line[:50])
    with index:
        sync(index, [projects])
        assert calls(index) == [("s", 1, 1)]
        with path.open("ab") as f:
            f.write(line[50:-1])  # everything but the newline
        report = sync(index, [projects])
        assert (report.bytes_read, report.call_lines) == (0, 0)
        assert file_row(index)[0] == len(call(1))
        with path.open("ab") as f:
            f.write(b"\n")
        report = sync(index, [projects])
        assert report.bytes_read == len(line)
        assert calls(index) == [("s", 1, 1), ("s", 7, 30)]


def test_cutting_a_file_back_to_the_lines_read_needs_no_reread(tmp_path: Path) -> None:
    """A partial line was there when the file was read, then the file was cut back to its complete
    lines (a rewind): the fingerprint covers read bytes only, so nothing is read again."""
    first = call(1)
    index, projects, path = setup(tmp_path, first + call(2)[:1])
    with index:
        assert sync(index, [projects]).bytes_read == len(first)
        path.write_bytes(first + call(2))  # the partial line completed ...
        path.write_bytes(first)  # ... and cut off again, in place (same inode)
        report = sync(index, [projects])
        assert (report.files_read, report.bytes_read) == (1, 0)  # a new size and time: looked at, not re-read
        assert calls(index) == [("s", 1, 1)]


def test_rewritten_shorter_file_is_reread_whole_without_double_counting(tmp_path: Path) -> None:
    index, projects, path = setup(tmp_path, call(1) + call(2) + call(3, out=5) + call(4))
    with index:
        sync(index, [projects])
        # /compact or /rewind: fewer lines, one call grew in the meantime
        path.write_bytes(call(1) + call(3, out=9))
        report = sync(index, [projects])
        assert report.bytes_read == path.stat().st_size
        assert calls(index) == [("s", 1, 1), ("s", 2, 1), ("s", 3, 9), ("s", 4, 1)]  # none lost, none twice
        assert file_row(index) == (path.stat().st_size, 2, False)


def test_changed_first_bytes_mean_a_rewrite(tmp_path: Path) -> None:
    original = call(1) + call(2)
    index, projects, path = setup(tmp_path, original)
    with index:
        sync(index, [projects])
        # The first line replaced by one of the same length, then more lines: size grew and the bytes
        # before the old offset are the same (call 2), but the start is not what was read.
        rewritten = call(5) + call(2) + call(7)
        assert len(call(5)) == len(call(1))
        path.write_bytes(rewritten)
        report = sync(index, [projects])
        assert report.bytes_read == len(rewritten)
        assert [c[1] for c in calls(index)] == [1, 2, 5, 7]


def test_changed_bytes_before_the_offset_mean_a_rewrite(tmp_path: Path) -> None:
    pad = "p" * FINGERPRINT_BYTES  # the first line alone covers the fingerprint
    index, projects, path = setup(tmp_path, call(1, pad=pad) + call(2))
    with index:
        sync(index, [projects])
        path.write_bytes(call(1, pad=pad) + call(3) + call(4))  # same start, different tail
        report = sync(index, [projects])
        assert report.bytes_read == path.stat().st_size
        assert [c[1] for c in calls(index)] == [1, 2, 3, 4]


def test_deleted_file_is_gone_but_its_calls_stay(tmp_path: Path) -> None:
    index, projects, path = setup(tmp_path, call(1) + call(2))
    with index:
        sync(index, [projects])
        path.unlink()
        report = sync(index, [projects])
        assert report.files_gone == 1
        assert file_row(index)[2] is True
        assert len(calls(index)) == 2
        # recreated (Claude Code resumed the session): read whole again, nothing doubled
        path.write_bytes(call(2) + call(3))
        report = sync(index, [projects])
        assert report.bytes_read == path.stat().st_size
        assert file_row(index) == (path.stat().st_size, 2, False)
        assert [c[1] for c in calls(index)] == [1, 2, 3]


def test_replaced_file_new_inode_is_reread(tmp_path: Path) -> None:
    index, projects, path = setup(tmp_path, call(1) + call(2))
    with index:
        sync(index, [projects])
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(call(1) + call(2) + call(3))
        os.replace(tmp, path)
        report = sync(index, [projects])
        assert report.bytes_read == path.stat().st_size
        assert [c[1] for c in calls(index)] == [1, 2, 3]


def test_unchanged_file_needs_no_read(tmp_path: Path) -> None:
    index, projects, path = setup(tmp_path, call(1))
    with index:
        sync(index, [projects])
        state = index.file_states()[str(path)]
        assert plan_read(str(path), path.stat(), state) is None


def test_call_growing_across_appends_takes_the_max(tmp_path: Path) -> None:
    index, projects, path = setup(tmp_path, call(1, out=1, msg="m"))
    with index:
        sync(index, [projects])
        for out in (50, 20, 300, 7):  # lines of one call in any order: the max wins
            with path.open("ab") as f:
                f.write(call(2, out=out, msg="m"))
            sync(index, [projects])
        assert calls(index) == [("s", 2, 300)]
        row = index.con.execute("SELECT ts FROM calls").fetchone()
        assert row is not None and str(row[0]) == "2026-01-01 00:00:01"  # earliest line's time


def test_rejects_follow_the_file_through_appends_and_rewrites(tmp_path: Path) -> None:
    bad = b'{"message":{"usage":{"input_tokens":null}}}\n'
    index, projects, path = setup(tmp_path, call(1) + bad)
    with index:

        def rejects() -> list[tuple[int, str]]:
            rows = index.con.execute('SELECT "offset", reason FROM rejects ORDER BY 1').fetchall()
            return [(int(o), str(r)) for o, r in rows]

        sync(index, [projects])
        first = len(call(1))
        assert rejects() == [(first, "usage.input_tokens is null")]
        with path.open("ab") as f:
            f.write(bad)
        sync(index, [projects])
        sync(index, [projects])
        assert rejects() == [(first, "usage.input_tokens is null"), (first + len(bad), "usage.input_tokens is null")]
        path.write_bytes(bad + call(2))  # rewritten: its old rejects go, the new one is recorded once
        sync(index, [projects])
        assert rejects() == [(0, "usage.input_tokens is null")]
        path.unlink()
        sync(index, [projects])
        assert rejects() == [(0, "usage.input_tokens is null")]  # gone files keep their record
        path.write_bytes(call(3))
        sync(index, [projects])
        assert rejects() == []


def test_sync_only_named_files(tmp_path: Path) -> None:
    """A watcher's pass: only the named files are looked at (others wait for the next full pass)."""
    index, projects, path = setup(tmp_path, call(1))
    other = path.with_name("t.jsonl")
    other.write_bytes(call(2))
    with index:
        sync(index, [projects])
        for p, n in ((path, 3), (other, 4)):
            with p.open("ab") as f:
                f.write(call(n))
        outside = tmp_path / "elsewhere.jsonl"
        outside.write_bytes(call(9))
        report = sync(index, [projects], only={str(path), str(outside), str(projects / "-w" / "missing.jsonl")})
        assert (report.files_seen, report.files_read, report.bytes_read) == (1, 1, len(call(3)))
        assert [c[1] for c in calls(index)] == [1, 2, 3]
        other.unlink()
        report = sync(index, [projects], only={str(path)})
        assert report.files_gone == 0  # not named: its deletion is seen by the next full pass
        report = sync(index, [projects])
        assert (report.files_gone, report.files_read) == (1, 0)
        assert [c[1] for c in calls(index)] == [1, 2, 3]  # t.jsonl's appended call was never read, its first kept
        path.unlink()
        assert sync(index, [projects], only={str(path)}).files_gone == 1


def test_chunk_boundaries_do_not_change_what_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines crossing a read chunk's end, and lines longer than a chunk, parse as if read whole,
    whether each chunk is a fresh bytes or the reused buffer (holding the last read's bytes past
    this read's end)."""
    user = orjson.dumps(
        {"type": "user", "uuid": "5b0a7f9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b", "timestamp": "2026-01-01T00:00:00.500Z"}
    )
    data = b"".join(call(n, pad="x" * (n * 37 % 300)) + (user + b"\n" if n % 3 else b"\n") for n in range(1, 30))
    path = tmp_path / "p" / "s.jsonl"
    path.parent.mkdir()
    path.write_bytes(data + call(99)[:-1])  # a partial last line waits
    whole = parse_lines(data, 0, FileContext.for_path(str(path)), None)
    assert len(whole.calls) == 29
    size = path.stat().st_size
    # A plan's size older than the file (it grew since): the small reads ask for less than is there.
    for chunk, reuse, seen in itertools.product((64, 333, 1000, 4096, CHUNK_BYTES), (0, 1 << 40), (0, 700, size)):
        monkeypatch.setattr(tail, "CHUNK_BYTES", chunk)
        monkeypatch.setattr(tail, "REUSE_BYTES", reuse)
        monkeypatch.setattr(tail, "SMALL_READ_SLACK", 100)
        got = read_plan(ReadPlan(str(path), 0, True, None, seen))
        assert got is not None
        assert (got.parsed, got.state.offset, got.state.lines) == (whole, len(data), whole.lines)
        assert got.state.size == size
        # the hashes cover the bytes read, whether they are taken as they pass by or read again
        assert (got.state.fp_len, got.state.fp_hash) == (FINGERPRINT_BYTES, hash64(data[:FINGERPRINT_BYTES]))
        assert got.state.tail_hash == hash64(data[-tail.TAIL_BYTES :])


def test_a_small_file_is_read_in_one_read_of_about_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pread allocates what it asks for: a small file's read asks for the size its plan saw plus
    a little, not a whole chunk, and a short read (the end of the file) is not followed by another."""
    path = tmp_path / "p" / "s.jsonl"
    path.parent.mkdir()
    lines = call(1, pad="x" * 700) + call(2)
    path.write_bytes(lines + call(3)[:-1])
    asked: list[int] = []
    real = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        asked.append(n)
        return real(fd, n, offset)

    monkeypatch.setattr(tail.os, "pread", pread)
    got = read_plan(ReadPlan(str(path), 0, True, None, path.stat().st_size))
    assert got is not None
    assert [c.input_tokens for c in got.parsed.calls] == [1, 2]
    # one read: the fingerprint and the tail hash are of bytes it read
    assert asked == [path.stat().st_size + tail.SMALL_READ_SLACK]
    assert got.state == tail.FileState(
        got.state.path, got.state.device, got.state.inode, fp_len=FINGERPRINT_BYTES,
        fp_hash=hash64(lines[:FINGERPRINT_BYTES]), size=path.stat().st_size, mtime_ns=got.state.mtime_ns,
        offset=len(lines), tail_hash=hash64(lines[-tail.TAIL_BYTES :]), last_user_ms=None, lines=2,
    )  # fmt: skip


def test_a_file_grown_past_its_plan_is_read_on_by_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file planned small (here empty) that has grown meanwhile is read to its end through the
    chunk buffer, not by reads of the plan's size: 1 MB of 8 kB lines in a few reads, not ~130."""
    path = tmp_path / "p" / "s.jsonl"
    path.parent.mkdir()
    lines = b"".join(call(n, pad="x" * 8000) for n in range(1, 130))
    path.write_bytes(lines)
    reads: list[int] = []
    real_pread, real_preadv = os.pread, os.preadv

    def pread(fd: int, n: int, offset: int) -> bytes:
        reads.append(n)
        return real_pread(fd, n, offset)

    def preadv(fd: int, buffers: list[bytearray], offset: int) -> int:
        reads.append(len(buffers[0]))
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(tail.os, "pread", pread)
    monkeypatch.setattr(tail.os, "preadv", preadv)
    got = read_plan(ReadPlan(str(path), 0, True, None, 0))
    assert got is not None
    assert (len(got.parsed.calls), got.state.offset) == (129, len(lines))
    assert len(reads) <= 3


@pytest.mark.parametrize("reuse", [0, 1 << 40])
def test_a_line_too_long_to_read_is_rejected_and_the_file_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reuse: int
) -> None:
    """A line over MAX_LINE_BYTES (a crash's run of NULs can be gigabytes) is rejected without being
    read whole; the calls around it count, and the user line before it still times the next call."""
    monkeypatch.setattr(tail, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(tail, "REUSE_BYTES", reuse)
    monkeypatch.setattr(tail, "MAX_LINE_BYTES", 10_000)
    user = orjson.dumps(
        {"type": "user", "uuid": "5b0a7f9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b", "timestamp": "2026-01-01T00:00:00.500Z"}
    )
    path = tmp_path / "p" / "s.jsonl"
    path.parent.mkdir()
    long_at = len(call(1)) + len(user) + 1
    path.write_bytes(call(1) + user + b"\n" + b"\x00" * 10_001 + b"\n" + call(2))
    got = read_plan(ReadPlan(str(path), 0, True, None, path.stat().st_size))
    assert got is not None
    assert [c.input_tokens for c in got.parsed.calls] == [1, 2]
    assert got.parsed.calls[1].latency_ms == 1500  # from the user line at 00:00:00.500 to 00:00:02
    assert [(r.offset, r.reason) for r in got.parsed.rejects] == [
        (long_at, "line too long to read (10,001 bytes; at most 10,000)")
    ]
    assert (got.state.offset, got.parsed.lines) == (path.stat().st_size, 4)
    assert got.state.tail_hash == hash64(path.read_bytes()[-tail.TAIL_BYTES :])
    path.write_bytes(call(1) + b"\x00" * 10_001 + b"\n")  # ending with it: the tail hash is of its bytes
    got = read_plan(ReadPlan(str(path), 0, True, None, path.stat().st_size))
    assert got is not None and len(got.parsed.rejects) == 1
    assert (got.state.offset, got.state.tail_hash) == (path.stat().st_size, hash64(b"\x00" * 63 + b"\n"))
