"""Decide what of a transcript is new, and read exactly that: complete lines after the stored offset.

The idea (pygtail's, with a twist): a file is known by its identity (device, inode, a hash of its
first bytes) plus the offset of its last complete line and a hash of the bytes just before it.
If all still match, only bytes after the offset are read, so cost follows new bytes, not file
size. If the file shrank or any of them changed, the file was rewritten and is read whole; call
identities keep that idempotent. A trailing partial line is left for the next read. The offset
is committed in the same transaction as the rows it produced (see store.py).
"""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from indexer.parse import FileContext, ParseResult, hash64, parse_lines
from schemas.records import CallRow, EventRow, RejectRow

if TYPE_CHECKING:
    from indexer import _scan

FINGERPRINT_BYTES = 1024
TAIL_BYTES = 64
CHUNK_BYTES = 4 << 20
# A read of more than this goes through the thread's reused chunk buffer (see _chunk_buffer).
REUSE_BYTES = 128 << 10
# A smaller read asks for the bytes its plan saw plus this much: a pread allocates what it asks
# for, and asking for a whole chunk put a fresh 4 MiB block (mapped, faulted, unmapped) under
# every small file read (~45,000 page faults and 0.15 s of system time per parser in a 1 GiB
# rebuild).
SMALL_READ_SLACK = 4096
# A line longer than this is not read: it is rejected (never a real transcript line, which is
# megabytes at most; a run of NULs left by a crash can be gigabytes). Reading it whole would take
# that much memory, and Linux returns at most ~2 GiB per read.
MAX_LINE_BYTES = 1 << 30
_local = threading.local()


@dataclass(frozen=True)
class FileState:
    """What the index remembers of one transcript file."""

    path: str
    device: int
    inode: int
    fp_len: int
    fp_hash: int
    size: int
    mtime_ns: int
    offset: int
    tail_hash: int
    last_user_ms: int | None
    lines: int = 0  # complete lines read so far (since the last rewrite)
    gone: bool = False


@dataclass(frozen=True)
class ReadPlan:
    """Read `path` from `start` (0 and `reset` when the file was rewritten)."""

    path: str
    start: int
    reset: bool
    last_user_ms: int | None
    size: int
    prev_lines: int = 0


@dataclass
class ReadResult:
    """Rows from one file read plus the new state to store with them (Reads.of gathers reads)."""

    plan: ReadPlan
    parsed: ParseResult
    state: FileState
    bytes_read: int
    call_lines: int  # calls read, into parsed.calls or its sink


# A FileState's stored fields besides its path, in the order of its own fields (and of `files`):
# FileState(*row) makes a state of a row.
STATE_FIELDS = (
    *("device", "inode", "fp_len", "fp_hash", "size", "mtime_ns"),
    *("offset", "tail_hash", "last_user_ms", "lines"),
)
state_row = operator.attrgetter("path", *STATE_FIELDS)  # a FileState as a `files` row (one C call)


@dataclass
class Reads:
    """Finished reads of some files, as the writer counts and stores them: plain rows and counts.

    The idea: a parser process hands its reads to the writer pickled, and the writer unpickles
    them on a core the parsers want. As ReadResults (four dataclasses a file) that took ~20 us a
    file, 0.13 s of CPU in a 1 GiB rebuild; as tuples and ints, 4 ms. `read` and `states` go
    file by file, in the same order.
    """

    states: list[tuple[Any, ...]]  # each file's new state (state_row)
    read: list[int]  # each file's bytes read
    rereads: list[str]  # files read again from their start (rewritten or re-created)
    events: list[EventRow]
    rejects: list[RejectRow]
    calls: list[CallRow]  # reads done in this process; a parser process sends its calls as columns
    lines: int
    call_lines: int

    @classmethod
    def of(cls, results: Iterable[ReadResult], calls: bool = True) -> Reads:
        """The reads of `results`; with `calls` false, without their calls (sent as columns)."""
        results = list(results)
        return cls(
            states=[state_row(r.state) for r in results],
            read=[r.bytes_read for r in results],
            rereads=[r.plan.path for r in results if r.plan.reset],
            events=[e for r in results for e in r.parsed.events],
            rejects=[j for r in results for j in r.parsed.rejects],
            calls=[c for r in results for c in r.parsed.calls] if calls else [],
            lines=sum(r.parsed.lines for r in results),
            call_lines=sum(r.call_lines for r in results),
        )

    def file_states(self) -> list[FileState]:
        return [FileState(*row) for row in self.states]


def _hash(data: bytes) -> int:
    """A FileState hash: of no bytes, 0."""
    return hash64(data) if data else 0


def _hash_range(fd: int, start: int, length: int) -> int:
    return _hash(os.pread(fd, length, start)) if length > 0 else 0


def plan_read(path: str, st: os.stat_result, state: FileState | None) -> ReadPlan | None:
    """What to read of `path` given its stat and stored state; None when nothing changed."""
    if state is None or state.gone:
        return ReadPlan(path, 0, state is not None, None, st.st_size)
    same_node = (st.st_dev, st.st_ino) == (state.device, state.inode)
    if same_node and st.st_size == state.size and st.st_mtime_ns == state.mtime_ns:
        return None
    fresh = ReadPlan(path, 0, True, None, st.st_size)
    if not same_node or st.st_size < state.offset or st.st_size < state.fp_len:
        return fresh
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if _hash_range(fd, 0, state.fp_len) != state.fp_hash:
            return fresh
        tail_start = max(0, state.offset - TAIL_BYTES)
        if _hash_range(fd, tail_start, state.offset - tail_start) != state.tail_hash:
            return fresh
    finally:
        os.close(fd)
    return ReadPlan(path, state.offset, False, state.last_user_ms, st.st_size, state.lines)


def _line_end(fd: int, start: int) -> tuple[bool, int]:
    """(True, offset just past the first b"\\n" at or after `start`), or (False, end of file).

    Scans in chunks without keeping them, so finding the end of a long line costs no memory.
    """
    pos = start
    while True:
        chunk = os.pread(fd, CHUNK_BYTES, pos)
        if not chunk:
            return False, pos
        i = chunk.find(b"\n")
        if i >= 0:
            return True, pos + i + 1
        pos += len(chunk)


def _chunk_buffer() -> bytearray:
    """This thread's chunk buffer, made once: reading into it costs a copy and no page faults.

    A fresh 4 MiB `bytes` per read is mapped anew by malloc and faulted in page by page as the
    kernel copies into it: 0.9-1.1 s of CPU per GiB read, against 0.23 s into a reused buffer
    (BENCHMARKS.md, session 7). Per thread, so the service's threads never share one.
    """
    buf: bytearray | None = getattr(_local, "buffer", None)
    if buf is None or len(buf) != CHUNK_BYTES:
        buf = _local.buffer = bytearray(CHUNK_BYTES)
    return buf


def read_plan(plan: ReadPlan, sink: _scan.Sink | None = None) -> ReadResult | None:
    """Read complete lines from plan.start to end of file; None if the file vanished.

    Memory stays bounded by the chunk size, or by one line when a line is longer than a chunk:
    such a line is located first and then read in one piece, never grown by concatenation.
    With a `sink` (a parser process's), the calls go into its columns.
    """
    ctx = FileContext.for_path(plan.path)
    try:
        fd = os.open(plan.path, os.O_RDONLY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        parsed = ParseResult(last_user_ms=plan.last_user_ms, sink=sink)
        had = len(sink) if sink is not None else 0
        pos = end = plan.start
        # Copies of the bytes the fingerprint and the tail hash cover, kept as they pass by
        # (FileState): read again only where they did not (a line too long to read ends the file).
        head = b""
        tail, tail_end = b"", -1
        buf = _chunk_buffer() if plan.size - plan.start > REUSE_BYTES else None
        while True:
            chunk: bytes | bytearray
            if buf is None and pos >= plan.size:  # the file grew past its plan: read on by chunks
                buf = _chunk_buffer()
            if buf is None:  # asks for what the plan saw, plus room to see the end of file
                want = min(CHUNK_BYTES, plan.size - pos + SMALL_READ_SLACK)
                chunk = os.pread(fd, want, pos)
                n = len(chunk)
            else:  # only chunk[:n] is this read's
                want = CHUNK_BYTES
                chunk, n = buf, os.preadv(fd, [buf], pos)
            end = pos + n
            if not n:
                break
            at_end = n < want  # a short read of a regular file: its end, no need to read again
            cut = chunk.rfind(b"\n", 0, n) + 1  # the chunk's complete lines are parsed in place
            if not cut:
                at_end = False  # the file's end was looked for anew below
                complete, line_end = _line_end(fd, end)
                if not complete:
                    end = line_end
                    break  # a partial last line: wait for its newline
                if line_end - 1 - pos > MAX_LINE_BYTES:  # its length, without the newline
                    reason = f"line too long to read ({line_end - 1 - pos:,} bytes; at most {MAX_LINE_BYTES:,})"
                    parsed.rejects.append(RejectRow(plan.path, pos, reason))
                    parsed.lines += 1
                    pos = line_end
                    continue
                del chunk
                chunk = os.pread(fd, line_end - pos, pos)
                if len(chunk) != line_end - pos or not chunk.endswith(b"\n"):
                    break  # the file changed under us; the next pass sees it
                cut = len(chunk)
            _add(parsed, parse_lines(chunk, pos, ctx, parsed.last_user_ms, cut, sink))
            if pos == 0:
                head = bytes(chunk[: min(cut, FINGERPRINT_BYTES)])
            tail, tail_end = bytes(chunk[max(0, cut - TAIL_BYTES) : cut]), pos + cut
            del chunk
            pos += cut
            if at_end:
                break
        fp_len = min(FINGERPRINT_BYTES, pos)  # read bytes only: a partial line may yet be cut off
        tail_start = max(0, pos - TAIL_BYTES)
        state = FileState(
            path=plan.path,
            device=st.st_dev,
            inode=st.st_ino,
            fp_len=fp_len,
            fp_hash=_hash(head[:fp_len]) if len(head) >= fp_len else _hash_range(fd, 0, fp_len),
            size=end,
            mtime_ns=st.st_mtime_ns,
            offset=pos,
            tail_hash=_hash(tail)
            if tail_end == pos and len(tail) == pos - tail_start
            else _hash_range(fd, tail_start, pos - tail_start),
            last_user_ms=parsed.last_user_ms,
            lines=plan.prev_lines + parsed.lines,
        )
    finally:
        os.close(fd)
    calls = len(parsed.calls) + (len(sink) - had if sink is not None else 0)
    return ReadResult(plan, parsed, state, pos - plan.start, calls)


def _add(into: ParseResult, part: ParseResult) -> None:
    into.calls += part.calls
    into.events += part.events
    into.rejects += part.rejects
    into.lines += part.lines
    into.last_user_ms = part.last_user_ms
