#!/usr/bin/env python3
"""Time `cco report … --json` as whole processes, and `GET /api/reports/*` served by `cco index run`.

    .venv/bin/python scripts/bench_reports.py --db /tmp/h1/index.duckdb --tree /tmp/cco-bench-1gib-s1 \
        [--runs 15] [--requests 300] [--code /tmp/before --code .]

The idea: the machine is noisy, so processes are timed in rounds that run one of each in turn,
the floors included (`python -c pass`, `python -c "import duckdb"`, and `import _duckdb`, the
engine without its Python layer), and each row is the median over --runs rounds of the wall
clock (start to exit) and of the CPU time (user + system, which a busy machine inflates less).
Processes get a bytecode cache in a temporary folder (PYTHONPYCACHEPREFIX), as an installed cco
has one. `--code DIR` (repeatable) runs the reports from that source tree (put first on
PYTHONPATH), e.g. an unpacked `git archive HEAD` against the working tree, in the same rounds;
without it, the installed `cco` runs. Then `cco index run` serves the index (a fresh port): each
report path is fetched --requests times over one keep-alive raw-socket connection after a few warm-up
requests (p50 and p95), and `cco report … --json` is timed again, now answered by the service.
When ccusage is installed (--ccusage), `ccusage claude daily --json --offline` over the same tree
is timed too (--ccusage-runs), with the ratio to `cco report daily --json`. Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from bench_service import RawGet, free_port  # scripts/ is on sys.path: this script's folder

BIN = Path(sys.executable).parent
CCO = str(BIN / "cco")
REPORTS = ("daily", "weekly", "monthly", "session", "blocks")
CCUSAGE = "/tmp/ccu/node_modules/@ccusage/ccusage-linux-x64/bin/ccusage"
# `cco` itself, from a source tree on PYTHONPATH (the console script imports api.cli the same way)
CCO_FROM_TREE = "import sys; from api.cli import main; sys.argv[0] = 'cco'; sys.exit(main())"


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall ms, CPU ms: user + system) of one process; CPU time suffers less from a busy machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # A neutral working folder: `python -c` puts it first on sys.path, before PYTHONPATH.
    done = subprocess.run(cmd, env=env, cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.decode(errors='replace')[-500:]}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return elapsed, cpu


def process_rows(args: argparse.Namespace, env: dict[str, str]) -> list[tuple[str, list[tuple[float, float]]]]:
    """(label, [(wall ms, CPU ms)]) for the floors and every report of every code tree, in rounds."""
    py = sys.executable
    jobs: list[tuple[str, list[str], dict[str, str]]] = [
        ("`python -c pass`", [py, "-c", "pass"], env),
        ('`python -c "import _duckdb"`', [py, "-c", "import _duckdb"], env),
        ('`python -c "import duckdb"`', [py, "-c", "import duckdb"], env),
    ]
    trees = args.code or [None]
    for tree in trees:
        tree_env = env if tree is None else {**env, "PYTHONPATH": str(Path(tree).resolve())}
        for kind in REPORTS:
            cmd = [CCO] if tree is None else [py, "-c", CCO_FROM_TREE]
            label = f"`cco report {kind} --json`" + ("" if tree is None else f" ({tree})")
            jobs.append((label, [*cmd, "report", kind, "--json", "--db", str(args.db)], tree_env))
    for _, cmd, job_env in jobs:  # warm-up: bytecode caches, the OS page cache
        timed(cmd, job_env)
    times: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in jobs}
    for _ in range(args.runs):
        for label, cmd, job_env in jobs:
            times[label].append(timed(cmd, job_env))
    return list(times.items())


def served(
    args: argparse.Namespace, env: dict[str, str]
) -> tuple[list[tuple[str, float, float]], list[tuple[str, float]]]:
    """With `cco index run` serving the index: (path, p50 ms, p95 ms) of each report's request, and
    (command, median wall ms) of each `cco report … --json`, which then asks the service."""
    port = free_port()
    service = subprocess.Popen(
        [CCO, "index", "run", "--db", str(args.db), "--source", str(args.tree), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows, processes = [], []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + 120
            while True:
                if service.poll() is not None:
                    raise SystemExit("cco index run exited")
                try:
                    if client.get("/api/reports/daily").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("cco index run did not answer")
                time.sleep(0.2)
            for kind in REPORTS:
                path = f"/api/reports/{kind}"
                get = RawGet(f"http://127.0.0.1:{port}{path}").get  # the server's time, not an HTTP library's
                for _ in range(5):
                    get()
                times = []
                for _ in range(args.requests):
                    start = time.perf_counter()
                    if get() != 200:
                        raise SystemExit(f"{path} failed")
                    times.append((time.perf_counter() - start) * 1000)
                times.sort()
                rows.append((f"`GET {path}`", statistics.median(times), times[int(len(times) * 0.95) - 1]))
            for kind in REPORTS:  # `cco report` while the service holds the index: it asks the service
                cmd = [CCO, "report", kind, "--json", "--db", str(args.db)]
                wall = statistics.median(timed(cmd, env)[0] for _ in range(args.runs))
                processes.append((f"`cco report {kind} --json` (answered by the service)", wall))
    finally:
        service.terminate()
        service.wait(timeout=60)
    return rows, processes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--db", type=Path, required=True, help="the index (a copy: the service writes to it)")
    ap.add_argument("--tree", type=Path, required=True, help="the transcript tree the index was built from")
    ap.add_argument("--runs", type=int, default=15, help="rounds of processes (median over them)")
    ap.add_argument("--requests", type=int, default=300, help="timed HTTP requests per report")
    ap.add_argument("--code", action="append", help="a source tree to run the reports from (repeatable)")
    ap.add_argument("--ccusage", default=CCUSAGE, help="the ccusage executable, timed when it exists")
    ap.add_argument("--ccusage-runs", type=int, default=5)
    ap.add_argument("--no-http", action="store_true", help="processes only")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-reports-pyc-") as pyc:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pyc
        rows = process_rows(args, env)
        http, processes = ([], []) if args.no_http else served(args, env)

    print(f"Whole processes, wall ms over {args.runs} interleaved rounds (index {args.db}):\n")
    print("| command | wall median ms | wall min ms | CPU median ms |")
    print("|---|---:|---:|---:|")
    for label, times in rows:
        walls, cpus = [w for w, _ in times], [c for _, c in times]
        print(f"| {label} | {statistics.median(walls):.0f} | {min(walls):.0f} | {statistics.median(cpus):.0f} |")
    dailies = [(label, statistics.median(w for w, _ in t)) for label, t in rows if "report daily" in label]
    if Path(args.ccusage).exists():
        env = {**os.environ, "CLAUDE_CONFIG_DIR": str(args.tree)}
        cmd = [args.ccusage, "claude", "daily", "--json", "--offline"]
        timed(cmd, env)
        runs = [timed(cmd, env) for _ in range(args.ccusage_runs)]
        ccusage = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"| `ccusage claude daily --json --offline` ({args.ccusage_runs} runs) | {ccusage:.0f} | | {cpu:.0f} |\n")
        for label, daily in dailies:
            print(f"ccusage daily / {label}: {ccusage / daily:.1f}x  ")
    if http:
        print(f"\n`cco index run`, {args.requests} keep-alive requests per report:\n")
        print("| request | p50 ms | p95 ms |")
        print("|---|---:|---:|")
        for label, p50, p95 in http:
            print(f"| {label} | {p50:.2f} | {p95:.2f} |")
        print(f"\nWhole processes while the service runs, wall ms, median of {args.runs}:\n")
        print("| command | wall median ms |")
        print("|---|---:|")
        for label, median in processes:
            print(f"| {label} | {median:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
