"""The terminal monitor behind `cco monitor`: polls a running service and redraws in place.

The idea: fetching and drawing never wait on each other. A background thread polls the service's
JSON endpoints (stdlib urllib, no proxies) and publishes the last good answers plus what it is
doing now; the foreground loop redraws with rich.Live a few times a second and reads keys in
cbreak mode. So a slow service shows the last numbers marked stale (never zeros), an unreachable
one is retried with backoff while the screen says so, and `q` or Ctrl-C quits at once.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import orjson
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

DEFAULT_URL = "http://127.0.0.1:3000"
DEFAULT_INTERVAL_S = 1.0
STALE_AFTER_S = 1.0  # a request slower than this shows the previous numbers marked stale
REQUEST_TIMEOUT_S = 10.0
DETAILS_EVERY_S = 5.0  # projects/models/block/health: on snapshot change, else this often
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 15.0)
FRAME_S = 0.2  # how often the screen is redrawn and keys are read
TOP_N = 5
NARROW_COLUMNS = 78

Json = dict[str, Any]


class Unreachable(Exception):
    """The service did not answer (refused, timed out, not HTTP, or an error status)."""


# --- fetching -------------------------------------------------------------------------------------


class Client:
    """GET JSON from the service; loopback needs no proxy, so environment proxies are ignored."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
        locate: Callable[[], str | None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        # `locate`: where the service is now (its run file), asked again after a failed request, so
        # a service restarted on another port is found.
        self._locate = locate
        self._failed = False
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        if self._failed and self._locate is not None and (found := self._locate()):
            self.base_url = found.rstrip("/")  # none found: the service is down; keep its address
        self._failed = True  # until it answers
        url = self.base_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                data = orjson.loads(resp.read())
                self._failed = False
                return data
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and not self.token:
                raise Unreachable(f"the service requires a token: set CCO_TOKEN ({path} answered HTTP 401)") from exc
            raise Unreachable(f"{path} answered HTTP {exc.code}{_error_text(exc)}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise Unreachable(describe(getattr(exc, "reason", exc))) from exc
        except orjson.JSONDecodeError as exc:
            raise Unreachable(f"{path} did not answer JSON") from exc


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The service's one-line JSON `error`, if the answer carries one ("no snapshot yet; ...")."""
    try:
        body = orjson.loads(exc.read())
    except (orjson.JSONDecodeError, OSError):
        return ""
    return f": {body['error']}" if isinstance(body, dict) and isinstance(body.get("error"), str) else ""


def describe(reason: object) -> str:
    """A short reason for the status line: 'connection refused', not '[Errno 111] Connection refused'."""
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "no answer (timed out)"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


@dataclass(frozen=True)
class Sample:
    """The last good answers; each part is None until first fetched."""

    stats: Json | None = None
    block: Json | None = None  # the active 5-hour block, or None
    block_known: bool = False  # block endpoint answered at least once
    health: Json | None = None
    projects: list[Json] = field(default_factory=list)
    models: list[Json] = field(default_factory=list)
    fetched_at: float | None = None  # monotonic time of the last good /api/stats
    problems: tuple[str, ...] = ()  # endpoints besides /api/stats that failed in the last round


@dataclass(frozen=True)
class PollState:
    """What the poller knows now, read by the drawing loop."""

    sample: Sample = Sample()
    in_flight_since: float | None = None  # monotonic start of the current request round
    error: str | None = None  # why the last round failed
    retry_at: float | None = None  # monotonic time of the next attempt after a failure
    failures: int = 0


def active_block(data: Any) -> Json | None:
    blocks = data.get("blocks", []) if isinstance(data, dict) else []
    for b in blocks:
        if isinstance(b, dict) and b.get("isActive") and not b.get("isGap"):
            return b
    return None


def as_list(data: Any, key: str) -> list[Json]:
    rows = data.get(key, []) if isinstance(data, dict) else data
    return [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else []


class Poller:
    """Polls the service on a thread; `state` is replaced whole (no locks needed to read it)."""

    def __init__(
        self,
        client: Client,
        interval: float,
        token_limit: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.interval = max(0.1, interval)
        self.token_limit = token_limit
        self.clock = clock
        self.state = PollState()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cco-monitor-poll", daemon=True)
        self._details_at = 0.0
        self._stats_key: tuple[Any, ...] | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def poll_once(self) -> None:
        """One round: stats always, the rest when the snapshot changed or every few seconds."""
        now = self.clock()
        self.state = replace(self.state, in_flight_since=now)
        try:
            stats = self.client.get("/api/stats")
            if not isinstance(stats, dict):
                raise Unreachable("/api/stats did not answer a stats object")
            sample = replace(self.state.sample, stats=stats, fetched_at=self.clock())
            key = (stats.get("total_requests"), stats.get("messages_count"), stats.get("last_activity"))
            if key != self._stats_key or now >= self._details_at:
                sample = self._details(sample)
                self._stats_key = key
                self._details_at = now + DETAILS_EVERY_S
            self.state = PollState(sample=sample)
        except Exception as exc:  # whatever goes wrong, the screen says so and polling goes on
            failures = self.state.failures + 1
            delay = BACKOFF_S[min(failures, len(BACKOFF_S)) - 1]
            self.state = replace(
                self.state,
                in_flight_since=None,
                error=str(exc) if isinstance(exc, Unreachable) else f"unexpected answer ({type(exc).__name__}: {exc})",
                failures=failures,
                retry_at=self.clock() + delay,
            )

    def _details(self, sample: Sample) -> Sample:
        """Block, health, projects and models; one that fails keeps its previous value."""
        params = {"active": "true"}
        if self.token_limit:
            params["token_limit"] = self.token_limit
        problems: list[str] = []

        def get(path: str, query: dict[str, str] | None = None) -> Any:
            try:
                return self.client.get(path, query)
            except Unreachable as exc:
                problems.append(str(exc))
                return None

        blocks, health = get("/api/reports/blocks", params), get("/api/metrics/health")
        projects, models = get("/api/metrics/projects"), get("/api/metrics/models")
        return replace(
            sample,
            block=active_block(blocks) if blocks is not None else sample.block,
            block_known=sample.block_known or blocks is not None,
            health=health if isinstance(health, dict) else sample.health,
            projects=as_list(projects, "projects") if projects is not None else sample.projects,
            models=as_list(models, "models") if models is not None else sample.models,
            problems=tuple(problems),
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            retry_at = self.state.retry_at
            wait = self.interval if retry_at is None else max(0.0, retry_at - self.clock())
            self._stop.wait(wait)


# --- drawing ---------------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    """A JSON number, or None for null and anything odd (a frame never fails on a strange answer)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def format_cost(value: object) -> str:
    """Dollars: cents from $1 up, four decimals below (small sessions cost fractions of a cent),
    unless they would round up to $1 ($0.99996 is "$1.00", not "$1.0000"; as the dashboard)."""
    v = _number(value)
    if v is None:
        return "-"
    return f"${v:,.2f}" if abs(v) >= 0.99995 else f"${v:.4f}"


def format_int(value: object) -> str:
    v = _number(value)
    return "-" if v is None else f"{round(v):,}"


def format_rate(value: object) -> str:
    v = _number(value)
    return "-" if v is None else f"{v:.2f}"


def parse_time(iso: str | None) -> datetime | None:
    if not iso:
        return None
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def format_time(iso: str | None, now: datetime) -> str:
    """Local wall time, with the date when not today, and how long ago."""
    t = parse_time(iso)
    if t is None:
        return "-"
    local = t.astimezone()
    shown = local.strftime("%H:%M:%S") if local.date() == now.astimezone().date() else local.strftime("%Y-%m-%d %H:%M")
    return f"{shown} ({format_ago((now - t).total_seconds())})"


def format_ago(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 90:
        return f"{s} s ago"
    if s < 5400:
        return f"{round(s / 60)} min ago"
    if s < 129600:
        return f"{round(s / 3600)} h ago"
    return f"{round(s / 86400)} days ago"


def format_minutes(minutes: float | None) -> str:
    if minutes is None:
        return "-"
    m = max(0, round(minutes))
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def short_names(names: list[str]) -> dict[str, str]:
    """The shortest tail of each project path that tells it apart from the others ("spotter")."""
    parts = {n: [p for p in n.replace("\\", "/").split("/") if p] for n in names}
    out: dict[str, str] = {}
    for n, ps in parts.items():
        k = 1
        while k < len(ps) and any(o != n and parts[o][-k:] == ps[-k:] for o in names):
            k += 1
        out[n] = "/".join(ps[-k:]) or n
    return out


@dataclass(frozen=True)
class View:
    """Everything one frame shows; `render` is a pure function of it."""

    url: str
    poll: PollState
    now_mono: float
    now: datetime
    token_limit: int | None = None  # a number given by --token-limit (the endpoint may supply one for "max")
    width: int = 100  # terminal columns: below NARROW_COLUMNS the panels stack instead of standing side by side


def status_line(view: View) -> Text:
    poll, sample = view.poll, view.poll.sample
    text = Text()
    text.append("cco monitor", style="bold")
    text.append(f"  {view.url}  ")
    if poll.error is not None:
        retry = max(0.0, (poll.retry_at or view.now_mono) - view.now_mono)
        text.append(f"UNREACHABLE: {poll.error}; retrying in {retry:.0f} s", style="bold red")
    elif poll.in_flight_since is not None and view.now_mono - poll.in_flight_since > STALE_AFTER_S:
        text.append(f"STALE: waiting {view.now_mono - poll.in_flight_since:.1f} s for the service", style="bold yellow")
    elif sample.stats is not None:
        text.append("live", style="bold green")
    else:
        text.append("connecting...", style="dim")
    if sample.fetched_at is not None:
        age = view.now_mono - sample.fetched_at
        text.append(f"  updated {age:.0f} s ago", style="yellow" if is_stale(view) else "dim")
    return text


def is_stale(view: View) -> bool:
    poll = view.poll
    if poll.sample.stats is None:
        return False
    if poll.error is not None:
        return True
    return poll.in_flight_since is not None and view.now_mono - poll.in_flight_since > STALE_AFTER_S


def _kv(rows: list[tuple[str, str]], title: str, stale: bool) -> Panel:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column(justify="right", style="yellow" if stale else "bold", no_wrap=True, overflow="fold")
    for k, v in rows:
        grid.add_row(k, v)
    return Panel(grid, title=title + (" (stale)" if stale else ""), title_align="left", border_style="dim")


def _block(view: View, block: Json | None, known: bool, stale: bool) -> RenderableType:
    title = "Active 5-hour block" + (" (stale)" if stale else "")
    if block is None:
        msg = "no active block (no calls in the last 5 hours)" if known else "waiting for the block report..."
        return Panel(Text(msg, style="dim"), title=title, title_align="left", border_style="dim")
    start, end = parse_time(block.get("startTime")), parse_time(block.get("endTime"))
    burn = block.get("burnRate") or {}
    proj = block.get("projection") or {}
    tokens = int(block.get("totalTokens") or 0)
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim")
    grid.add_column()
    if start and end:
        window = f"{start.astimezone():%H:%M} - {end.astimezone():%H:%M}"
        remaining = format_minutes((end - view.now).total_seconds() / 60)
        grid.add_row("window", f"{window}, ends in {remaining}")
    grid.add_row("so far", f"{format_int(tokens)} tokens  {format_cost(block.get('costUSD'))}")
    grid.add_row(
        "burn rate",
        f"{format_int(burn.get('tokensPerMinute'))} tokens/min  {format_cost(burn.get('costPerHour'))}/h"
        if burn
        else "- (needs two calls in the block)",
    )
    grid.add_row(
        "projection", f"{format_int(proj.get('totalTokens'))} tokens  {format_cost(proj.get('totalCost'))} at block end"
    )
    limit_status = block.get("tokenLimitStatus") or {}
    limit = view.token_limit or limit_status.get("limit")
    parts: list[RenderableType] = [grid]
    if limit:
        used = tokens / limit
        projected = (proj.get("totalTokens") or limit_status.get("projectedUsage") or 0) / limit
        style = "red" if used > 1 else "yellow" if used > 0.8 else "green"
        bar = ProgressBar(total=float(limit), completed=float(min(tokens, limit)), width=40, complete_style=style)
        line = Table.grid(padding=(0, 1))
        line.add_row(
            Text("tokens", style="dim"),
            bar,
            Text(f"{used:.0%} of {format_int(limit)} (projected {projected:.0%})", style=style),
        )
        parts.append(line)
    elif start and end:
        total = (end - start).total_seconds()
        done = min(total, max(0.0, (view.now - start).total_seconds()))
        line = Table.grid(padding=(0, 1))
        line.add_row(
            Text("time", style="dim"), ProgressBar(total=total, completed=done, width=40), f"{done / total:.0%}"
        )
        parts.append(line)
    return Panel(Group(*parts), title=title, title_align="left", border_style="dim")


def _top(rows: list[Json], name_key: str, calls_key: str, title: str, stale: bool) -> Panel:
    table = Table(box=None, padding=(0, 1), show_edge=False, expand=True)
    table.add_column(title.split()[-1].rstrip("s").lower(), overflow="ellipsis", no_wrap=True, ratio=1)
    table.add_column("calls", justify="right")
    table.add_column("cost", justify="right")
    top = sorted(rows, key=lambda r: float(r.get("cost") or 0), reverse=True)[:TOP_N]
    labels = short_names([str(r.get(name_key) or "-") for r in rows]) if name_key == "name" else {}
    for r in top:
        name = str(r.get(name_key) or "-")
        table.add_row(
            Text(labels.get(name, name)),  # a name as it is: not read as rich markup ('[bold]', 'x[/]')
            format_int(r.get(calls_key)),
            format_cost(r.get("cost")),
            style="yellow" if stale else None,
        )
    if not top:
        table.add_row(Text("none yet", style="dim"), "", "")
    return Panel(table, title=title + (" (stale)" if stale else ""), title_align="left", border_style="dim")


def health_problems(health: Json) -> list[str]:
    """What is worth a note in /api/metrics/health (its `ok` covers hard failures only)."""
    out: list[str] = []
    index = health.get("index") or {}
    if index.get("ok") is False:
        out.append(f"index error: {index.get('error') or 'unknown'}")
    if health.get("ingest_error"):
        out.append(f"ingest error: {health['ingest_error']}")
    if (health.get("prices") or {}).get("error"):
        out.append(f"pricing file error: {health['prices']['error']}")
    catch_up = health.get("catch_up") or {}
    if catch_up.get("running") and not catch_up.get("done"):
        out.append(f"catching up {float(catch_up.get('fraction') or 0):.0%}")
    observer = health.get("observer") or {}
    if observer.get("mode") == "polling":
        out.append("watching by polling")
    elif observer.get("alive") is False and observer.get("started", True):  # (not yet: the catch-up runs)
        out.append("file watcher down (restarting)")
    unpriced = health.get("unpriced_models") or {}
    if unpriced:
        out.append("unpriced: " + ", ".join(sorted(unpriced)))
    if health.get("rejected_lines"):
        n = health["rejected_lines"]
        out.append(f"{format_int(n)} line{'' if n == 1 else 's'} rejected")
    if health.get("ok") is False and not out:
        out.append("not ok")
    return out


def health_text(health: Json | None) -> Text:
    if health is None:
        return Text("health: unknown", style="dim")
    problems = health_problems(health)
    if not problems:
        return Text("health: ok", style="green")
    return Text("health: " + "; ".join(problems), style="bold red" if health.get("ok") is False else "yellow")


def _row(narrow: bool, *panels: RenderableType) -> RenderableType:
    """Panels side by side, or one under the other on a narrow terminal (numbers are never cut)."""
    if narrow:
        return Group(*panels)
    grid = Table.grid(padding=(0, 1), expand=True)
    for _ in panels:
        grid.add_column(ratio=1)
    grid.add_row(*panels)
    return grid


def render(view: View) -> RenderableType:
    """One frame. Numbers appear only once fetched; afterwards they stay, marked stale when old."""
    sample = view.poll.sample
    stale = is_stale(view)
    parts: list[RenderableType] = [status_line(view)]
    s = sample.stats
    if s is None:
        msg = "no data yet: " + (
            f"the service at {view.url} is unreachable" if view.poll.error else "waiting for the service"
        )
        parts.append(Text(msg, style="bold red" if view.poll.error else "dim"))
    else:
        narrow = view.width < NARROW_COLUMNS
        parts.append(
            _row(
                narrow,
                _kv(
                    [("cost", format_cost(s.get("today_cost"))), ("tokens", format_int(s.get("today_tokens")))],
                    "Today",
                    stale,
                ),
                _kv(
                    [
                        ("cost", format_cost(s.get("total_cost"))),
                        ("tokens", format_int(s.get("total_tokens"))),
                        ("calls", format_int(s.get("total_requests"))),
                    ],
                    "Totals",
                    stale,
                ),
                _kv(
                    [
                        ("calls/min", format_rate(s.get("calls_per_minute"))),
                        ("cost/min", format_cost(s.get("cost_per_minute"))),
                        ("projects", format_int(s.get("active_projects"))),
                    ],
                    "Last 10 min",
                    stale,
                ),
            )
        )
        parts.append(_block(view, sample.block, sample.block_known, stale))
        parts.append(
            _row(
                narrow,
                _top(sample.projects, "name", "calls", "Top projects", stale),
                _top(sample.models, "model", "requests", "Top models", stale),
            )
        )
        footer = Text()
        footer.append("last activity ", style="dim")
        footer.append(format_time(s.get("last_activity"), view.now))
        footer.append("   ")
        footer.append_text(Text("health: unknown (stale)", style="yellow") if stale else health_text(sample.health))
        for problem in sample.problems:
            footer.append(f"   {problem}", style="yellow")
        parts.append(footer)
    parts.append(Text("q quit", style="dim"))
    return Group(*parts)


# --- keys and the loop -----------------------------------------------------------------------------


class Keys:
    """Single keypresses from a terminal in cbreak mode (Ctrl-C still interrupts); nothing otherwise."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream if stream is not None else sys.stdin
        self._saved: Any = None
        self._fd: int | None = None

    def __enter__(self) -> Keys:
        try:
            import termios
            import tty

            if self.stream.isatty():
                self._fd = self.stream.fileno()
                self._saved = termios.tcgetattr(self._fd)
                tty.setcbreak(self._fd)
        except (ImportError, OSError, ValueError, AttributeError):
            self._fd = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None and self._saved is not None:
            import termios

            with contextlib.suppress(OSError):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def read(self, timeout: float) -> str:
        """Keys typed within `timeout` seconds ("" if none); just sleeps when not a terminal."""
        if self._fd is None:
            time.sleep(timeout)
            return ""
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return ""
        data = os.read(self._fd, 64)
        if not data:  # end of input: nothing more will be typed; do not spin
            time.sleep(timeout)
        return data.decode(errors="replace")


def parse_token_limit(value: str | None) -> tuple[str | None, int | None]:
    """`--token-limit` as (query value for the blocks endpoint, number for the bar); "max" asks the service."""
    if value is None or value == "":
        return None, None
    if value.lower() == "max":
        return "max", None
    try:
        n = int(value.replace(",", "").replace("_", ""))
    except ValueError:
        raise ValueError(f"--token-limit must be a number of tokens or 'max', not {value!r}") from None
    if n <= 0:
        raise ValueError("--token-limit must be positive")
    return str(n), n


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _running(poller: Poller) -> Iterator[Poller]:
    poller.start()
    try:
        yield poller
    finally:
        poller.stop()


def run(
    url: str = DEFAULT_URL,
    interval: float = DEFAULT_INTERVAL_S,
    token_limit: str | None = None,
    console: Console | None = None,
    locate: Callable[[], str | None] | None = None,
) -> None:
    """Draw until `q` or Ctrl-C; returns normally either way."""
    from rich.live import Live

    query_limit, bar_limit = parse_token_limit(token_limit)
    console = console or Console()
    client = Client(url, token=os.environ.get("CCO_TOKEN") or None, locate=locate)
    poller = Poller(client, interval, query_limit)
    # SIGTERM leaves like Ctrl-C, so the terminal gets its modes and main screen back.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)

    def frame() -> RenderableType:
        try:
            view = View(client.base_url, poller.state, time.monotonic(), datetime.now(UTC), bar_limit, console.width)
            return render(view)
        except Exception as exc:  # a strange answer must not end the monitor with a traceback
            return Text(f"cco monitor: cannot draw this answer ({type(exc).__name__}: {exc}); still polling")

    try:
        with (
            _running(poller),
            Keys() as keys,
            Live(frame(), console=console, screen=True, auto_refresh=False, transient=True) as live,
        ):
            while True:
                pressed = keys.read(FRAME_S)
                if "q" in pressed.lower():
                    break
                try:
                    live.update(frame(), refresh=True)  # drawing happens here, outside frame()'s guard
                except Exception as exc:
                    live.update(Text(f"cco monitor: cannot draw this answer ({exc}); still polling"), refresh=True)
    except KeyboardInterrupt:
        pass
