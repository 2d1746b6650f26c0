#!/usr/bin/env python3
"""`/api/stats` latency measured by a C client, against a hello-world Starlette endpoint.

bench.py's own client is Python: its timing adds the client's interpreter and GC to each request,
and on this 2-core VM both processes share the cores. The client here is wrk (`--client wrk`,
the default; Debian: `apt-get install wrk`) or scripts/plain_client.c (`--client plain`, built
with the system's `cc`): one keep-alive connection, the next request sent once the last response
is whole. Both report percentiles corrected for coordinated omission, as wrk does (a stall of the
server counts once for every request a client asking at random moments would have sent during
it); the plain client also reports them as timed ("raw"), which a stall moves far less: during
a catch-up, 3-15x less (BENCHMARKS.md, sessions 14 and 15). Medians over the rounds are printed.

Usage: scripts/bench_wrk.py --db COPY_OF_AN_INDEX --tree TREE [--rounds 7] [--seconds 3] [--client C]
       scripts/bench_wrk.py --catch-up --tree TREE [--rounds 5] [--seconds 3] [--code DIR ...] [--client C]

Steady: one service on the index (after its start-up pass), rounds alternating with hello-world.

--catch-up: every round starts a service on a new, empty index and runs wrk for --seconds from
its first answer, while it catches up with the whole tree (its parser processes busy on the cores
its event loop leaves them: it is watched; 3.5-4 s for the 1 GiB tree on 2 cores, so keep
--seconds near 3). The round after runs wrk against hello-world beside another such catch-up,
whose service is asked `/api/stats` once, to see it is up (so it spares a core the same way), and
nothing more: the floor this machine's scheduling sets. `--code DIR` (repeatable) measures the
service of each source tree in turn, run with DIR first on the module path (copy the compiled
`indexer/*.so` into a checkout made for this, or it parses in Python).
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
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CCO, HELLO_APP, stop, wait_http  # scripts/ is this script's folder
from bench_service import free_port

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def measure(url: str, seconds: float, plain: Path | None) -> dict[str, float]:
    """One client run: by `plain` (a built plain_client), else by wrk."""
    if plain is None:
        return wrk(url, seconds)
    port, path = url.removeprefix("http://127.0.0.1:").split("/", 1)
    out = subprocess.run([str(plain), port, f"{seconds:g}", "/" + path], capture_output=True, text=True, check=True)
    n, _raw50, raw99, raw999, most, p50, p99, p999 = map(float, out.stdout.split())
    return {"p50": p50, "p99": p99, "p99.9": p999, "raw p99": raw99, "raw p99.9": raw999, "max": most, "requests": n}


def build_plain_client(folder: Path) -> Path:
    """scripts/plain_client.c built into `folder`."""
    built = folder / "plain_client"
    source = Path(__file__).resolve().parent / "plain_client.c"
    subprocess.run(["cc", "-O2", "-o", str(built), str(source)], check=True)
    return built


def wrk(url: str, seconds: float) -> dict[str, float]:
    """One wrk run over one keep-alive connection: p50, p99 (ms) and the number of requests."""
    out = subprocess.run(
        ["wrk", "-t1", "-c1", f"-d{seconds:g}s", "--latency", url], capture_output=True, text=True, check=True
    ).stdout
    got = {f"p{q}": float(v) * _UNITS[u] for q, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M)}
    got["requests"] = float(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return got


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/metrics/health", timeout=30) as r:
        got: dict[str, Any] = json.load(r)
        return got


def service(tree: Path, db: Path, port: int, code: Path | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CCO_HOME": os.environ.get("CCO_HOME", str(db.parent / "cco-home"))}
    cmd = [CCO, "index", "run", "--source", str(tree), "--db", str(db), "--port", str(port)]
    if code is not None:  # `cco`'s own folder comes first on its module path, then PYTHONPATH
        env["PYTHONPATH"] = str(code)
        cmd = [sys.executable, "-c", "import sys; from api.cli import main; sys.argv[0] = 'cco'; main()", *cmd[1:]]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=code)


def hello_world(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", HELLO_APP, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def summary(runs: dict[str, list[dict[str, float]]], extra: str = "") -> None:
    for name, rs in runs.items():
        cells = []
        plain = [k for k in ("p99.9", "raw p99", "raw p99.9") if k in rs[0]]
        for key in ("p50", "p99", *plain, *([extra] if extra else [])):
            vals = [r[key] for r in rs]
            unit = " s" if key == extra else " ms"
            cells.append(f"{key} {statistics.median(vals):.3f}{unit} ({min(vals):.3f}-{max(vals):.3f})")
        n = statistics.median(r["requests"] for r in rs)
        print(f"  {name:22s} " + ", ".join(cells) + f"; {n:,.0f} requests a run")
    hello = runs["hello-world"]
    for name, rs in runs.items():
        if name != "hello-world":
            ratios = [
                statistics.median(r[k] for r in rs) / statistics.median(r[k] for r in hello) for k in ("p50", "p99")
            ]
            print(f"  {name} / hello-world: p50 {ratios[0]:.2f}x, p99 {ratios[1]:.2f}x")


def catch_up_rounds(args: argparse.Namespace) -> int:
    codes: list[Path | None] = [Path(c).resolve() for c in args.code] if args.code else [None]
    # (name, the service's code, whether wrk asks hello-world instead)
    targets = [("cco" if c is None else f"cco {c}", c, False) for c in codes] + [("hello-world", None, True)]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in targets}
    work = Path(tempfile.mkdtemp(prefix="cco-wrk-"))
    try:
        for r in range(args.rounds):
            for i, (name, code, ask_hello) in enumerate(targets):
                db = work / f"{r}-{i}" / "index.duckdb"
                db.parent.mkdir(parents=True)
                port = free_port()
                proc = service(args.tree, db, port, code)
                hello = None
                try:
                    wait_http(f"http://127.0.0.1:{port}/api/stats", proc, 120)
                    url = f"http://127.0.0.1:{port}/api/stats"
                    if ask_hello:
                        hello_port = free_port()
                        hello = hello_world(hello_port)
                        url = f"http://127.0.0.1:{hello_port}/api/stats"
                        wait_http(url, hello, 30)
                    if health(port)["catch_up"]["done"]:
                        raise SystemExit(f"{args.tree}: caught up before wrk began: a bigger tree is needed")
                    got = measure(url, args.seconds, args.plain)
                    while not (cu := health(port)["catch_up"])["done"]:
                        time.sleep(0.2)
                    got["catch_up_s"] = float(cu["seconds"])
                finally:
                    stop(proc)
                    if hello is not None:
                        stop(hello)
                runs[name].append(got)
                print(
                    f"round {r + 1}: {name:22s} p50 {got['p50']:.3f} ms, p99 {got['p99']:.3f} ms, "
                    f"catch-up {got['catch_up_s']:.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"during a catch-up of {args.tree}: {client_name(args)} {args.seconds:g} s from the first answer, "
        f"{args.rounds} rounds each; medians (min-max)"
    )
    summary(runs, "catch_up_s")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, help="an index file (a copy: the service writes to it); not with --catch-up")
    ap.add_argument("--tree", type=Path, required=True, help="the transcripts it indexes")
    ap.add_argument("--rounds", type=int, help="default 7 (5 with --catch-up)")
    ap.add_argument("--seconds", type=int, default=3, help="each client run's length, whole seconds (default 3)")
    ap.add_argument("--catch-up", action="store_true", help="measure while an empty index catches up")
    ap.add_argument("--code", action="append", help="with --catch-up: a source tree to measure (repeatable)")
    ap.add_argument("--client", choices=("wrk", "plain"), default="wrk", help="wrk (default) or plain_client.c")
    args = ap.parse_args()
    if args.client == "wrk" and shutil.which("wrk") is None:
        print("wrk not found (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    built = Path(tempfile.mkdtemp(prefix="cco-plain-client-"))
    try:
        args.plain = build_plain_client(built) if args.client == "plain" else None
        return run(args)
    finally:
        shutil.rmtree(built, ignore_errors=True)


def client_name(args: argparse.Namespace) -> str:
    return "plain_client.c" if args.plain is not None else "wrk -t1 -c1 --latency"


def run(args: argparse.Namespace) -> int:
    if args.catch_up:
        args.rounds = args.rounds or 5
        return catch_up_rounds(args)
    if args.db is None:
        print("--db is needed (a copy of an index: the service writes to it)", file=sys.stderr)
        return 2
    args.rounds = args.rounds or 7
    port, hello_port = free_port(), free_port()
    proc = service(args.tree, args.db, port, None)
    hello = hello_world(hello_port)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/stats", proc, 120)
        wait_http(f"http://127.0.0.1:{hello_port}/api/stats", hello, 30)
        urls = {
            "cco /api/stats": f"http://127.0.0.1:{port}/api/stats",
            "hello-world": f"http://127.0.0.1:{hello_port}/api/stats",
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
        while not health(port)["catch_up"]["done"]:  # the start-up pass walks the tree: not measured here
            time.sleep(0.5)
        for _ in range(args.rounds):
            for name, url in urls.items():
                runs[name].append(measure(url, args.seconds, args.plain))
        print(f"{client_name(args)} {args.seconds:g} s, alternating rounds; medians (min-max)")
        summary(runs)
    finally:
        stop(proc)
        stop(hello)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
