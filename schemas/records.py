"""What the transcript parser hands to the store: one row per call line, event or rejected line.

The idea: rows are NamedTuples of plain values, cheap to make by the hundred thousand; parsed calls
leave worker processes as numeric column arrays (indexer/columns.py) and are merged into `calls`
by call identity (indexer/store.py). Nothing here holds message
content; `error` is the first 200 characters of an API error notice, never prompt or reply text.
"""

from __future__ import annotations

from typing import NamedTuple

from schemas import SYNTHETIC_MODEL as SYNTHETIC_MODEL  # defined there so reports need not import this module


class CallRow(NamedTuple):
    """One usage-bearing transcript line, or the merge of several lines of one call identity."""

    key: int  # 64-bit hash of (message.id, requestId), or of the line itself when it has no id
    msg_hash: int  # 64-bit hash of message.id alone (0 when absent): finds sidechain replays
    ts_ms: int  # earliest timestamp, ms since the epoch, UTC
    model: str
    session: str
    project: str  # cwd path, or the encoded project folder name when no cwd
    branch: str | None
    version: str | None
    agent_id: str | None
    sidechain: bool
    failed: bool
    input_tokens: int
    output_tokens: int
    cache_5m_tokens: int
    cache_1h_tokens: int
    cache_read_tokens: int
    web_searches: int
    fast: bool
    cost_usd: float | None  # the line's own costUSD (older Claude Code versions)
    latency_ms: int | None
    error: str | None


class EventRow(NamedTuple):
    """A non-call line worth keeping as activity: a compaction boundary."""

    key: int
    ts_ms: int
    kind: str
    session: str
    project: str
    detail: str | None


class RejectRow(NamedTuple):
    """A complete line that could not be used: where it is and why, never what it said."""

    path: str
    offset: int
    reason: str
