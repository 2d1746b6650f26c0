"""The dashboard in a real headless Chromium against a real `cco index run` over the sample transcripts.

Checks what a person would: the numbers equal /api/stats, an appended transcript line shows up
without a reload, the filters filter, phone width does not scroll sideways, the console stays
clean and nothing is requested from outside the service. A screenshot is saved under tmp_path
(and to docs/dashboard.png when CCO_UPDATE_SCREENSHOT=1).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from conftest import CCO, ROOT

from api.monitor import format_cost, format_int
from tests.live_helpers import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SPOTTER = "/home/marco/projects/spotter"
SPOTTER_FILE = "-home-marco-spotter/tool_heavy.jsonl"
TIMEOUT_MS = 20_000


# --- a real service -------------------------------------------------------------------------------


def get_json(url: str, timeout: float = 5) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class Service:
    """`cco index run` as a user starts it, on a free port, stopped with SIGINT. Its zone is UTC,
    as the browsers' here (Watched): today is the same day to both, whatever the machine's zone."""

    def __init__(self, source: Path, db: Path, log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        args = [CCO, "index", "run", "--port", str(self.port), "--source", str(source), "--db", str(db)]
        args += ["--interval", "0.5"]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "TZ": "UTC"})
        deadline = time.monotonic() + 30
        while True:
            try:
                get_json(self.url + "/api/stats", timeout=1)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"cco index run did not start:\n{log.read_text(errors='replace')}")
                time.sleep(0.1)
        self.settle()

    def settle(self, timeout: float = 30) -> None:
        """Wait until catch-up is done and a snapshot newer than that is served."""
        deadline = time.monotonic() + timeout
        while True:
            health = get_json(self.url + "/api/metrics/health")
            if health["catch_up"]["done"] and not health["files_lagging"]:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"catch-up never finished: {health}")
            time.sleep(0.1)
        since = datetime.now(UTC)
        self.wait_for(
            lambda s: datetime.fromisoformat(s["timestamp"].replace("Z", "+00:00")) > since, "a fresh snapshot"
        )

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = get_json(self.url + "/api/stats")
        return data

    def wait_for(self, pred: Any, what: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if pred(stats):
                return stats
            if time.monotonic() > deadline:
                pytest.fail(f"service never showed {what}; last /api/stats: {stats}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def service(samples_tree: Path, tmp_path: Path) -> Iterator[Service]:
    svc = Service(samples_tree, tmp_path / "index.duckdb", tmp_path / "service.log")
    try:
        yield svc
    finally:
        svc.stop()


def ago_today(seconds: float) -> datetime:
    """`seconds` ago, or just after midnight (UTC, the zone of Service and Watched) if that is
    later: a call stamped so is today's. In a day's last two minutes this first waits for the
    next day, so that today does not end while a test looks at it."""
    now = datetime.now(UTC)
    left = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0) - now
    if left < timedelta(minutes=2):
        time.sleep(left.total_seconds() + 1)
        now = datetime.now(UTC)
    return max(now - timedelta(seconds=seconds), now.replace(hour=0, minute=0, second=1, microsecond=0))


def assistant_line(when: datetime, *, cwd: str = SPOTTER, model: str = "claude-opus-4-6") -> str:
    """One Claude Code assistant line with usage, as the CLI writes it."""
    line = {
        "parentUuid": str(uuid.uuid4()),
        "isSidechain": False,
        "userType": "external",
        "cwd": cwd,
        "sessionId": "d6e0bada-1959-4eec-a9d2-0bfade768d8f",
        "version": "2.1.38",
        "gitBranch": "master",
        "message": {
            "model": model,
            "id": "msg_" + uuid.uuid4().hex,
            "type": "message",
            "role": "assistant",
            "content": [{"type": "text", "text": "done"}],
            "stop_reason": "end_turn",
            "usage": {
                "input_tokens": 120,
                "cache_creation_input_tokens": 1500,
                "cache_read_input_tokens": 25000,
                "output_tokens": 400,
            },
        },
        "requestId": "req_" + uuid.uuid4().hex,
        "type": "assistant",
        "uuid": str(uuid.uuid4()),
        "timestamp": when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    return json.dumps(line, separators=(",", ":")) + "\n"  # compact, as Claude Code writes


def append(tree: Path, rel: str, text: str) -> None:
    with (tree / "projects" / rel).open("a", encoding="utf-8") as f:
        f.write(text)


# --- a real browser -------------------------------------------------------------------------------


def _have_browser() -> str | None:
    """None when Chromium and Playwright are usable, else why not."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not CHROMIUM.exists():
        subprocess.run([str(ROOT / "scripts" / "install_browser")], check=False, timeout=600)
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing and scripts/install_browser could not install it (needs root and apt)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _have_browser()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page whose console errors, uncaught exceptions and outside requests are collected."""

    def __init__(self, browser: Any, base: str, width: int, height: int, timezone: str = "UTC") -> None:
        self.page = browser.new_page(viewport={"width": width, "height": height}, timezone_id=timezone)
        self.page.set_default_timeout(TIMEOUT_MS)
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        self.page.on(
            "request",
            lambda req: (
                None
                if req.url.startswith((base + "/", "data:"))
                else self.problems.append(f"outside request: {req.url}")
            ),
        )

    def _console(self, msg: Any) -> None:
        if msg.type in ("error", "warning"):
            self.problems.append(f"console {msg.type}: {msg.text}")

    def value(self, selector: str) -> str:
        return str(self.page.locator(selector).get_attribute("data-value"))

    def text(self, selector: str) -> str:
        return str(self.page.locator(selector).inner_text()).strip()

    def wait_value(self, selector: str, expected: object) -> None:
        self.page.wait_for_function(
            "([sel, want]) => { const e = document.querySelector(sel); return e && e.dataset.value === want; }",
            arg=[selector, str(expected)],
        )


def js_number(v: float | int) -> str:
    """How JavaScript's String(v) writes a number from JSON (shortest round-trip, like repr)."""
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return repr(float(v))


def check_cards(w: Watched, stats: dict[str, Any]) -> None:
    for selector, key, fmt in [
        ("#total-cost", "total_cost", format_cost),
        ("#today-cost", "today_cost", format_cost),
        ("#total-tokens", "total_tokens", format_int),
        ("#today-tokens", "today_tokens", format_int),
        ("#total-calls", "total_requests", format_int),
        ("#failed-calls", "failed_requests", format_int),
        ("#cache-savings", "cache_savings", format_cost),
        ("#cost-per-minute", "cost_per_minute", format_cost),
    ]:
        assert w.value(selector) == js_number(stats[key]), (selector, key)
        assert w.text(selector) == fmt(stats[key]), (selector, key)
    assert w.value("#calls-per-minute") == js_number(stats["calls_per_minute"])
    assert w.text("#calls-per-minute") == f"{stats['calls_per_minute']:.2f}"


# --- the test -------------------------------------------------------------------------------------


def test_dashboard_live(browser: Any, service: Service, samples_tree: Path, tmp_path: Path) -> None:
    base = service.url
    stats = service.stats()
    w = Watched(browser, base, 1280, 900)
    page = w.page
    page.goto(base + "/")

    # Numbers equal /api/stats (the stats do not move while nothing is appended).
    w.wait_value("#total-calls", stats["total_requests"])
    check_cards(w, service.stats())
    projects = get_json(base + "/api/metrics/projects")["projects"]
    page.wait_for_function("n => document.querySelectorAll('#projects-table tbody tr[data-project]').length === n",
                           arg=len(projects))  # fmt: skip
    page.wait_for_selector("#feed li[data-key]")
    page.wait_for_selector("#chart svg rect.bar", state="attached")
    assert page.locator("#health-banner").is_hidden()
    assert page.locator("#conn-state").inner_text() == "live"
    updated = page.locator("#last-update").get_attribute("datetime")
    assert updated, "the time of the last update is shown"

    # A transcript append shows up without a reload: cards, the feed (with its time) and the block.
    page.evaluate("() => { window.__same_page = true; }")
    page.wait_for_function("() => Number(document.body.dataset.streamMessages) >= 1")  # the latest, on connect
    messages = int(page.evaluate("() => document.body.dataset.streamMessages"))
    before = service.stats()
    when = ago_today(5)
    append(samples_tree, SPOTTER_FILE, assistant_line(when))
    after = service.wait_for(lambda s: s["total_requests"] == before["total_requests"] + 1, "the appended call")
    w.wait_value("#total-calls", after["total_requests"])
    w.wait_value("#today-calls", 1)
    check_cards(w, service.stats())
    assert page.evaluate("() => window.__same_page") is True
    page.wait_for_function("n => Number(document.body.dataset.streamMessages) > n", arg=messages)  # pushed, not polled
    first = page.locator("#feed li[data-key]").first
    stamp = first.locator("time").get_attribute("datetime")
    assert stamp is not None and abs(datetime.fromisoformat(stamp.replace("Z", "+00:00")) - when) < timedelta(seconds=1)
    assert first.locator("time").inner_text().strip() not in ("", "–")
    page.wait_for_selector("#block-tokens")
    block = get_json(base + "/api/reports/blocks?active=true")["blocks"][-1]
    assert w.text("#block-tokens") == format_int(block["totalTokens"])
    assert w.text("#block-cost") == format_cost(block["costUSD"])

    # Activity type filter: only compactions (the samples hold exactly one).
    compactions = get_json(base + "/api/metrics/activity?type=compaction")["total"]
    page.get_by_role("combobox", name="Filter activity by type").select_option("compaction")
    page.wait_for_function(
        "n => { const li = [...document.querySelectorAll('#feed li[data-key]')];"
        " return li.length === n && li.every(x => x.dataset.type === 'compaction'); }",
        arg=compactions,
    )
    page.get_by_role("combobox", name="Filter activity by type").select_option("")

    # The project selector filters the cards, the table highlight and the feed.
    target = next(p for p in get_json(base + "/api/metrics/projects")["projects"] if p["name"] != SPOTTER)
    page.get_by_role("combobox", name="Filter the page by project").select_option(target["name"])
    w.wait_value("#total-calls", target["calls"])
    assert w.value("#total-cost") == js_number(target["cost"])
    page.wait_for_selector(f'#projects-table tr.selected[data-project="{target["name"]}"]')
    page.wait_for_function(
        "p => { const li = [...document.querySelectorAll('#feed li[data-key]')];"
        " return li.length > 0 && li.every(x => x.dataset.project === p); }",
        arg=target["name"],
    )
    assert page.locator("#feed-project").input_value() == target["name"]
    assert "#project=" in page.url
    # The models table counts that project's calls too.
    page.wait_for_function(
        "n => [...document.querySelectorAll('#models-table tbody tr')]"
        ".reduce((a, tr) => a + Number(tr.cells[1].textContent.replace(/,/g, '')), 0) === n",
        arg=target["calls"],
    )
    page.screenshot(path=str(tmp_path / "dashboard-project.png"), full_page=True)
    page.get_by_role("combobox", name="Filter the page by project").select_option("")
    w.wait_value("#total-calls", after["total_requests"])

    # 30-day chart.
    page.get_by_role("button", name="30 days (daily)").click()
    page.wait_for_function("() => document.querySelectorAll('#chart rect.bar').length === 30")
    assert page.get_by_role("button", name="30 days (daily)").get_attribute("aria-pressed") == "true"
    page.get_by_role("button", name="24 hours (hourly)").click()
    day_events = get_json(
        base
        + "/api/metrics/activity?type=api_call,cache_hit,error&limit=1000&from="
        + (datetime.now(UTC) - timedelta(hours=24)).strftime("%Y-%m-%dT%H:00:00Z")
    )["events"]
    page.wait_for_function(
        """want => { const bars = [...document.querySelectorAll('#chart rect.bar')];
             const sum = bars.reduce((a, r) => a + Number(r.dataset.value), 0);
             return bars.length === 24 && Math.abs(sum - want) < 1e-9; }""",
        arg=sum(e["cost"] for e in day_events),
    )

    # The money axis: round steps, all labels with the same decimals.
    labels = page.evaluate(
        "() => [...document.querySelectorAll('#chart svg text[text-anchor=end]')].map(t => t.textContent)"
    )
    assert len(labels) == 5 and len({len(t.partition(".")[2]) for t in labels}) == 1, labels
    # Dates of another year show it (old history must not look recent).
    this_year = datetime.now().year
    older = [p for p in get_json(base + "/api/metrics/projects")["projects"] if int(p["lastActivity"][:4]) != this_year]
    assert older, "the samples hold a project last active in another year (ai-music, 2025)"
    for p in older:
        cell = page.locator(f'#projects-table tr[data-project="{p["name"]}"] td').last.inner_text()
        assert p["lastActivity"][:4] in cell, (p["name"], cell)

    page.wait_for_timeout(300)
    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("CCO_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(shot, ROOT / "docs" / "dashboard.png")
    assert w.problems == []
    page.close()


def test_dashboard_phone_width_and_health_banner(
    browser: Any, service: Service, tmp_path: Path, samples_tree: Path
) -> None:
    """At 390 px nothing scrolls sideways, a long project name included; every control has an
    accessible name; no console noise."""
    before = service.stats()["total_requests"]
    append(samples_tree, SPOTTER_FILE, assistant_line(datetime.now(UTC), cwd="/home/u/" + "long-project-name-" * 12))
    service.wait_for(lambda s: s["total_requests"] == before + 1, "the call of the long-named project")
    w = Watched(browser, service.url, 390, 844)
    page = w.page
    page.goto(service.url + "/")
    w.wait_value("#total-calls", service.stats()["total_requests"])
    page.wait_for_selector("#feed li[data-key]")
    overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('button, select, input, [tabindex]')]
             .filter(e => !(e.getAttribute('aria-label') || e.textContent.trim() || e.labels?.length))
             .map(e => e.outerHTML)"""
    )
    assert unnamed == []
    for name in ("Filter the page by project", "Filter activity by type", "Filter activity by project"):
        assert page.get_by_role("combobox", name=name).count() == 1
    page.screenshot(path=str(tmp_path / "dashboard-phone.png"), full_page=True)

    # A health answer that is not ok becomes a visible banner (rejected lines here). A watcher
    # that has not started yet (it starts once the catch-up is done) is not reported down.
    observer = {"alive": False, "started": False, "mode": "events"}
    health = {"ok": True, "rejected_lines": 3, "unpriced_models": {"claude-x": 2}, "observer": observer}
    page.route(
        "**/api/metrics/health",
        lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(health)),
    )
    page.reload()
    page.wait_for_selector("#health-banner:not([hidden])")
    assert "3 transcript lines rejected" in w.text("#health-text")
    assert "claude-x" in w.text("#health-text")
    assert "watcher" not in w.text("#health-text")
    observer["started"] = True  # started and not alive: down
    page.reload()
    page.wait_for_selector("#health-text:has-text('file watcher is down')")
    assert w.problems == []
    page.close()


def test_dashboard_says_stale_when_the_service_stops_answering(browser: Any, service: Service) -> None:
    """A service that hangs (SIGSTOP) must not look live: requests time out and the page says so."""
    w = Watched(browser, service.url, 1280, 900)
    page = w.page
    page.goto(service.url + "/")
    w.wait_value("#total-calls", service.stats()["total_requests"])
    service.proc.send_signal(signal.SIGSTOP)
    try:
        page.wait_for_function(
            "() => /stale|offline/.test(document.querySelector('#conn-state').textContent)", timeout=25_000
        )
        assert page.locator("#conn-dot").get_attribute("class") == "dot down"
    finally:
        service.proc.send_signal(signal.SIGCONT)
    page.wait_for_function("() => document.querySelector('#conn-state').textContent === 'live'", timeout=25_000)
    page.close()


def test_dashboard_survives_a_service_restart(browser: Any, samples_tree: Path, tmp_path: Path) -> None:
    """The page says the service is gone, then reconnects the stream by itself and shows new calls."""
    db, log = tmp_path / "index.duckdb", tmp_path / "service.log"
    svc = Service(samples_tree, db, log)
    w = Watched(browser, svc.url, 1280, 900)
    page = w.page
    try:
        page.goto(svc.url + "/")
        w.wait_value("#total-calls", svc.stats()["total_requests"])
        page.wait_for_function("() => document.querySelector('#conn-state').textContent === 'live'")
        page.evaluate("() => { window.__same_page = true; }")
        svc.stop()
        page.wait_for_function("() => document.querySelector('#conn-state').textContent === 'offline'")
        assert page.locator("#error-banner").is_visible()
        svc = Service(samples_tree, db, log, port=svc.port)
        before = svc.stats()["total_requests"]
        page.wait_for_function("() => document.querySelector('#conn-state').textContent === 'live'")
        page.wait_for_selector("#error-banner", state="hidden")
        append(samples_tree, SPOTTER_FILE, assistant_line(datetime.now(UTC)))
        w.wait_value("#total-calls", before + 1)
        assert page.evaluate("() => window.__same_page") is True
    finally:
        svc.stop()
    # While the service was down the browser itself logs the refused connections; nothing else.
    refused = (
        "ERR_CONNECTION_REFUSED",
        "ERR_EMPTY_RESPONSE",
        "ERR_CONNECTION_RESET",
        "ERR_INCOMPLETE_CHUNKED",
        "ERR_SOCKET_NOT_CONNECTED",
    )
    assert [p for p in w.problems if not any(r in p for r in refused)] == []
    page.close()


def test_today_is_the_browsers_day_when_the_service_is_elsewhere(
    browser: Any, service: Service, samples_tree: Path
) -> None:
    """/api/stats' today is the service's local day; a browser in another zone shows its own day on
    the whole card (as yesterday and the chart), never a mix. A call is put in the service's today
    that is not in the browser's: 00:00:30 UTC is yesterday in Kiritimati (UTC+14) once UTC is past
    10:00, and 23:59:30 UTC is tomorrow in Pago Pago (UTC-11) before 11:00 UTC."""
    now = ago_today(0)  # not in a day's last two minutes: the service's today must not end meanwhile
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    zone, when = (
        ("Pacific/Kiritimati", day + timedelta(seconds=30))
        if now.hour >= 10
        else ("Pacific/Pago_Pago", day + timedelta(hours=23, minutes=59, seconds=30))
    )
    before = service.stats()
    append(samples_tree, SPOTTER_FILE, assistant_line(when))
    stats = service.wait_for(lambda s: s["total_requests"] == before["total_requests"] + 1, "the appended call")
    assert get_json(service.url + "/api/metrics/health")["timezone"] != zone
    local_today = now.astimezone(ZoneInfo(zone)).date().isoformat()
    daily = get_json(f"{service.url}/api/reports/daily?since={local_today}&until={local_today}&timezone={zone}")
    expected = daily["daily"][0]["totalCost"] if daily["daily"] else 0
    assert expected != stats["today_cost"]  # the two days differ by the appended call
    w = Watched(browser, service.url, 1280, 900, timezone=zone)
    w.page.goto(service.url + "/")
    w.wait_value("#total-calls", stats["total_requests"])
    w.wait_value("#today-cost", js_number(expected))
    assert w.problems == []
