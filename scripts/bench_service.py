#!/usr/bin/env python3
"""Benchmark the live service as a user runs it: start-up, /api/stats latency, append-to-visible, catch-up.

    .venv/bin/python scripts/bench_service.py [--requests 10000] [--corpus 50MiB] [--catch-up 1GiB]

The idea: the machine is noisy, so latency is judged as a ratio against a hello-world Starlette
endpoint served the same way (its own uvicorn process, same settings) in the same run, with the
two measured in alternating blocks over keep-alive httpx connections. Steps:

1. a transcript tree from scripts/gen_corpus.py (--corpus), indexed once with `cco index sync`;
2. start-up: `cco index run` over the existing index until the first /api/stats answer;
3. /api/stats vs hello-world: p50 / p99 over --requests keep-alive requests each;
4. append-to-visible: append one call line, poll /api/stats until it counts it (--appends times);
5. optionally (--catch-up SIZE): a fresh index over a SIZE tree; /api/stats latency while the
   catch-up runs, its duration, and the RSS afterwards;
6. SIGTERM to exit, and the steady RSS before it.
Prints one JSON object at the end (and progress lines on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CCO = str(BIN / "cco")
HELLO_BODY = b'{"hello":"world"}'


def say(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary_ms(values_ns: list[int]) -> dict[str, float]:
    ms = [v / 1e6 for v in values_ns]
    return {
        "n": len(ms),
        "p50_ms": round(pct(ms, 50), 4),
        "p99_ms": round(pct(ms, 99), 4),
        "mean_ms": round(statistics.fmean(ms), 4),
        "max_ms": round(max(ms), 3),
    }


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


# --- the hello-world server (a child process of this script) ---------------------------------------


def hello_server(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def hello(request: Request) -> Response:
        return Response(HELLO_BODY, media_type="application/json")

    app = Starlette(routes=[Route("/", hello)])
    # The same settings as `cco index run` (api/cli_run.py).
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_keep_alive=30,
    )


# --- helpers ---------------------------------------------------------------------------------------


def wait_http(client: httpx.Client, url: str, timeout: float = 60.0) -> float:
    """Seconds until `url` answers 200."""
    started = time.perf_counter()
    while True:
        try:
            if client.get(url).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"bench: {url} did not answer in {timeout} s")
        time.sleep(0.005)


def start_service(tree: Path, db: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [CCO, "index", "run", "--source", str(tree), "--db", str(db), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(proc: subprocess.Popen[bytes]) -> float:
    started = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return round(time.perf_counter() - started, 3)


def gen_corpus(out: Path, size: str, seed: int) -> None:
    script = ROOT / "scripts" / "gen_corpus.py"
    if script.exists():
        subprocess.run([sys.executable, str(script), str(out), "--size", size, "--seed", str(seed)], check=True)
        return
    # Fallback: the sample transcripts, copied often enough.
    samples = sorted((ROOT / "fixtures" / "samples").glob("*.jsonl"))
    for i in range(50):
        for s in samples:
            dest = out / "projects" / f"-bench-{i}" / s.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(s, dest)


def call_line(i: int) -> bytes:
    ts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    line = {
        "type": "assistant",
        "sessionId": "bench-appends",
        "cwd": "/bench/appends",
        "uuid": f"00000000-0000-4000-8000-{i:012d}",
        "timestamp": ts,
        "requestId": f"req_bench_{time.time_ns()}_{i}",
        "message": {
            "id": f"msg_bench_{time.time_ns()}_{i}",
            "model": "claude-sonnet-4-5",
            "role": "assistant",
            "usage": {"input_tokens": 1, "output_tokens": 1},
        },
    }
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


def measure_pair(client: httpx.Client, stats_url: str, hello_url: str, total: int, block: int) -> dict[str, Any]:
    """Alternate blocks of requests to both endpoints; per-request client-side latency."""
    for url in (stats_url, hello_url):  # warm-up: connections, code paths
        for _ in range(500):
            client.get(url)
    times: dict[str, list[int]] = {stats_url: [], hello_url: []}
    done = 0
    while done < total:
        n = min(block, total - done)
        for url in (stats_url, hello_url):
            bucket = times[url]
            get = client.get
            for _ in range(n):
                t0 = time.perf_counter_ns()
                r = get(url)
                t1 = time.perf_counter_ns()
                if r.status_code != 200:
                    raise SystemExit(f"bench: {url} answered {r.status_code}")
                bucket.append(t1 - t0)
        done += n
    stats, hello = summary_ms(times[stats_url]), summary_ms(times[hello_url])
    return {
        "stats": stats,
        "hello": hello,
        "ratio_p50": round(stats["p50_ms"] / hello["p50_ms"], 3),
        "ratio_p99": round(stats["p99_ms"] / hello["p99_ms"], 3),
    }


def append_to_visible(client: httpx.Client, stats_url: str, transcript: Path, count: int) -> dict[str, Any]:
    seen = client.get(stats_url).json()["total_requests"]
    delays: list[float] = []
    for i in range(count):
        time.sleep(0.37)  # a random phase against the snapshot interval
        with transcript.open("ab") as f:
            t0 = time.perf_counter()
            f.write(call_line(i))
        while True:
            now = client.get(stats_url).json()["total_requests"]
            if now > seen:
                delays.append((time.perf_counter() - t0) * 1000)
                seen = now
                break
            if time.perf_counter() - t0 > 10:
                raise SystemExit("bench: an appended line did not show within 10 s")
            time.sleep(0.002)
    return {
        "n": count,
        "p50_ms": round(pct(delays, 50), 1),
        "p95_ms": round(pct(delays, 95), 1),
        "max_ms": round(max(delays), 1),
    }


def catch_up(client: httpx.Client, work: Path, size: str, seed: int) -> dict[str, Any]:
    tree = work / "catchup"
    say(f"generating a {size} tree for the catch-up")
    gen_corpus(tree, size, seed)
    db = work / "catchup.duckdb"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    proc = start_service(tree, db, port, work / "catchup.log")
    try:
        first = wait_http(client, f"{base}/api/stats")
        times: list[int] = []
        done = False
        peak = 0.0
        while not done:
            for _ in range(200):
                t0 = time.perf_counter_ns()
                client.get(f"{base}/api/stats")
                times.append(time.perf_counter_ns() - t0)
            health = client.get(f"{base}/api/metrics/health").json()
            done = health["catch_up"]["done"]
            peak = max(peak, rss_mb(proc.pid) or 0.0)
        seconds = time.perf_counter() - started
        time.sleep(3)
        result = {
            "size": size,
            "first_answer_s": round(first, 3),
            "catch_up_s": round(seconds, 1),
            "stats_during_catch_up": summary_ms(times),
            "rss_peak_mb": peak,
            "rss_after_mb": rss_mb(proc.pid),
            "health": {k: health[k] for k in ("files_lagging", "bytes_behind", "rejected_lines")},
        }
    finally:
        result_stop = stop(proc)
    result["shutdown_s"] = result_stop
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=10_000, help="requests per endpoint")
    ap.add_argument("--block", type=int, default=1000, help="requests per alternating block")
    ap.add_argument("--corpus", default="50MiB", help="size of the steady-state tree")
    ap.add_argument("--appends", type=int, default=20)
    ap.add_argument("--catch-up", default=None, help="also measure a catch-up of a tree this big (e.g. 1GiB)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--hello", type=int, default=None, help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args(argv)
    if args.hello is not None:
        hello_server(args.hello)
        return 0

    work = Path(tempfile.mkdtemp(prefix="cco-bench-service-"))
    os.environ["CCO_HOME"] = str(work / "home")  # never the user's index or prices
    result: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    client = httpx.Client(trust_env=False, timeout=10.0)
    hello_port, port = free_port(), free_port()
    hello = subprocess.Popen([sys.executable, __file__, "--hello", str(hello_port)])
    proc: subprocess.Popen[bytes] | None = None
    try:
        tree = work / "tree"
        say(f"generating a {args.corpus} tree")
        gen_corpus(tree, args.corpus, args.seed)
        db = work / "index.duckdb"
        say("indexing it once (cco index sync)")
        subprocess.run([CCO, "index", "sync", "--source", str(tree), "--db", str(db)], check=True)

        started = time.perf_counter()
        proc = start_service(tree, db, port, work / "service.log")
        base = f"http://127.0.0.1:{port}"
        wait_http(client, f"{base}/api/stats")
        result["startup_to_first_answer_s"] = round(time.perf_counter() - started, 3)
        wait_http(client, f"http://127.0.0.1:{hello_port}/")
        time.sleep(1)

        say(f"/api/stats vs hello-world, {args.requests} keep-alive requests each")
        result["latency"] = measure_pair(
            client, f"{base}/api/stats", f"http://127.0.0.1:{hello_port}/", args.requests, args.block
        )
        say(f"append-to-visible, {args.appends} appends")
        transcript = tree / "projects" / "-bench-appends" / "appends.jsonl"
        transcript.parent.mkdir(parents=True, exist_ok=True)
        transcript.write_bytes(b"")
        time.sleep(1.0)  # the new folder is picked up by the recursive watch
        result["append_to_visible"] = append_to_visible(client, f"{base}/api/stats", transcript, args.appends)
        result["steady_rss_mb"] = rss_mb(proc.pid)
        result["shutdown_s"] = stop(proc)
        proc = None
        if args.catch_up:
            result["catch_up"] = catch_up(client, work, args.catch_up, args.seed)
    finally:
        if proc is not None:
            stop(proc)
        hello.terminate()
        hello.wait()
        client.close()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
