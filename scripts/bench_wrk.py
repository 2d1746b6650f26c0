#!/usr/bin/env python3
"""`/api/stats` latency measured by wrk (a C client), against a hello-world Starlette endpoint.

bench.py's own client is Python: its timing adds the client's interpreter and GC to each request,
and on this 2-core VM both processes share the cores. wrk's event loop costs microseconds, so
its percentiles are closer to what the server does. Rounds alternate between the two servers
(after the service's start-up pass is done, read from /api/metrics/health), and medians over the
rounds are printed. Needs `wrk` on PATH (Debian: `apt-get install wrk`).

Usage: scripts/bench_wrk.py --db COPY_OF_AN_INDEX --tree TREE [--rounds 7] [--seconds 3]
       scripts/bench_wrk.py --catch-up --db NEW_FILE --tree TREE [--seconds 1]

With --catch-up the index starts empty and the runs go on while the service catches up with the
whole tree (its parser processes busy on both cores), alternating with hello-world, until the
catch-up is done; the runs that ended before it are the ones reported.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CCO, HELLO_APP, stop, wait_http  # scripts/ is this script's folder
from bench_service import free_port

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, seconds: float) -> dict[str, float]:
    """One wrk run over one keep-alive connection: p50, p99 (ms) and the number of requests."""
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{seconds:g}s", "--latency", url], capture_output=True, text=True, check=True
    ).stdout
    got = {f"p{q}": float(v) * _UNITS[u] for q, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M)}
    got["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return got


def caught_up(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/metrics/health", timeout=30) as r:
        return bool(json.load(r)["catch_up"]["done"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, required=True, help="an index file (a copy: the service writes to it)")
    ap.add_argument("--tree", type=Path, required=True, help="the transcripts it indexes")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument(
        "--seconds",
        type=int,
        help="each wrk run's length, whole seconds (default 3; 1 with --catch-up, which lasts 4-6 s)",
    )
    ap.add_argument("--catch-up", action="store_true", help="measure while an empty index catches up")
    args = ap.parse_args()
    if args.seconds is None:
        args.seconds = 1 if args.catch_up else 3
    if args.catch_up and args.db.exists():
        print(f"--catch-up starts from no index: {args.db} exists", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("wrk not found (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    port, hello_port = free_port(), free_port()
    env = {**os.environ, "CCO_HOME": os.environ.get("CCO_HOME", str(args.db.parent / "cco-home"))}
    cmd = [CCO, "index", "run", "--source", str(args.tree), "--db", str(args.db), "--port", str(port)]
    service = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    hello = subprocess.Popen(
        [sys.executable, "-c", HELLO_APP, str(hello_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/stats", service, 120)
        wait_http(f"http://127.0.0.1:{hello_port}/api/stats", hello, 30)
        urls = {
            "cco /api/stats": f"http://127.0.0.1:{port}/api/stats",
            "hello-world": f"http://127.0.0.1:{hello_port}/api/stats",
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        if args.catch_up:
            started = time.perf_counter()
            while True:
                pair = {name: wrk(url, args.seconds) for name, url in urls.items()}
                if caught_up(port):  # this pair may have outlasted the catch-up: not counted
                    break
                for name, got in pair.items():
                    runs[name].append(got)
            took = time.perf_counter() - started
            print(f"during the catch-up of {args.tree} ({took:.0f} s): {len(runs['hello-world'])} rounds")
            if not runs["hello-world"]:
                return 1
        else:
            while not caught_up(port):  # the start-up pass walks the tree: not what is measured here
                time.sleep(0.5)
            for _ in range(args.rounds):
                for name, url in urls.items():
                    runs[name].append(wrk(url, args.seconds))
        print(f"wrk -t1 -c1 -d{args.seconds:g}s --latency, alternating rounds; medians (min-max)")
        for name, rs in runs.items():
            cells = []
            for key in ("p50", "p99"):
                vals = [r[key] for r in rs]
                cells.append(f"{key} {statistics.median(vals):.3f} ms ({min(vals):.3f}-{max(vals):.3f})")
            n = statistics.median(r["requests"] for r in rs)
            print(f"  {name:15s} " + ", ".join(cells) + f"; {n:,.0f} requests a run")
        ratio = statistics.median(r["p50"] for r in runs["cco /api/stats"]) / statistics.median(
            r["p50"] for r in runs["hello-world"]
        )
        print(f"  p50 ratio cco / hello-world: {ratio:.2f}x")
    finally:
        stop(service)
        stop(hello)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
