"""Benchmark: how long a price change takes to reach every total (issue 3 target: <= 200 ms for 1M calls).

Builds a real index file (the real schema and `priced_calls` view) holding N synthetic calls,
bulk-inserted with SQL generate_series: 24 model ids (bundled, dated/prefixed variants, unknown),
mixed token counts with some long-context and fast calls. Then, for each run, changes a price
(alternating between two price books) and times:

  apply   pricing.apply_prices(con, book, all_models=True)  (what the service does on a reload)
  total   SELECT sum(<auto cost>), sum(would_be_cost), count(*) FROM priced_calls
  both    apply + total: the time until every total reflects the new price

and prints the median and min/max over the runs (wall clock), plus the CPU time used (all threads),
which other processes on a busy machine disturb less.

    .venv/bin/python scripts/bench_pricing.py [--calls 1000000] [--runs 9] [--db PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.pricing import PriceBook, apply_prices, bundled, cost_expr
from indexer.store import Index
from schemas.pricing import Rates

TARGET_MS = 200.0
MODELS = [
    *sorted(bundled().models),
    "anthropic/claude-sonnet-4-5-20250929",
    "us.anthropic.claude-opus-4-1-20250805-v1:0",
    "claude-opus-4-6-20260301",
    "claude-sonnet-4-5",
    "claude-haiku-4-5@20251001",
    "<synthetic>",
    "gpt-4o",
    "claude-experimental-9",
    "unknown",
][:24]


def build(path: Path, calls: int) -> Index:
    index = Index(path)
    models_sql = "[" + ", ".join("'" + m.replace("'", "''") + "'" for m in MODELS) + "]"
    started = time.perf_counter()
    # hash(i) spreads values; every call is valid and distinct, 1 in 50 failed, 1 in 40 a replay.
    index.con.execute(
        f"""
        INSERT INTO calls
        SELECT i AS key, i AS msg_hash,
            TIMESTAMP '2025-01-01' + to_seconds(i * 30) AS ts,
            {models_sql}[1 + i % {len(MODELS)}] AS model,
            'session-' || (i // 200) AS session,
            '/work/project-' || (i % 37) AS project,
            'main', '2.1.0', NULL,
            i % 40 = 0 AS sidechain, i % 50 = 0 AS failed, i % 40 = 0 AS replay,
            hash(i) % 5000 AS input_tokens,
            hash(i + 1) % 4000 AS output_tokens,
            CASE WHEN i % 7 = 0 THEN 150000 + hash(i + 2) % 100000 ELSE hash(i + 2) % 20000 END AS cache_5m_tokens,
            CASE WHEN i % 3 = 0 THEN hash(i + 3) % 10000 ELSE 0 END AS cache_1h_tokens,
            hash(i + 4) % 120000 AS cache_read_tokens,
            CASE WHEN i % 97 = 0 THEN 2 ELSE 0 END AS web_searches,
            i % 11 = 0 AS fast,
            CASE WHEN i % 13 = 0 THEN (hash(i) % 1000) / 1000.0 ELSE NULL END AS cost_usd,
            hash(i + 5) % 60000 AS latency_ms, NULL AS error
        FROM generate_series(1, {calls}) AS g(i)
        """
    )
    index.con.execute("CHECKPOINT")
    print(f"built {calls:,} calls over {len(MODELS)} model ids in {time.perf_counter() - started:.1f} s ({path})")
    return index


def changed_book(factor: float) -> PriceBook:
    """The bundled prices with every Sonnet 4.5 and Opus 4.1 rate scaled by `factor`."""
    models = dict(bundled().models)
    for name in ("claude-sonnet-4-5-20250929", "claude-opus-4-1-20250805"):
        r = models[name].rates
        models[name] = replace(
            models[name],
            rates=Rates(*(x * factor for x in (r.input, r.output, r.cache_write_5m, r.cache_write_1h, r.cache_read))),
        )
    return PriceBook(models)


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f} ms  (min {min(values):.1f}, max {max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--db", type=Path, default=None, help="index file to create (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "bench.duckdb"
        if path.exists():
            sys.exit(f"{path} exists; give a new path")
        index = build(path, args.calls)
        con = index.con
        apply_prices(con, bundled())
        total_sql = f"SELECT sum({cost_expr('auto')}), sum(would_be_cost), count(*) FROM priced_calls"
        con.execute(total_sql).fetchone()  # warm the caches once, as a running service has them
        books = [changed_book(0.5), changed_book(2.0)]
        load = os.getloadavg()[0]
        apply_times: list[float] = []
        total_times: list[float] = []
        both_times: list[float] = []
        cpu_times: list[float] = []
        cpu_apply: list[float] = []
        totals: list[tuple[float, float, int]] = []
        for run in range(args.runs):
            book = books[run % 2]
            c0, t0 = time.process_time(), time.perf_counter()
            changed = apply_prices(con, book, all_models=True)
            c1, t1 = time.process_time(), time.perf_counter()
            row = con.execute(total_sql).fetchone() or (0.0, 0.0, 0)
            c2, t2 = time.process_time(), time.perf_counter()
            assert changed, "each run must change a price"
            totals.append(row)
            apply_times.append((t1 - t0) * 1000)
            total_times.append((t2 - t1) * 1000)
            both_times.append((t2 - t0) * 1000)
            cpu_times.append((c2 - c0) * 1000)
            cpu_apply.append((c1 - c0) * 1000)
        assert totals[0] != totals[1], "a price change must change the total"
        (a, _, n), (b, _, _) = totals[0], totals[1]
        print(f"runs: {args.runs}, calls counted: {n:,}, total cost alternates ${a:,.2f} / ${b:,.2f}")
        threads = (con.execute("SELECT current_setting('threads')").fetchone() or ("?",))[0]
        print(f"threads: {threads}, load average before the runs: {load:.1f}")
        print(f"apply_prices : {ms(apply_times)}")
        print(f"total query  : {ms(total_times)}")
        print(
            f"change->total: {ms(both_times)}  target <= {TARGET_MS:.0f} ms: "
            f"{'OK' if statistics.median(both_times) <= TARGET_MS else 'MISSED'}"
        )
        print(f"CPU (all threads), apply_prices : {ms(cpu_apply)}")
        print(f"CPU (all threads), change->total: {ms(cpu_times)}")
        index.close()


if __name__ == "__main__":
    main()
