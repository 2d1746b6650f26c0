#!/usr/bin/env python3
"""Benchmark the live service as a user runs it: start-up, /api/stats latency, append-to-visible, catch-up.

    .venv/bin/python scripts/bench_service.py [--requests 10000] [--corpus 50MiB] [--catch-up 1GiB]

The idea: the machine is noisy, so latency is judged as a ratio against a hello-world Starlette
endpoint served the same way (its own uvicorn process, same settings) in the same run, with the
two measured in alternating blocks over keep-alive httpx connections. Steps:

1. a transcript tree from scripts/gen_corpus.py (--corpus), indexed once with `cco index sync`;
2. start-up: `cco index run` over the existing index until the first /api/stats answer;
3. /api/stats vs hello-world: p50 / p99 over --requests keep-alive requests each (a raw-socket
   client: an HTTP library's own time per request would exceed the server's);
4. append-to-visible: append one call line, poll /api/stats until it counts it (--appends times);
5. optionally (--catch-up SIZE): a fresh index over a SIZE tree; /api/stats latency while the
   catch-up runs, its duration, and the RSS afterwards;
6. SIGTERM to exit, and the steady RSS before it.
Prints one JSON object at the end (and progress lines on stderr).

The other mode, for the index-bound targets (steady RSS, start-up, /api/metrics/* latency),
compares code trees in one run, round by round (`--code DIR`, repeatable: a source tree put
first on the service's PYTHONPATH, e.g. an unpacked `git archive HEAD` against the working tree):

    .venv/bin/python scripts/bench_service.py --service-index /tmp/ccohome/index.duckdb \
        --tree /tmp/cco-bench-1gib-s1 --code /tmp/before --code . --rounds 5
    .venv/bin/python scripts/bench_service.py --metrics-calls 1000000 --code /tmp/before --code .

`--service-index` serves a copy of an existing index over `--tree`; `--metrics-calls N` serves
N synthetic calls (scripts/bench_pricing.py's generator, the newest one call every 3 s up to
now, so the windows hold ~200 calls) over an empty tree. Each round starts the service, times
the first /api/stats answer, GETs every /api/metrics/* endpoint --metrics-requests times over a
keep-alive connection (after one warm-up request each), takes the RSS (and PSS, anonymous,
file-backed) after a short rest, and stops it. A hello-world endpoint is measured in the same
rounds as the floor.
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


class RawGet:
    """GETs over one keep-alive connection, with the least client work: a request made once, the
    answer read by its Content-Length. Latency is then the server's plus the loopback's; an HTTP
    library (httpx: ~0.6 ms a request here) would add more than the server takes."""

    def __init__(self, url: str) -> None:
        rest = url.removeprefix("http://")
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\n\r\n".encode()

    def get(self) -> int:
        """One request; its status code."""
        self.sock.sendall(self.request)
        data = bytearray()  # grows in place: a report body is megabytes
        total = -1  # the whole answer's length, once its head is in
        while total < 0 or len(data) < total:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise SystemExit("bench: the server closed the connection")
            data += chunk
            if total < 0 and (head_end := data.find(b"\r\n\r\n")) >= 0:
                head = data[:head_end].lower()
                at = head.find(b"content-length:")
                end = head.find(b"\r\n", at)
                total = head_end + 4 + int(head[at + 15 : end if end >= 0 else len(head)])
        return int(data[9:12])

    def close(self) -> None:
        self.sock.close()


def measure_pair(stats_url: str, hello_url: str, total: int, block: int) -> dict[str, Any]:
    """Alternate blocks of requests to both endpoints; per-request client-side latency (RawGet)."""
    clients = {url: RawGet(url) for url in (stats_url, hello_url)}
    for c in clients.values():  # warm-up: connections, code paths
        for _ in range(500):
            c.get()
    times: dict[str, list[int]] = {stats_url: [], hello_url: []}
    done = 0
    while done < total:
        n = min(block, total - done)
        for url in (stats_url, hello_url):
            bucket = times[url]
            get = clients[url].get
            for _ in range(n):
                t0 = time.perf_counter_ns()
                status = get()
                t1 = time.perf_counter_ns()
                if status != 200:
                    raise SystemExit(f"bench: {url} answered {status}")
                bucket.append(t1 - t0)
        done += n
    for c in clients.values():
        c.close()
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


def catch_up(
    client: httpx.Client, work: Path, size: str, seed: int, tree: Path | None = None, rate: float = 200.0
) -> dict[str, Any]:
    """A fresh index over a `size` tree (generated, or `tree` as it is): /api/stats while catching up.

    The requests come at `rate` pairs a second (a dashboard polls once a second): a client asking
    as fast as it can would keep a core busy itself, and the service's parsers, which only take
    idle cores, would wait for it.
    """
    if tree is None:
        tree = work / "catchup"
        say(f"generating a {size} tree for the catch-up")
        gen_corpus(tree, size, seed)
    db = work / "catchup.duckdb"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    # A hello-world server answers in alternation: the same load on the same 2 cores tells what is
    # the machine's share of the latency and what is cco's.
    hello_port = free_port()
    hello = subprocess.Popen([sys.executable, __file__, "--hello", str(hello_port)])
    wait_http(client, f"http://127.0.0.1:{hello_port}/")
    proc = start_service(tree, db, port, work / "catchup.log")
    try:
        first = wait_http(client, f"{base}/api/stats")
        stats_get, hello_get = RawGet(f"{base}/api/stats").get, RawGet(f"http://127.0.0.1:{hello_port}/").get
        times: list[int] = []
        hello_times: list[int] = []
        done = False
        peak = 0.0
        tick = time.perf_counter()
        while not done:
            for _ in range(200):
                tick += 1 / rate
                time.sleep(max(0.0, tick - time.perf_counter()))
                t0 = time.perf_counter_ns()
                stats_get()
                times.append(time.perf_counter_ns() - t0)
                t0 = time.perf_counter_ns()
                hello_get()
                hello_times.append(time.perf_counter_ns() - t0)
            health = client.get(f"{base}/api/metrics/health").json()
            done = health["catch_up"]["done"]
            peak = max(peak, rss_mb(proc.pid) or 0.0)
        seconds = time.perf_counter() - started
        time.sleep(3)
        result = {
            "size": size,
            "requests_per_s": rate,
            "first_answer_s": round(first, 3),
            "catch_up_s": round(seconds, 1),
            "stats_during_catch_up": summary_ms(times),
            "hello_world_during_catch_up": summary_ms(hello_times),
            "rss_peak_mb": peak,
            "rss_after_mb": rss_mb(proc.pid),
            "health": {k: health[k] for k in ("files_lagging", "bytes_behind", "rejected_lines")},
        }
    finally:
        result_stop = stop(proc)
        hello.terminate()
        hello.wait()
    result["shutdown_s"] = result_stop
    return result


# --- the index-bound mode: start-up, steady RSS and /api/metrics/* per code tree ------------------

METRICS_URLS = [
    "/api/metrics/stats?window=1m",
    "/api/metrics/stats?window=10m",
    "/api/metrics/realtime",
    "/api/metrics/tiers/opus",
    "/api/metrics/tiers/sonnet",
    "/api/metrics/recent?limit=20",
    "/api/metrics/current",
    "/api/metrics/projects",
    "/api/metrics/models",
    "/api/metrics/activity?limit=50",
    "/api/stats",
]


def memory_mb(pid: int) -> dict[str, float]:
    """RSS, its anonymous and file-backed parts, and PSS (MB), from /proc."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile"):
                out[name] = round(int(value.split()[0]) / 1024, 1)
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                out["Pss"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def synthetic_index(db: Path, calls: int) -> None:
    """`calls` synthetic calls (bench_pricing's generator), the newest now, one every 3 s before it."""
    code = f"""
import sys
sys.path.insert(0, {str(ROOT / "scripts")!r})
from pathlib import Path
import bench_pricing
from indexer.pricing import apply_prices, bundled
index = bench_pricing.build(Path({str(db)!r}), {calls})
index.con.execute(
    "UPDATE calls SET ts = date_trunc('second', now()::TIMESTAMP) - to_seconds(({calls} - key) * 3)"
)
apply_prices(index.con, bundled())
index.close()
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, stdout=sys.stderr)


def serve_round(code: Path, tree: Path, db: Path, requests: int, work: Path) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(code)}
    serve = ["index", "run", "--source", str(tree), "--db", str(db), "--port", str(port)]
    with (work / "service.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from api.cli import main; main()", *serve],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=code,
        )
    client = httpx.Client(trust_env=False, timeout=30.0)
    try:
        first = wait_http(client, f"{base}/api/stats")
        result: dict[str, Any] = {"startup_to_first_answer_s": round(first, 3)}
        while not client.get(f"{base}/api/metrics/health").json()["catch_up"]["done"]:
            time.sleep(0.05)
        time.sleep(1.0)  # start-up work (watches, first rescan) settles
        latency: dict[str, float] = {}
        for url in METRICS_URLS:
            client.get(base + url)
            times: list[int] = []
            for _ in range(requests):
                t0 = time.perf_counter_ns()
                r = client.get(base + url)
                times.append(time.perf_counter_ns() - t0)
                if r.status_code != 200:
                    raise SystemExit(f"bench: {url} answered {r.status_code}")
            ms = [t / 1e6 for t in times]
            latency[url] = round(pct(ms, 95), 3)
            latency[url + " p50"] = round(pct(ms, 50), 3)
        result["p95_ms"] = latency
        time.sleep(3)  # let freed memory go back (allocator decay), as a service between requests
        result["memory_mb"] = memory_mb(proc.pid)
    finally:
        client.close()
        stop(proc)
    return result


def hello_round(port: int, requests: int) -> dict[str, float]:
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        url = f"http://127.0.0.1:{port}/"
        client.get(url)
        times = []
        for _ in range(requests):
            t0 = time.perf_counter_ns()
            client.get(url)
            times.append((time.perf_counter_ns() - t0) / 1e6)
    return {"p50_ms": round(pct(times, 50), 3), "p95_ms": round(pct(times, 95), 3)}


def compare_codes(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cco-bench-service-"))
    os.environ["CCO_HOME"] = str(work / "home")
    codes = [Path(c).resolve() for c in (args.code or [str(ROOT)])]
    hello_port = free_port()
    hello = subprocess.Popen([sys.executable, __file__, "--hello", str(hello_port)])
    try:
        if args.metrics_calls:
            tree = work / "empty"
            (tree / "projects").mkdir(parents=True)
            source_db = work / "synthetic.duckdb"
            say(f"building {args.metrics_calls:,} synthetic calls")
            synthetic_index(source_db, args.metrics_calls)
        else:
            tree, source_db = Path(args.tree), Path(args.service_index)
        with httpx.Client(trust_env=False) as c:
            wait_http(c, f"http://127.0.0.1:{hello_port}/")
        rounds: dict[str, list[dict[str, Any]]] = {str(c): [] for c in codes}
        hellos = []
        for i in range(args.rounds):
            for code in codes:
                db = work / "index.duckdb"
                shutil.copyfile(source_db, db)  # each round serves the same index
                say(f"round {i + 1}/{args.rounds}: {code}")
                rounds[str(code)].append(serve_round(code, tree, db, args.metrics_requests, work))
                db.unlink()
                for extra in work.glob("index.duckdb*"):
                    extra.unlink()
            hellos.append(hello_round(hello_port, args.metrics_requests))
    finally:
        hello.terminate()
        hello.wait()
        shutil.rmtree(work, ignore_errors=True)

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 3)

    out: dict[str, Any] = {
        "load_average": os.getloadavg(),
        "rounds": args.rounds,
        "hello_p50_p95_ms": [median([h["p50_ms"] for h in hellos]), median([h["p95_ms"] for h in hellos])],
    }
    for code, results in rounds.items():
        out[code] = {
            "startup_to_first_answer_s": median([r["startup_to_first_answer_s"] for r in results]),
            "memory_mb": {k: median([r["memory_mb"].get(k, 0.0) for r in results]) for k in results[0]["memory_mb"]},
            "p95_ms (p50)": {
                url: f"{median([r['p95_ms'][url] for r in results])} "
                f"({median([r['p95_ms'][url + ' p50'] for r in results])})"
                for url in METRICS_URLS
            },
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--requests", type=int, default=10_000, help="requests per endpoint")
    ap.add_argument("--block", type=int, default=1000, help="requests per alternating block")
    ap.add_argument("--corpus", default="50MiB", help="size of the steady-state tree")
    ap.add_argument("--appends", type=int, default=20)
    ap.add_argument("--catch-up", default=None, help="also measure a catch-up of a tree this big (e.g. 1GiB)")
    ap.add_argument("--catch-up-tree", default=None, help="with --catch-up: catch up this tree instead of a new one")
    ap.add_argument("--catch-up-rate", type=float, default=200.0, help="request pairs a second during the catch-up")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--hello", type=int, default=None, help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--service-index", default=None, help="serve a copy of this index (with --tree): RSS, start-up")
    ap.add_argument("--tree", default=None, help="the transcript tree of --service-index")
    ap.add_argument("--metrics-calls", type=int, default=0, help="serve this many synthetic calls instead")
    ap.add_argument("--code", action="append", help="a source tree to run the service from (repeatable)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--metrics-requests", type=int, default=300, help="GETs per endpoint per round")
    args = ap.parse_args(argv)
    if args.hello is not None:
        hello_server(args.hello)
        return 0
    if args.service_index or args.metrics_calls:
        if args.service_index and not args.tree:
            ap.error("--service-index needs --tree")
        print(json.dumps(compare_codes(args), indent=2))
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
            f"{base}/api/stats", f"http://127.0.0.1:{hello_port}/", args.requests, args.block
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
            given = Path(args.catch_up_tree) if args.catch_up_tree else None
            result["catch_up"] = catch_up(client, work, args.catch_up, args.seed, given, args.catch_up_rate)
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
