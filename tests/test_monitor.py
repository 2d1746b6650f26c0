"""`cco monitor`: the frame it draws, the poller's stale/unreachable logic, keys, and the real thing under tmux."""

from __future__ import annotations

import os
import pty
import re
import shlex
import shutil
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import CCO, ROOT
from rich.console import Console
from test_dashboard import SPOTTER_FILE, Service, ago_today, append, assistant_line, free_port, get_json

from api import monitor
from api.monitor import Client, Keys, Poller, PollState, Sample, Unreachable, View, format_cost, format_int, render
from tests.live_helpers import json_server

STATS = {
    "timestamp": "2026-11-23T02:00:00.000Z",
    "total_requests": 1234,
    "failed_requests": 2,
    "total_cost": 56.789,
    "total_tokens": 9_876_543,
    "today_cost": 3.25,
    "today_tokens": 456_789,
    "calls_per_minute": 1.5,
    "cost_per_minute": 0.042,
    "active_projects": 2,
    "messages_count": 5000,
    "last_activity": "2026-11-23T01:59:30.000Z",
}
NOW = datetime(2026, 11, 23, 2, 0, 5, tzinfo=UTC)
BLOCK = {
    "startTime": "2026-11-23T00:00:00.000Z",
    "endTime": "2026-11-23T05:00:00.000Z",
    "isActive": True,
    "isGap": False,
    "totalTokens": 80_000,
    "costUSD": 1.5,
    "burnRate": {"tokensPerMinute": 666.6, "costPerHour": 0.75},
    "projection": {"totalTokens": 200_000, "totalCost": 3.75, "remainingMinutes": 180},
    "tokenLimitStatus": None,
}


def draw(view: View, width: int = 110) -> str:
    with open(os.devnull, "w") as sink:
        console = Console(width=width, record=True, color_system=None, file=sink)
        console.print(render(view))
        return console.export_text()


def view(poll: PollState, now_mono: float = 100.0, token_limit: int | None = None) -> View:
    return View("http://127.0.0.1:3000", poll, now_mono, NOW, token_limit)


# --- the frame ------------------------------------------------------------------------------------


def test_frame_shows_the_numbers() -> None:
    sample = Sample(
        stats=STATS,
        block=BLOCK,
        block_known=True,
        health={"ok": True},
        projects=[{"name": "/home/a/spotter", "calls": 10, "cost": 2.0}, {"name": "/x/other", "calls": 1, "cost": 9}],
        models=[{"model": "claude-opus-4-6", "requests": 11, "cost": 11.0}],
        fetched_at=99.5,
    )
    text = draw(view(PollState(sample=sample), token_limit=100_000))
    for expected in ("$3.25", "456,789", "$56.79", "9,876,543", "1,234", "1.50", "$0.0420", "live"):
        assert expected in text, expected
    assert "80,000 tokens" in text and "667 tokens/min" in text and "$0.7500/h" in text
    assert "200,000 tokens" in text and "$3.75 at block end" in text
    assert "80% of 100,000 (projected 200%)" in text
    assert "spotter" in text and "other" in text and "claude-opus-4-6" in text
    assert text.index("other") < text.index("spotter")  # by cost
    assert "health: ok" in text and "last activity" in text
    assert "stale" not in text.lower()


def test_names_are_shown_as_they_are_not_as_markup() -> None:
    """A model or project name holding rich markup ('x[/]' once ended the monitor with a traceback,
    '[bold red]alarm' showed as a bold 'alarm')."""
    sample = Sample(
        stats=STATS,
        block=BLOCK,
        block_known=True,
        health={"ok": True},
        projects=[{"name": "/home/me/[bold red]alarm", "calls": 1, "cost": 2.0}],
        models=[{"model": "claude-x[/]", "requests": 1, "cost": 50.0}],
        fetched_at=99.5,
    )
    text = draw(view(PollState(sample=sample)), width=140)
    assert "claude-x[/]" in text and "[bold red]alarm" in text


def test_narrow_terminal_stacks_panels_and_never_cuts_numbers() -> None:
    stats = {**STATS, "total_tokens": 1_234_567_890, "total_cost": 12_345.678}
    poll = PollState(sample=Sample(stats=stats, fetched_at=99.5))
    for width in (60, 80):
        text = draw(View("http://127.0.0.1:3000", poll, 100.0, NOW, None, width), width=width)
        assert "1,234,567,890" in text and "$12,345.68" in text and "calls/min" in text, text
        assert "…" not in text


def test_no_data_yet_never_shows_zeros() -> None:
    poll = PollState(error="connection refused", retry_at=104.0, failures=3)
    text = draw(view(poll))
    assert "UNREACHABLE: connection refused; retrying in 4 s" in text
    assert "unreachable" in text.splitlines()[1]
    numbers = text.replace("http://127.0.0.1:3000", "")
    assert "$" not in numbers and re.search(r"\b0\b", numbers) is None


def test_slow_request_shows_previous_numbers_marked_stale() -> None:
    sample = Sample(stats=STATS, fetched_at=95.0)
    text = draw(view(PollState(sample=sample, in_flight_since=98.5), now_mono=100.0))
    assert "STALE: waiting 1.5 s" in text
    assert "$3.25" in text and "(stale)" in text
    fresh = draw(view(PollState(sample=sample, in_flight_since=99.5), now_mono=100.0))
    assert "STALE" not in fresh and "(stale)" not in fresh


def test_lost_service_keeps_numbers_marked_stale() -> None:
    poll = PollState(sample=Sample(stats=STATS, fetched_at=90.0, health={"ok": True}), error="connection refused",
                     retry_at=101.0)  # fmt: skip
    text = draw(view(poll))
    assert "UNREACHABLE" in text and "$56.79" in text and "(stale)" in text and "updated 10 s ago" in text
    assert "health: unknown (stale)" in text and "health: ok" not in text  # not vouched for while unreachable


def test_health_problems_are_listed() -> None:
    health = {
        "ok": True,
        "catch_up": {"running": True, "done": False, "fraction": 0.25},
        "observer": {"alive": True, "mode": "polling"},
        "unpriced_models": {"claude-x": 3},
        "rejected_lines": 2,
    }
    assert monitor.health_problems(health) == [
        "catching up 25%",
        "watching by polling",
        "unpriced: claude-x",
        "2 lines rejected",
    ]
    assert monitor.health_problems({"ok": False, "index": {"ok": False, "error": "locked"}}) == ["index error: locked"]
    assert monitor.health_problems({"ok": True, "observer": {"alive": True, "mode": "events"}}) == []
    down = {"ok": False, "observer": {"alive": False, "started": True, "mode": "events"}}
    assert monitor.health_problems(down) == ["file watcher down (restarting)"]
    # not down: it starts once the catch-up is done
    assert monitor.health_problems({**down, "ok": True, "observer": {**down["observer"], "started": False}}) == []


def test_token_limit_option() -> None:
    assert monitor.parse_token_limit(None) == (None, None)
    assert monitor.parse_token_limit("max") == ("max", None)
    assert monitor.parse_token_limit("500,000") == ("500000", 500_000)
    for bad in ("lots", "0", "-5"):
        with pytest.raises(ValueError):
            monitor.parse_token_limit(bad)


def test_short_names_tell_projects_apart() -> None:
    names = ["/home/a/spotter", "/home/b/spotter", "/x/music"]
    assert monitor.short_names(names) == {
        "/home/a/spotter": "a/spotter",
        "/home/b/spotter": "b/spotter",
        "/x/music": "music",
    }


# --- the poller -----------------------------------------------------------------------------------


class FakeClient(Client):
    """Answers from a dict; `down` makes every call fail; `delay` makes /api/stats slow."""

    def __init__(self) -> None:
        super().__init__("http://fake")
        self.down = False
        self.delay = 0.0
        self.paths: list[str] = []
        self.answers: dict[str, Any] = {
            "/api/stats": STATS,
            "/api/reports/blocks": {"blocks": [BLOCK]},
            "/api/metrics/health": {"ok": True},
            "/api/metrics/projects": {"projects": []},
            "/api/metrics/models": {"models": []},
        }

    def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        self.paths.append(path + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else ""))
        if self.down:
            raise Unreachable("connection refused")
        if path == "/api/stats" and self.delay:
            time.sleep(self.delay)
        return self.answers[path]


def test_poller_backs_off_and_recovers() -> None:
    client = FakeClient()
    clock = [0.0]
    poller = Poller(client, 1.0, token_limit="max", clock=lambda: clock[0])
    poller.poll_once()
    assert poller.state.sample.stats == STATS and poller.state.sample.block == BLOCK
    assert "/api/reports/blocks?active=true&token_limit=max" in client.paths
    client.down = True
    delays = []
    for _ in range(7):
        poller.poll_once()
        assert poller.state.retry_at is not None
        delays.append(poller.state.retry_at - clock[0])
        assert poller.state.sample.stats == STATS  # the last good numbers stay
    assert delays == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]
    client.down = False
    poller.poll_once()
    assert poller.state.error is None and poller.state.failures == 0


def test_poller_survives_a_strange_answer() -> None:
    client = FakeClient()
    client.answers["/api/stats"] = ["not", "stats"]
    poller = Poller(client, 1.0)
    poller.poll_once()
    assert poller.state.error == "/api/stats did not answer a stats object"
    client.answers["/api/stats"] = {"total_requests": "x"}
    client.answers["/api/metrics/projects"] = None  # as_list copes; render copes with odd values below
    poller.poll_once()
    assert poller.state.error is None
    assert "calls  -" in draw(view(poller.state))


def test_poller_details_only_when_something_changed() -> None:
    client = FakeClient()
    clock = [0.0]
    poller = Poller(client, 1.0, clock=lambda: clock[0])
    poller.poll_once()
    client.paths.clear()
    clock[0] = 1.0
    poller.poll_once()
    assert client.paths == ["/api/stats"]
    client.answers["/api/stats"] = {**STATS, "total_requests": 1235}
    poller.poll_once()
    assert "/api/metrics/projects" in client.paths


def test_a_failing_detail_endpoint_keeps_the_rest() -> None:
    client = FakeClient()
    poller = Poller(client, 1.0)
    poller.poll_once()
    del client.answers["/api/metrics/health"]
    original_get = client.get

    def flaky(path: str, params: dict[str, str] | None = None) -> Any:
        if path == "/api/metrics/health":
            raise Unreachable("/api/metrics/health answered HTTP 500")
        return original_get(path, params)

    client.get = flaky  # type: ignore[method-assign]
    client.answers["/api/stats"] = {**STATS, "total_requests": 1}
    poller.poll_once()
    state = poller.state
    assert state.error is None and state.sample.stats is not None and state.sample.stats["total_requests"] == 1
    assert state.sample.health == {"ok": True}
    assert state.sample.problems == ("/api/metrics/health answered HTTP 500",)


def test_slow_service_is_stale_while_waiting() -> None:
    client = FakeClient()
    poller = Poller(client, 0.1)
    poller.poll_once()
    client.delay = 2.5
    worker = threading.Thread(target=poller.poll_once)
    worker.start()
    deadline = time.monotonic() + 2
    while poller.state.in_flight_since is None and time.monotonic() < deadline:
        time.sleep(0.01)
    started = poller.state.in_flight_since
    assert started is not None
    assert "STALE" not in draw(View("u", poller.state, started + 0.5, NOW))
    time.sleep(max(0.0, started + 1.2 - time.monotonic()))
    frame = draw(View("u", poller.state, time.monotonic(), NOW))
    assert "STALE" in frame and "$3.25" in frame
    worker.join()
    assert "STALE" not in draw(View("u", poller.state, time.monotonic(), NOW))


def test_client_reports_a_closed_port_as_unreachable() -> None:
    with pytest.raises(Unreachable, match="connection refused"):
        Client(f"http://127.0.0.1:{free_port()}", timeout=2).get("/api/stats")


def test_client_finds_a_service_restarted_elsewhere() -> None:
    """After a failed request the client asks `locate` (the run file) where the service is now."""

    def stats(path: str) -> tuple[int, bytes]:
        if path == "/private":  # as a service bound beyond loopback answers without a token
            return 401, b'{"error": "missing or wrong bearer token"}'
        return 200, b'{"total_cost": 1.0}'

    with json_server(stats) as port:
        moved = f"http://127.0.0.1:{port}"
        asked: list[int] = []

        def locate() -> str | None:
            asked.append(1)
            return moved if len(asked) > 1 else None  # no run file at first: the service is down

        old = f"http://127.0.0.1:{free_port()}"
        client = Client(old, timeout=2, locate=locate)
        with pytest.raises(Unreachable):
            client.get("/api/stats")  # the old address: refused
        with pytest.raises(Unreachable):
            client.get("/api/stats")
        assert client.base_url == old  # nothing located: the address shown stays the service's
        assert client.get("/api/stats") == {"total_cost": 1.0} and client.base_url == moved
        client.get("/api/stats")
        assert len(asked) == 2  # asked only after a failure
        with pytest.raises(Unreachable, match="the service requires a token: set CCO_TOKEN"):
            client.get("/private")


# --- keys -----------------------------------------------------------------------------------------


def test_keys_reads_single_keys_in_cbreak_mode_and_restores_the_terminal() -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "rb", buffering=0, closefd=False) as stream:
            before = termios.tcgetattr(slave)
            with Keys(stream) as keys:
                assert not termios.tcgetattr(slave)[3] & termios.ICANON
                assert keys.read(0.05) == ""
                os.write(master, b"q")  # no Enter needed
                assert keys.read(2) == "q"
            assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_keys_without_a_terminal_just_waits() -> None:
    with open(os.devnull, "rb") as stream, Keys(stream) as keys:
        start = time.monotonic()
        assert keys.read(0.05) == ""
        assert time.monotonic() - start >= 0.04


# --- the real program under tmux ------------------------------------------------------------------


def _tmux() -> str:
    if shutil.which("tmux") is None:
        subprocess.run([str(ROOT / "scripts" / "install_browser")], check=False, timeout=600)
    path = shutil.which("tmux")
    if path is None:
        pytest.skip("tmux is missing and scripts/install_browser could not install it")
    return path


class Tmux:
    """One detached tmux session (its own server socket) running a command in a 110x40 terminal."""

    def __init__(self, tmp: Path, command: list[str]) -> None:
        self.tmux = _tmux()
        self.sock = str(tmp / "tmux.sock")
        self.status = tmp / "exit-status"
        line = " ".join(shlex.quote(c) for c in command)
        script = f"{line}; echo $? > {shlex.quote(str(self.status))}; sleep 60"
        env = {**os.environ, "TERM": "xterm-256color"}
        subprocess.run(
            [self.tmux, "-S", self.sock, "new-session", "-d", "-x", "110", "-y", "40", "bash", "-c", script],
            check=True,
            env=env,
        )

    def screen(self) -> str:
        out = subprocess.run([self.tmux, "-S", self.sock, "capture-pane", "-p"], capture_output=True, text=True)
        return out.stdout

    def wait_for(self, pattern: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if re.search(pattern, text):
                return text
            if time.monotonic() > deadline:
                pytest.fail(f"{pattern!r} never appeared; screen:\n{text}")
            time.sleep(0.2)

    def keys(self, *keys: str) -> None:
        subprocess.run([self.tmux, "-S", self.sock, "send-keys", *keys], check=True)

    def exit_status(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while not self.status.exists() or not self.status.read_text().strip():
            if time.monotonic() > deadline:
                pytest.fail(f"the monitor did not exit; screen:\n{self.screen()}")
            time.sleep(0.1)
        return int(self.status.read_text())

    def close(self) -> None:
        subprocess.run([self.tmux, "-S", self.sock, "kill-server"], capture_output=True)


@pytest.fixture
def tmux_factory(tmp_path: Path) -> Iterator[Any]:
    sessions: list[Tmux] = []

    def make(command: list[str]) -> Tmux:
        t = Tmux(tmp_path, command)
        sessions.append(t)
        return t

    yield make
    for t in sessions:
        t.close()


def _values(screen: str, label: str) -> list[str]:
    """The values after `label` in screen order (the panels stand side by side: left to right)."""
    return re.findall(rf"\b{re.escape(label)} +(\S+)", screen)


def test_monitor_against_a_live_service_then_a_stopped_one(
    tmux_factory: Any, samples_tree: Path, tmp_path: Path
) -> None:
    service = Service(samples_tree, tmp_path / "index.duckdb", tmp_path / "service.log")
    try:
        # A call a moment ago makes today, the last 10 minutes and the active block non-empty.
        append(samples_tree, SPOTTER_FILE, assistant_line(ago_today(5)))
        stats = service.wait_for(lambda s: s["today_tokens"] > 0, "today's call")
        # in the service's zone: its today, and the last activity shown as a time of today
        monitor = [CCO, "monitor", "--url", service.url, "--interval", "0.5", "--token-limit", "100000"]
        term = tmux_factory(["env", "TZ=UTC", *monitor])
        screen = term.wait_for(r"live.*\n(.|\n)*Top projects")
        stats = service.stats()
        assert re.search(r"Today.*Totals.*Last 10 min", screen)
        assert _values(screen, "cost")[:2] == [format_cost(stats["today_cost"]), format_cost(stats["total_cost"])]
        assert _values(screen, "tokens")[:2] == [format_int(stats["today_tokens"]), format_int(stats["total_tokens"])]
        assert _values(screen, "calls")[:1] == [format_int(stats["total_requests"])]
        assert _values(screen, "calls/min")[:1] == [f"{stats['calls_per_minute']:.2f}"]
        assert _values(screen, "cost/min")[:1] == [format_cost(stats["cost_per_minute"])]
        block = get_json(service.url + "/api/reports/blocks?active=true")["blocks"][-1]
        assert f"{format_int(block['totalTokens'])} tokens  {format_cost(block['costUSD'])}" in screen
        assert "of 100,000" in screen
        assert "claude-opus-4-6" in screen and "spotter" in screen and "health: ok" in screen
        assert re.search(r"last activity \d\d:\d\d:\d\d \(\d+ s ago\)", screen)
    finally:
        service.stop()

    # The service goes away: the monitor says so, keeps the numbers (marked stale) and keeps running.
    screen = term.wait_for(r"UNREACHABLE: connection refused")
    assert format_cost(stats["total_cost"]) in screen and "(stale)" in screen
    time.sleep(2)
    assert not term.status.exists()
    term.keys("q")
    assert term.exit_status() == 0


def test_monitor_without_a_service_waits_and_quits_on_ctrl_c(tmux_factory: Any) -> None:
    term = tmux_factory([CCO, "monitor", "--url", f"http://127.0.0.1:{free_port()}", "--interval", "0.2"])
    screen = term.wait_for(r"UNREACHABLE: connection refused; retrying in \d+ s")
    assert "Traceback" not in screen and "$" not in screen
    time.sleep(2.5)
    assert "UNREACHABLE" in term.screen() and not term.status.exists()
    term.keys("C-c")
    assert term.exit_status() == 0
    assert "Traceback" not in term.screen()


def test_monitor_rejects_a_bad_token_limit() -> None:
    out = subprocess.run([CCO, "monitor", "--token-limit", "lots"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--token-limit" in out.stderr and "Traceback" not in out.stderr


def test_without_url_the_default_index_service_is_watched(tmp_path: Path) -> None:
    from api.cli_monitor import service_url
    from indexer.paths import default_db
    from indexer.runfile import RunInfo, now_iso, write_run_file

    assert service_url(None) == monitor.DEFAULT_URL
    assert service_url("http://127.0.0.1:4000") == "http://127.0.0.1:4000"
    assert service_url("127.0.0.1:4000") == "http://127.0.0.1:4000"  # the scheme may be left out
    with pytest.raises(ValueError, match="--url must be the service's address"):
        service_url("ftp://127.0.0.1:4000")
    db = default_db()
    db.parent.mkdir(parents=True, exist_ok=True)
    write_run_file(
        db, RunInfo(pid=os.getpid(), port=4321, host="127.0.0.1", token=False, started=now_iso(), db=str(db))
    )
    assert service_url(None) == "http://127.0.0.1:4321"


def test_costs_never_read_as_four_decimals_of_a_dollar() -> None:
    assert [format_cost(v) for v in (0.04199, 0.99994, 0.99996, 1.0, 1234.5)] == [
        "$0.0420", "$0.9999", "$1.00", "$1.00", "$1,234.50",
    ]  # fmt: skip
