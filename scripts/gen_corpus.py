#!/usr/bin/env python3
"""Generate a realistic Claude Code transcript tree for benchmarks, plus the totals it must index to.

    scripts/gen_corpus.py OUT --size 1GiB [--seed N] [--days 60] [--end 2026-11-22] [--jobs 2]

writes OUT/projects/... and OUT/corpus-summary.json.

The idea: a transcript is mostly bytes nobody counts (tool results, progress lines, snapshots), with
a few usage-bearing assistant lines in between. Lines are built from string templates and slices of
a pre-escaped filler text (no json.dumps per line), so 1 GiB takes seconds. The generator knows every
call it writes, so it computes the expected totals itself, with the counting rules of issue 2
(one call per (message.id, requestId), each usage field its maximum over the call's lines, sidechain
replays and `<synthetic>` non-errors not counted), and also the "first line wins" totals that a
first-seen de-duplication (as ccusage does) would report.

What the tree holds, per the format notes in ../shared/claude-jsonl-format.md:
- sessions of 2.1.x style (progress lines, 1-hour cache writes, subagents under
  `<session>/subagents/agent-<id>.jsonl` with a `.meta.json`, compaction agents `agent-acompact-*`)
  and of 2.0.x style (no progress lines, subagents as `<project>/agent-<id>.jsonl`);
- session sizes from a log-normal: many files of a few KB, a long tail to tens of MB;
- assistant calls streamed as 1-4 lines per message.id with a repeated usage snapshot; the final
  output_tokens count comes last, sometimes after another line, and sometimes never;
- web search and fast-mode calls, four models (one without a price), API error lines
  (`<synthetic>`, isApiErrorMessage), `compact_boundary` system lines, forked sessions that copy a
  prefix of their parent into a new file, sidechain lines replaying a parent call under a new
  requestId, summary-only files and non-transcript files (`sessions-index.json`, `journal.jsonl`).

Deterministic for a seed: every session family draws from its own generator seeded by the planner.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SUMMARY_NAME = "corpus-summary.json"
DEFAULT_END = "2026-11-22"
DAY_MS = 86_400_000
OVERSHOOT = 1.16  # written / planned bytes, measured at 200 MiB - 1 GiB

# model id -> (input, output, write 5m, write 1h, read, long-context rates or None, fast multiplier), USD per MTok.
PRICES: dict[str, tuple[float, float, float, float, float, tuple[float, ...] | None, float]] = {
    "claude-opus-4-6": (5, 25, 6.25, 10, 0.50, None, 6),
    "claude-sonnet-4-5-20250929": (3, 15, 3.75, 6, 0.30, (6, 22.5, 7.5, 12, 0.60), 1),
    "claude-haiku-4-5-20251001": (1, 5, 1.25, 2, 0.10, None, 1),
}
UNKNOWN_MODEL = "claude-nimbus-9-20260401"  # deliberately absent from every price list
MODELS = ("claude-opus-4-6", "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001", UNKNOWN_MODEL)
MODEL_WEIGHTS = (0.50, 0.30, 0.15, 0.05)
LONG_CONTEXT_TOKENS = 200_000
WEB_SEARCH_USD = 0.01
VERSIONS_21 = ("2.1.38", "2.1.39", "2.1.42", "2.1.50", "2.1.52")
VERSION_20 = "2.0.76"
SPEED_SINCE = "2.1.50"  # versions from here on write usage.speed
# Usage fields in the order they are accumulated.
FIELDS = ("input", "output", "cache_5m", "cache_1h", "cache_read", "web")

_WORD_TEXT = (
    "the a of to and in is for on with that this it as be by are from at or an not file line test "
    "function return value error import class def self data path config index call token cache read "
    "write update query result module package build run check status json parse lines bytes offset "
    "session project model usage cost total daily report server client request response handler "
    "über café naïve résumé → ✓ 数据 テスト 🚀"
)
WORDS = _WORD_TEXT.split()
CODE = (
    "    def {w}(self, {v}: int) -> None:",
    "        return {w}({v})",
    "import {w}",
    "  {w}.{v} = {v}_{w}",
    "\\t{w}: {v}",
    "ERROR {w} failed: {v} not found",
    "test_{w}_{v} PASSED",
    "{w}/{v}.py:{n}: E501 line too long",
    "-rw-r--r-- 1 user user {n} Nov 23 01:{n2} {w}.{v}",
    '  File \\"/usr/lib/python3.11/{w}.py\\", line {n}, in {v}',
    '<div class=\\"{w}\\">{v}</div>',
    '{{\\"{w}\\": {n}, \\"{v}\\": \\"{w}\\"}}',
)
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]i?B?|B)?\s*", text, re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 1GiB, 200MiB, 5000000)")
    unit = (m.group(2) or "B").upper().rstrip("B").rstrip("I")
    power = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit]
    base = 1024 if "I" in (m.group(2) or "").upper() or unit == "" else 1000
    return int(float(m.group(1)) * base**power)


class Filler:
    """A few MB of JSON-escaped text; slices start at a line start and never end inside an escape."""

    def __init__(self, seed: int = 0xC0FFEE, chars: int = 2 << 20) -> None:
        rng = random.Random(seed)
        parts: list[str] = []
        starts: list[int] = []
        pos = 0
        while pos < chars:
            if rng.random() < 0.6:
                tmpl = rng.choice(CODE)
                line = tmpl.format(
                    w=rng.choice(WORDS), v=rng.choice(WORDS), n=rng.randrange(1, 9999), n2=10 + rng.randrange(50)
                )
            else:
                line = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 18)))
                if rng.random() < 0.01:
                    line += "\u2028" + rng.choice(WORDS)  # raw U+2028: valid JSON, a trap for splitlines()
            starts.append(pos)
            parts.append(line)
            pos += len(line) + 2  # + the two characters of the escaped newline
        self.text = "\\n".join(parts)
        self.half = len(self.text) // 2
        self.starts = [s for s in starts if s < self.half]
        self.b64 = "".join(rng.choice(B64) for _ in range(1 << 16))

    def take(self, rng: random.Random, n: int) -> str:
        if n <= 0:
            return ""
        if n > self.half:
            pieces = []
            while n > 0:
                piece = self.take(rng, min(n, self.half))
                pieces.append(piece)
                n -= len(piece) + 2
            return "\\n".join(pieces)
        s = self.starts[rng.randrange(len(self.starts))]
        t = self.text[s : s + n]
        return t[:-1] if t.endswith("\\") else t

    def sig(self, rng: random.Random, n: int) -> str:
        s = rng.randrange(len(self.b64) - n)
        return self.b64[s : s + n]


_DAYS: dict[int, str] = {}


def iso(ms: int) -> str:
    """ms since the epoch -> `2026-02-10T22:57:57.941Z`, without datetime per call."""
    day, rem = divmod(ms, DAY_MS)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%dT")
    s, milli = divmod(rem, 1000)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return "%s%02d:%02d:%02d.%03dZ" % (prefix, h, m, s, milli)  # noqa: UP031 (fast path)


def day_of(ms: int) -> str:
    return iso(ms)[:10]


@dataclass
class Totals:
    """Token sums for one group of calls."""

    calls: int = 0
    failed: int = 0
    input: int = 0
    output: int = 0
    cache_5m: int = 0
    cache_1h: int = 0
    cache_read: int = 0
    web: int = 0
    fast: int = 0
    cost: float = 0.0

    def add(self, u: tuple[int, ...], cost: float, fast: bool, failed: bool = False) -> None:
        self.calls += 1
        self.failed += failed
        self.input += u[0]
        self.output += u[1]
        self.cache_5m += u[2]
        self.cache_1h += u[3]
        self.cache_read += u[4]
        self.web += u[5]
        self.fast += fast
        self.cost += cost

    def merge(self, other: Totals) -> None:
        for k in ("calls", "failed", "input", "output", "cache_5m", "cache_1h", "cache_read", "web", "fast", "cost"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_dict(self) -> dict[str, Any]:
        creation = self.cache_5m + self.cache_1h
        return {
            "calls": self.calls,
            "failed_calls": self.failed,
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cache_creation_tokens": creation,
            "cache_5m_tokens": self.cache_5m,
            "cache_1h_tokens": self.cache_1h,
            "cache_read_tokens": self.cache_read,
            "total_tokens": self.input + self.output + creation + self.cache_read,
            "web_searches": self.web,
            "fast_calls": self.fast,
            "cost_usd": round(self.cost, 6),
        }


def call_cost(model: str, u: tuple[int, ...], fast: bool) -> float:
    """Issue 3's rule: long context reprices every kind; web search per request; fast multiplies."""
    p = PRICES.get(model)
    if p is None:
        return 0.0
    rates: tuple[float, ...] = p[:5]
    if p[5] is not None and u[0] + u[2] + u[3] + u[4] > LONG_CONTEXT_TOKENS:
        rates = p[5]
    tokens = u[0] * rates[0] + u[1] * rates[1] + u[2] * rates[2] + u[3] * rates[3] + u[4] * rates[4]
    cost = tokens / 1e6 + u[5] * WEB_SEARCH_USD
    return cost * p[6] if fast else cost


@dataclass
class Stats:
    """What one session family wrote and what it must index to."""

    files: int = 0
    other_files: int = 0
    bytes: int = 0
    lines: int = 0
    largest: int = 0
    sizes: list[int] = field(default_factory=list)
    call_lines: int = 0  # lines with message.usage (incl. errors, synthetic and replays)
    replays: int = 0
    synthetic_lines: int = 0
    nested_usage_lines: int = 0  # progress lines carrying a nested usage object (never calls)
    chars_by_type: dict[str, int] = field(default_factory=dict)
    total: Totals = field(default_factory=Totals)
    first_line: Totals = field(default_factory=Totals)  # first line of each (id, requestId), replays included
    by_model: dict[str, Totals] = field(default_factory=dict)
    by_day: dict[str, Totals] = field(default_factory=dict)

    def merge(self, o: Stats) -> None:
        self.files += o.files
        self.other_files += o.other_files
        self.bytes += o.bytes
        self.lines += o.lines
        self.largest = max(self.largest, o.largest)
        self.sizes += o.sizes
        self.call_lines += o.call_lines
        self.replays += o.replays
        self.synthetic_lines += o.synthetic_lines
        self.nested_usage_lines += o.nested_usage_lines
        for k, v in o.chars_by_type.items():
            self.chars_by_type[k] = self.chars_by_type.get(k, 0) + v
        self.total.merge(o.total)
        self.first_line.merge(o.first_line)
        for src, dst in ((o.by_model, self.by_model), (o.by_day, self.by_day)):
            for k, t in src.items():
                dst.setdefault(k, Totals()).merge(t)


@dataclass
class FamilyPlan:
    """One main session and what hangs off it; sizes in bytes (characters, near enough)."""

    index: int
    seed: int
    project: int
    start_ms: int
    main_bytes: int
    sub_bytes: list[int]
    fork_bytes: int  # 0: no fork


@dataclass
class Project:
    cwd: str
    folder: str
    branch: str


def make_projects(rng: random.Random, n: int) -> list[Project]:
    out = []
    users = ("alice", "bob", "USER", "marco", "dev")
    for i in range(n):
        user = rng.choice(users)
        name = f"{rng.choice(WORDS[:60])}-{rng.choice(WORDS[:60])}-{i}"
        cwd = f"/home/{user}/projects/{name}" if rng.random() < 0.8 else f"/Users/{user}/src/{name}.app"
        folder = re.sub(r"[^A-Za-z0-9]", "-", cwd)
        out.append(Project(cwd, folder, rng.choice(("main", "master", "dev", f"feature/{name[:12]}"))))
    return out


def plan_families(size: int, seed: int, days: int, end_ms: int) -> tuple[list[Project], list[FamilyPlan]]:
    rng = random.Random(seed)
    projects = make_projects(rng, max(5, min(120, size // (12 << 20))))
    # A few projects hold most sessions, as with real users.
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(projects))]
    families: list[FamilyPlan] = []
    planned = 0
    median = 40_000 if size >= 64 << 20 else 12_000
    cap = max(200_000, min(48 << 20, size // 20))
    while planned < size:
        main = int(min(cap, max(1500, rng.lognormvariate(math.log(median), 1.9))))
        subs: list[int] = []
        if rng.random() < 0.35:
            subs = [
                int(min(cap // 4, max(3000, rng.lognormvariate(math.log(20_000), 1.2))))
                for _ in range(rng.randrange(1, 6))
            ]
        fork = int(min(cap // 2, max(2000, rng.lognormvariate(math.log(15_000), 1.5)))) if rng.random() < 0.08 else 0
        start = end_ms - int(rng.random() * days * DAY_MS)
        fam = FamilyPlan(
            len(families), rng.getrandbits(63), rng.choices(range(len(projects)), weights)[0], start, main, subs, fork
        )
        families.append(fam)
        # A fork copies part of its parent; count about half of that copy too.
        # Sessions end at a turn boundary, past their budget: OVERSHOOT calibrates for that.
        planned += int((main + sum(subs) + (fork + main // 2 if fork else 0)) * OVERSHOOT)
    return projects, families


def uid(rng: random.Random) -> str:
    h = "%032x" % rng.getrandbits(128)  # noqa: UP031
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


class Session:
    """Writes one transcript file's lines and accounts for its calls."""

    def __init__(
        self,
        g: Family,
        cwd: str,
        session_id: str,
        version: str,
        branch: str,
        start_ms: int,
        model: str,
        agent_id: str | None = None,
    ) -> None:
        self.g = g
        self.rng = g.rng
        self.version = version
        self.v21 = version.startswith("2.1")
        self.speed = version >= SPEED_SINCE
        self.sidechain = agent_id is not None
        self.agent_id = agent_id
        agent = f',"agentId":"{agent_id}"' if agent_id else ""
        slug = f',"slug":"{g.slug}"' if self.v21 else ""
        self.head = (
            f',"isSidechain":{"true" if self.sidechain else "false"},"userType":"external","cwd":"{cwd}",'
            f'"sessionId":"{session_id}","version":"{version}","gitBranch":"{branch}"{agent}{slug}'
        )
        self.session_id = session_id
        self.ts = start_ms
        self.parent = "null"
        self.lines: list[str] = []
        self.chars = 0
        self.model = model
        self.one_hour = self.v21 and self.rng.random() < 0.65
        # usage.speed exists only from SPEED_SINCE on; fast mode is an Opus 4.6 option.
        self.fast = self.speed and model == "claude-opus-4-6" and self.rng.random() < 0.15
        self.ctx = 0
        self.ctx_limit = 380_000 if model.startswith("claude-sonnet") and self.rng.random() < 0.2 else 155_000
        self.deferred: tuple[str, str, bool] | None = None
        self.is_call: list[bool] = []  # per line: does the index count it as a call line?
        self.calls: list[int] = []  # indices of complete-usage assistant lines (for replays)
        self.compactions = 0

    # -- low level ---------------------------------------------------------------------------
    def emit(self, line: str, kind: str, call: bool = False) -> None:
        self.lines.append(line)
        self.is_call.append(call)
        self.chars += len(line)
        cb = self.g.stats.chars_by_type
        cb[kind] = cb.get(kind, 0) + len(line)
        if self.deferred is not None and kind != "assistant":
            late, self.deferred = self.deferred, None
            self.emit(*late)

    def tick(self, lo: float, hi: float) -> str:
        self.ts += int(1000 * (lo + (hi - lo) * self.rng.random()))
        return iso(self.ts)

    def new_uuid(self) -> str:
        u = uid(self.rng)
        self.parent = f'"{u}"'
        return u

    # -- lines ---------------------------------------------------------------------------------
    def prompt(self) -> None:
        rng, f = self.rng, self.g.filler
        if self.v21 and rng.random() < 0.5:
            mid = uid(rng)
            self.emit(
                f'{{"type":"file-history-snapshot","messageId":"{mid}","snapshot":{{"messageId":"{mid}",'
                f'"trackedFileBackups":{{}},"timestamp":"{iso(self.ts)}"}},"isSnapshotUpdate":false}}\n',
                "file-history-snapshot",
            )
        text = f.take(rng, int(min(6000, rng.lognormvariate(math.log(160), 1.0))))
        parent = self.parent
        u = self.new_uuid()
        ts = self.tick(5, 900)
        self.emit(
            f'{{"parentUuid":{parent}{self.head},"type":"user","message":{{"role":"user","content":"{text}"}},'
            f'"uuid":"{u}","timestamp":"{ts}","thinkingMetadata":{{"maxThinkingTokens":31999}},"todos":[],'
            f'"permissionMode":"default"}}\n',
            "user",
        )

    def usage(self, u: tuple[int, ...], web_field: bool) -> str:
        c5, c1 = u[2], u[3]
        extra = ""
        if web_field:
            extra += f',"server_tool_use":{{"web_search_requests":{u[5]},"web_fetch_requests":0}}'
        if self.speed:
            extra += ',"speed":"fast"' if self.fast else ',"speed":"standard"'
        geo = ',"inference_geo":"not_available"' if self.v21 else ""
        return (
            f'{{"input_tokens":{u[0]},"cache_creation_input_tokens":{c5 + c1},"cache_read_input_tokens":{u[4]},'
            f'"cache_creation":{{"ephemeral_5m_input_tokens":{c5},"ephemeral_1h_input_tokens":{c1}}},'
            f'"output_tokens":{u[1]},"service_tier":"standard"{geo}{extra}}}'
        )

    def call(self, tool: str | None) -> str | None:
        """One API response: 1-4 lines sharing message.id and requestId. Returns the tool_use id."""
        rng, f, g = self.rng, self.g.filler, self.g
        model = self.model
        if rng.random() < 0.03:
            model = rng.choices(MODELS, MODEL_WEIGHTS)[0]
        msg_id = "msg_01%022x" % rng.getrandbits(88)  # noqa: UP031
        req_id = "req_011C%020x" % rng.getrandbits(80)  # noqa: UP031
        first = self.ctx == 0
        if first:
            creation = int(rng.uniform(8_000, 30_000))
            read = int(rng.uniform(0, 15_000)) if rng.random() < 0.5 else 0
        else:
            creation = int(min(60_000, rng.lognormvariate(math.log(900), 1.3)))
            read = self.ctx
        inp = rng.randrange(1, 12) if rng.random() < 0.9 else rng.randrange(12, 4000)
        c1 = creation if self.one_hour else 0
        web = rng.randrange(1, 4) if self.v21 and rng.random() < 0.03 else 0
        blocks: list[str] = []
        if rng.random() < 0.45:
            blocks.append(
                f'{{"type":"thinking","thinking":"{f.take(rng, int(rng.lognormvariate(math.log(500), 1.0)))}",'
                f'"signature":"{f.sig(rng, rng.randrange(200, 1200))}"}}'
            )
        if rng.random() < 0.6 or tool is None:
            blocks.append(f'{{"type":"text","text":"{f.take(rng, int(rng.lognormvariate(math.log(220), 1.1)))}"}}')
        tool_id = None
        if tool is not None:
            tool_id = "toolu_01%022x" % rng.getrandbits(88)  # noqa: UP031
            cmd = f.take(rng, int(rng.lognormvariate(math.log(110), 0.8)))
            blocks.append(
                f'{{"type":"tool_use","id":"{tool_id}","name":"{tool}","input":{{"command":"{cmd}",'
                f'"description":"{f.take(rng, 40)}"}},"caller":{{"type":"direct"}}}}'
            )
        early_out = rng.randrange(1, 30)
        final_out = max(early_out, int(rng.lognormvariate(math.log(260), 1.1)))
        has_final = rng.random() >= 0.12  # some groups never get their final count
        outs = [early_out] * len(blocks)
        if has_final:
            outs[-1] = final_out
        late = has_final and len(blocks) > 1 and rng.random() < 0.3
        web_field = self.v21
        lines_u: list[tuple[int, ...]] = []
        for i, (block, out) in enumerate(zip(blocks, outs, strict=True)):
            u = (inp, out, creation - c1, c1, read, web if i == len(blocks) - 1 and has_final else 0)
            lines_u.append(u)
            parent = self.parent
            line_uuid = self.new_uuid()
            ts = self.tick(0.2, 3) if i else self.tick(1.5, 25)
            stop = '"tool_use"' if tool and i == len(blocks) - 1 and has_final else "null"
            message = (
                f'{{"model":"{model}","id":"{msg_id}","type":"message","role":"assistant","content":[{block}],'
                f'"stop_reason":{stop},"stop_sequence":null,"usage":{self.usage(u, web_field)}}}'
            )
            line = (
                f'{{"parentUuid":{parent}{self.head},"message":{message},"requestId":"{req_id}",'
                f'"type":"assistant","uuid":"{line_uuid}","timestamp":"{ts}"}}\n'
            )
            if self.agent_id is not None and self.v21:
                # What the parent session's agent_progress lines will carry: the same message, ids and usage.
                self.g.mirrors.append(
                    (
                        self.agent_id,
                        f'{{"type":"assistant","message":{message},"requestId":"{req_id}","uuid":"{line_uuid}",'
                        f'"timestamp":"{ts}"}}',
                    )
                )
            if i == 0:
                first_ts = self.ts
            if late and i == len(blocks) - 1:
                self.finish()
                self.deferred = (line, "assistant", True)
            else:
                self.emit(line, "assistant", True)
            if i == len(blocks) - 1 and not late:
                self.calls.append(len(self.lines) - 1)
        merged = tuple(max(col) for col in zip(*lines_u, strict=True))
        g.count_call(model, merged, lines_u[0], first_ts, self.fast)
        self.ctx = read + creation + final_out
        return tool_id

    def error(self) -> None:
        """A failed API call as Claude Code writes it: a synthetic assistant line, no requestId."""
        rng = self.rng
        parent = self.parent
        u = self.new_uuid()
        ts = self.tick(1, 60)
        if rng.random() < 0.3:
            text = f"Claude AI usage limit reached|{self.ts // 1000 + 3600 * rng.randrange(1, 5)}"
        else:
            text = (
                'API Error: 529 {\\"type\\":\\"error\\",\\"error\\":{\\"type\\":\\"overloaded_error\\",'
                '\\"message\\":\\"Overloaded\\"}}'
            )
        self.emit(self._synthetic(parent, u, ts, text, True), "assistant", True)
        self.g.count_call("<synthetic>", (0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0), self.ts, False, failed=True)

    def synthetic_note(self) -> None:
        """`<synthetic>` without isApiErrorMessage: not a call."""
        parent = self.parent
        u = self.new_uuid()
        self.emit(self._synthetic(parent, u, self.tick(0.1, 2), "No response requested.", False), "assistant")
        self.g.stats.synthetic_lines += 1

    def _synthetic(self, parent: str, u: str, ts: str, text: str, failed: bool) -> str:
        flag = ',"isApiErrorMessage":true' if failed else ""
        return (
            f'{{"parentUuid":{parent}{self.head},"type":"assistant","uuid":"{u}","timestamp":"{ts}",'
            f'"message":{{"id":"{uid(self.rng)}","container":null,"model":"<synthetic>","role":"assistant",'
            f'"stop_reason":"stop_sequence","stop_sequence":"","type":"message","usage":{{"input_tokens":0,'
            f'"output_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
            f'"server_tool_use":{{"web_search_requests":0,"web_fetch_requests":0}},"service_tier":null,'
            f'"cache_creation":{{"ephemeral_1h_input_tokens":0,"ephemeral_5m_input_tokens":0}}}},'
            f'"content":[{{"type":"text","text":"{text}"}}]}}{flag}}}\n'
        )

    def hook(self, event: str, tool: str, tool_id: str) -> None:
        parent = self.parent
        u = self.new_uuid()
        cmd = self.rng.choice(
            (
                "cd ${CLAUDE_PLUGIN_ROOT}/hooks && bun run ./guardian.ts",
                "${CLAUDE_PLUGIN_ROOT}/scripts/pre-commit.sh",
                "/home/USER/.claude/hooks/tmux-waiting.sh mark",
                "${CLAUDE_PLUGIN_ROOT}/scripts/tool-call-capture.sh",
            )
        )
        self.emit(
            f'{{"parentUuid":{parent}{self.head},"type":"progress","data":{{"type":"hook_progress",'
            f'"hookEvent":"{event}","hookName":"{event}:{tool}","command":"{cmd}"}},"parentToolUseID":"{tool_id}",'
            f'"toolUseID":"{tool_id}","timestamp":"{self.tick(0, 0.05)}","uuid":"{u}"}}\n',
            "progress",
        )

    def bash_progress(self, tool_id: str) -> None:
        rng, f = self.rng, self.g.filler
        full = ""
        for n in range(rng.randrange(1, 6)):
            chunk = f.take(rng, int(min(20_000, rng.lognormvariate(math.log(300), 1.2))))
            full = f"{full}\\n{chunk}" if full else chunk
            if len(full) > 60_000:
                full = full[-60_000:].lstrip("\\")
                cut = full.find("\\n")
                full = full[cut + 2 :] if cut >= 0 else ""
            parent = self.parent
            u = self.new_uuid()
            total_lines = full.count("\\n") + 1
            self.emit(
                f'{{"parentUuid":{parent}{self.head},"type":"progress","data":{{"type":"bash_progress",'
                f'"output":"{chunk}","fullOutput":"{full}","elapsedTimeSeconds":{n + 1},'
                f'"totalLines":{total_lines},"totalBytes":{len(full)}}},"toolUseID":"bash-progress-{n}",'
                f'"parentToolUseID":"{tool_id}","uuid":"{u}","timestamp":"{self.tick(0.5, 3)}"}}\n',
                "progress",
            )

    def agent_progress(self, tool_id: str) -> None:
        """2.1.x mirrors a running subagent's messages into progress lines, usage objects included.

        The messages are copies of lines of this family's subagent files (same message.id, requestId
        and usage), as in real transcripts; without subagent lines to mirror, none are written.
        """
        rng, f, mirrors = self.rng, self.g.filler, self.g.mirrors
        for _ in range(min(len(mirrors), rng.randrange(2, 7))):
            agent, msg = mirrors.popleft()
            parent = self.parent
            line_uuid = self.new_uuid()
            self.emit(
                f'{{"parentUuid":{parent}{self.head},"type":"progress","data":{{"type":"agent_progress",'
                f'"message":{msg},"normalizedMessages":[],"prompt":"{f.take(rng, 120)}","agentId":"{agent}"}},'
                f'"toolUseID":"agent_msg_01{rng.getrandbits(88):022x}","parentToolUseID":"{tool_id}",'
                f'"uuid":"{line_uuid}","timestamp":"{self.tick(0.5, 8)}"}}\n',
                "progress",
            )
            self.g.stats.nested_usage_lines += 1

    def tool_result(self, tool_id: str, source_uuid: str, big: bool) -> None:
        rng, f = self.rng, self.g.filler
        n = int(min(400_000, rng.lognormvariate(math.log(1500), 1.4)))
        if big:
            n = rng.randrange(1 << 20, 6 << 20)
        text = f.take(rng, n)
        parent = self.parent
        u = self.new_uuid()
        ts = self.tick(0.1, 40)
        self.emit(
            f'{{"parentUuid":{parent}{self.head},"type":"user","message":{{"role":"user","content":[{{'
            f'"tool_use_id":"{tool_id}","type":"tool_result","content":"{text}","is_error":false}}]}},'
            f'"uuid":"{u}","timestamp":"{ts}","toolUseResult":{{"stdout":"{text}","stderr":"",'
            f'"interrupted":false,"isImage":false}},"sourceToolAssistantUUID":{source_uuid}}}\n',
            "user",
        )

    def turn_end(self) -> None:
        rng = self.rng
        if not self.v21:
            return
        parent = self.parent
        u = self.new_uuid()
        self.emit(
            f'{{"parentUuid":{parent}{self.head},"type":"system","subtype":"stop_hook_summary","hookCount":1,'
            f'"hookInfos":[{{"command":"/home/USER/.claude/hooks/tmux-waiting.sh mark"}}],"hookErrors":[],'
            f'"preventedContinuation":false,"stopReason":"","hasOutput":true,"level":"suggestion",'
            f'"timestamp":"{self.tick(0.1, 1)}","uuid":"{u}","toolUseID":"{uid(rng)}"}}\n',
            "system",
        )
        parent = self.parent
        u = self.new_uuid()
        self.emit(
            f'{{"parentUuid":{parent}{self.head},"type":"system","subtype":"turn_duration",'
            f'"durationMs":{rng.randrange(2000, 2_000_000)},"timestamp":"{self.tick(0, 0.1)}","uuid":"{u}",'
            f'"isMeta":false}}\n',
            "system",
        )
        if rng.random() < 0.05:
            self.emit(
                f'{{"type":"queue-operation","operation":"enqueue","timestamp":"{self.tick(0, 2)}",'
                f'"sessionId":"{self.session_id}","content":"/mcp"}}\n',
                "queue-operation",
            )

    def compact(self) -> None:
        u = uid(self.rng)
        prev = self.parent
        self.emit(
            f'{{"parentUuid":null,"logicalParentUuid":{prev}{self.head},"type":"system","subtype":"compact_boundary",'
            f'"content":"Conversation compacted","isMeta":false,"timestamp":"{self.tick(20, 120)}","uuid":"{u}",'
            f'"level":"info","compactMetadata":{{"trigger":"{self.rng.choice(("auto", "manual"))}",'
            f'"preTokens":{self.ctx}}}}}\n',
            "system",
        )
        self.parent = f'"{u}"'
        self.compactions += 1
        self.ctx = int(self.rng.uniform(15_000, 40_000))

    # -- structure -----------------------------------------------------------------------------
    def turn(self, budget: int, allow_big: bool) -> None:
        rng = self.rng
        self.prompt()
        for c in range(max(1, int(rng.expovariate(1 / 6)))):
            if c and self.chars >= budget:
                break
            if rng.random() < 0.004:
                self.error()
            if rng.random() < 0.002:
                self.synthetic_note()
            last = c > 0 and rng.random() < 0.12
            tool = (
                None
                if last
                else rng.choices(("Bash", "Read", "Edit", "Grep", "Task", "WebSearch"), (40, 30, 15, 8, 3, 4))[0]
            )
            tool_id = self.call(tool)
            if tool_id is None or tool is None:
                break
            source = self.parent
            if self.v21:
                for _ in range(rng.randrange(1, 4)):
                    self.hook("PreToolUse", tool, tool_id)
                if tool == "Bash" and rng.random() < 0.5:
                    self.bash_progress(tool_id)
                if tool == "Task" and not self.sidechain:  # subagents do not spawn subagents
                    self.agent_progress(tool_id)
            self.tool_result(tool_id, source, allow_big and rng.random() < 0.0004)
            if self.v21:
                self.hook("PostToolUse", tool, tool_id)
        self.turn_end()
        if self.ctx > self.ctx_limit:
            self.compact()

    def fill(self, budget: int, allow_big: bool = False) -> None:
        while self.chars < budget:
            self.turn(budget, allow_big)
        self.finish()

    def finish(self) -> None:
        """Write a final line still held back (its call was already counted)."""
        if self.deferred is not None:
            late, self.deferred = self.deferred, None
            self.emit(*late)


class Family:
    """A main session, its subagents and maybe a fork, written by one worker from one seed."""

    def __init__(self, plan: FamilyPlan, projects: list[Project], out: Path, filler: Filler) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed)
        self.project = projects[plan.project]
        self.out = out
        self.filler = filler
        self.stats = Stats()
        self.slug = "-".join(self.rng.choice(WORDS[:60]) for _ in range(3))
        self.replayed: set[int] = set()
        self.mirrors: deque[tuple[str, str]] = deque()  # (agent id, nested message) for agent_progress lines

    def count_call(
        self, model: str, merged: tuple[int, ...], first: tuple[int, ...], ts: int, fast: bool, failed: bool = False
    ) -> None:
        s = self.stats
        cost = 0.0 if failed else call_cost(model, merged, fast)
        s.total.add(merged, cost, fast, failed)
        s.first_line.add(first, 0.0 if failed else call_cost(model, first, fast), fast, failed)
        s.by_model.setdefault(model, Totals()).add(merged, cost, fast, failed)
        s.by_day.setdefault(day_of(ts), Totals()).add(merged, cost, fast, failed)

    def write(self, rel: str, session: Session | list[str]) -> None:
        if isinstance(session, Session):
            session.finish()
            lines = session.lines
            self.stats.call_lines += sum(session.is_call)
        else:
            lines = session
        path = self.out / "projects" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = "".join(lines).encode()
        path.write_bytes(data)
        s = self.stats
        s.files += 1
        s.bytes += len(data)
        s.lines += len(lines)
        s.largest = max(s.largest, len(data))
        s.sizes.append(len(data))

    def write_other(self, rel: str, text: str) -> None:
        path = self.out / "projects" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.stats.other_files += 1

    def run(self) -> Stats:
        rng, plan, proj = self.rng, self.plan, self.project
        v21 = rng.random() < 0.85
        version = rng.choice(VERSIONS_21) if v21 else VERSION_20
        model = rng.choices(MODELS, MODEL_WEIGHTS)[0]
        sid = uid(rng)
        main = Session(self, proj.cwd, sid, version, proj.branch, plan.start_ms, model)
        if rng.random() < 0.1:
            main.emit(
                f'{{"type":"summary","summary":"{self.filler.take(rng, 60)}","leafUuid":"{uid(rng)}"}}\n', "summary"
            )
        # Subagents first: the main session's agent_progress lines mirror their messages.
        subs: list[tuple[str, Session]] = []
        for budget in plan.sub_bytes:
            agent = "%07x" % rng.getrandbits(28)  # noqa: UP031
            sub = Session(self, proj.cwd, sid, version, proj.branch, plan.start_ms + rng.randrange(60_000, 3_600_000),
                          rng.choices(MODELS, MODEL_WEIGHTS)[0], agent_id=agent)  # fmt: skip
            sub.fill(budget)
            subs.append((agent, sub))
        main.fill(plan.main_bytes, allow_big=plan.main_bytes > 8 << 20)
        self.write(f"{proj.folder}/{sid}.jsonl", main)
        for agent, sub in subs:
            self.replay_into(sub, main)
            if v21:
                self.write(f"{proj.folder}/{sid}/subagents/agent-{agent}.jsonl", sub)
                self.write_other(
                    f"{proj.folder}/{sid}/subagents/agent-{agent}.meta.json", '{"agentType":"general-purpose"}'
                )
            else:
                self.write(f"{proj.folder}/agent-{agent}.jsonl", sub)
        if v21 and main.compactions and rng.random() < 0.5:
            agent = "acompact-%012x" % rng.getrandbits(48)  # noqa: UP031
            comp = Session(self, proj.cwd, sid, version, proj.branch, main.ts, model, agent_id=agent)
            comp.ctx = 120_000
            comp.prompt()
            comp.call(None)
            self.write(f"{proj.folder}/{sid}/subagents/agent-{agent}.jsonl", comp)
        if v21 and plan.sub_bytes and rng.random() < 0.3:
            lines = [f'{{"type":"agent_start","agentId":"{uid(rng)[:7]}","timestamp":"{iso(plan.start_ms)}"}}\n']
            self.write(f"{proj.folder}/{sid}/subagents/journal.jsonl", lines)
        if plan.fork_bytes:
            self.fork(main, plan.fork_bytes, version, model)
        if rng.random() < 0.02:
            self.write(
                f"{proj.folder}/{uid(rng)}.jsonl",
                [f'{{"type":"summary","summary":"{self.filler.take(rng, 50)}","leafUuid":"{uid(rng)}"}}\n'],
            )
        if rng.random() < 0.05:
            self.write_other(
                f"{proj.folder}/{sid}/tool-results/toolu_{rng.getrandbits(64):016x}.txt", self.filler.take(rng, 3000)
            )
        return self.stats

    def replay_into(self, sub: Session, main: Session) -> None:
        """Sidechain files sometimes replay a parent call under a new requestId (not a new call)."""
        rng = self.rng
        if not main.calls or not sub.v21 or rng.random() > 0.25:
            return
        idx = main.calls[rng.randrange(len(main.calls))]
        if idx in self.replayed or idx >= len(main.lines):
            return
        self.replayed.add(idx)
        line = main.lines[idx]
        line = line.replace('"isSidechain":false', '"isSidechain":true', 1)
        line = re.sub(
            r'"requestId":"req_[0-9a-zA-Z]+"', f'"requestId":"req_011C{rng.getrandbits(80):020x}"', line, count=1
        )
        at = rng.randrange(1, len(sub.lines) + 1)
        sub.lines.insert(at, line)
        sub.is_call.insert(at, True)
        s = self.stats
        s.replays += 1
        m = re.search(r'"model":"([^"]+)".*"usage":\{"input_tokens":(\d+),"cache_creation_input_tokens":(\d+),'
                      r'"cache_read_input_tokens":(\d+),"cache_creation":\{"ephemeral_5m_input_tokens":(\d+),'
                      r'"ephemeral_1h_input_tokens":(\d+)\},"output_tokens":(\d+)', line)  # fmt: skip
        web = re.search(r'"web_search_requests":(\d+)', line)
        if m:
            u = (int(m[2]), int(m[7]), int(m[5]), int(m[6]), int(m[4]), int(web[1]) if web else 0)
            fast = '"speed":"fast"' in line
            s.first_line.add(u, call_cost(m[1], u, fast), fast)

    def fork(self, main: Session, budget: int, version: str, model: str) -> None:
        """A resumed/forked session: a verbatim prefix of the parent, then its own turns."""
        rng = self.rng
        cut = rng.randrange(max(1, len(main.lines) // 4), len(main.lines) + 1)
        fid = uid(rng)
        fork = Session(
            self,
            self.project.cwd,
            fid,
            version,
            self.project.branch,
            main.ts + rng.randrange(60_000, 86_400_000),
            model,
        )
        for line, is_call in zip(main.lines[:cut], main.is_call[:cut], strict=True):
            fork.emit(line, "fork-copy", is_call)
        fork.ctx = main.ctx
        fork.fill(fork.chars + budget)
        self.write(f"{self.project.folder}/{fid}.jsonl", fork)


_FILLER: Filler | None = None


def _run_family(args: tuple[FamilyPlan, list[Project], str]) -> Stats:
    global _FILLER
    if _FILLER is None:
        _FILLER = Filler()
    plan, projects, out = args
    return Family(plan, projects, Path(out), _FILLER).run()


def _chunked(
    plans: list[FamilyPlan], projects: list[Project], out: Path
) -> Iterator[tuple[FamilyPlan, list[Project], str]]:
    for p in plans:
        yield p, projects, str(out)


def generate(
    out: Path, size: int, seed: int = 1, days: int = 60, end: str = DEFAULT_END, jobs: int | None = None
) -> dict[str, Any]:
    """Write the tree under out/projects and out/corpus-summary.json; return the summary."""
    started = time.perf_counter()
    end_ms = int(datetime.fromisoformat(end).replace(tzinfo=UTC).timestamp() * 1000)
    projects, plans = plan_families(size, seed, days, end_ms)
    for p in projects:
        (out / "projects" / p.folder).mkdir(parents=True, exist_ok=True)
    total = Stats()
    jobs = jobs or os.cpu_count() or 1
    work = _chunked(plans, projects, out)
    if jobs == 1 or size < 32 << 20:
        for item in work:
            total.merge(_run_family(item))
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for st in pool.imap(_run_family, work, chunksize=8):  # ordered: float sums stay deterministic
                total.merge(st)
    for p in projects:
        (out / "projects" / p.folder / "sessions-index.json").write_text('{"version":1,"entries":[]}')
        total.other_files += 1
    sizes = sorted(total.sizes)
    summary: dict[str, Any] = {
        "generator": "scripts/gen_corpus.py",
        "seed": seed,
        "size_target": size,
        "days": days,
        "end": end,
        "projects": len(projects),
        "files": total.files,
        "other_files": total.other_files,
        "bytes": total.bytes,
        "lines": total.lines,
        "largest_file_bytes": total.largest,
        "median_file_bytes": sizes[len(sizes) // 2] if sizes else 0,
        "files_over_1mb": sum(1 for s in sizes if s > 1 << 20),
        "files_over_10mb": sum(1 for s in sizes if s > 10 << 20),
        "call_lines": total.call_lines,
        "replay_lines": total.replays,
        "synthetic_non_error_lines": total.synthetic_lines,
        "nested_usage_progress_lines": total.nested_usage_lines,
        "expected": total.total.as_dict(),
        "first_line_wins": total.first_line.as_dict(),
        "by_model": {k: v.as_dict() for k, v in sorted(total.by_model.items())},
        "daily": [{"date": k, **v.as_dict()} for k, v in sorted(total.by_day.items())],
        "chars_by_type": dict(sorted(total.chars_by_type.items(), key=lambda kv: -kv[1])),
        "seconds": round(time.perf_counter() - started, 2),
    }
    summary["expected"]["calls_excluding_failed"] = total.total.calls - total.total.failed
    (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("out", type=Path, help="output folder; the tree goes to OUT/projects")
    ap.add_argument("--size", type=parse_size, default=parse_size("1GiB"), help="approximate bytes (1GiB, 200MiB, ...)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--days", type=int, default=60, help="spread session starts over this many days before --end")
    ap.add_argument("--end", default=DEFAULT_END, help="UTC date the history ends (fixed, for determinism)")
    ap.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    ap.add_argument("--force", action="store_true", help="delete an existing OUT/projects first")
    args = ap.parse_args(argv)
    projects = args.out / "projects"
    if projects.exists() and any(projects.iterdir()):
        if not args.force:
            print(f"gen_corpus: {projects} exists and is not empty (use --force)", file=sys.stderr)
            return 2
        shutil.rmtree(projects)
    s = generate(args.out, args.size, args.seed, args.days, args.end, args.jobs)
    e = s["expected"]
    print(
        f"wrote {s['files']:,} files, {s['bytes']:,} bytes, {s['lines']:,} lines in {s['seconds']} s; "
        f"{e['calls']:,} calls ({e['failed_calls']} failed), {e['total_tokens']:,} tokens, ${e['cost_usd']:,.2f}; "
        f"summary: {args.out / SUMMARY_NAME}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
