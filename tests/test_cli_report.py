"""`cco report …` through the real executable, and the same output when a service answers."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cco, write_tree
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # This Starlette prefers `httpx2` for its TestClient; the installed `httpx` works the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "reports"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "index.duckdb"
    done = run_cco("index", "sync", "--source", str(FIXTURE), "--db", str(path))
    assert done.returncode == 0, done.stderr
    return path


def report_json(db: Path, *args: str) -> Any:
    done = run_cco("report", *args, "--json", "--db", str(db))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_daily_json_in_berlin(db: Path) -> None:
    data = report_json(db, "daily", "--timezone", "Europe/Berlin")
    assert [(r["date"], r["totalTokens"]) for r in data["daily"]] == [("2026-03-10", 87100), ("2026-04-02", 7000)]
    assert data["totals"]["totalTokens"] == 94100
    assert data["totals"]["totalCost"] == pytest.approx(0.1695)


def test_totals_equal_index_status(db: Path) -> None:
    done = run_cco("index", "status", "--json", "--db", str(db))
    status = json.loads(done.stdout)
    for kind in ("daily", "weekly", "monthly", "session"):
        totals = report_json(db, kind)["totals"]
        assert totals["totalTokens"] == status["total_tokens"]
        assert totals["totalCost"] == pytest.approx(status["total_cost"])


def test_weekly_monthly_session_blocks(db: Path) -> None:
    weekly = report_json(db, "weekly", "-z", "UTC", "--start-of-week", "monday")
    assert [r["week"] for r in weekly["weekly"]] == ["2026-03-09", "2026-03-30"]
    monthly = report_json(db, "monthly", "-z", "UTC", "--order", "desc")
    assert [r["month"] for r in monthly["monthly"]] == ["2026-04", "2026-03"]
    sessions = report_json(db, "session", "-z", "UTC", "--instances")
    assert sorted(sessions["projects"]) == ["-work-alpha", "-work-beta"]
    blocks = report_json(db, "blocks", "--token-limit", "max")["blocks"]
    assert len(blocks) == 8
    assert blocks[2]["tokenLimitStatus"]["status"] == "warning"  # the largest block is 100% of "max"
    assert not any(b["isActive"] for b in blocks)  # the fixture is in the past


def test_session_tables_date_the_last_call_in_the_report_zone(db: Path) -> None:
    """s-beta's last call is 2026-03-10T19:31Z: 04:31 the next morning in Tokyo."""
    for zone, date in (("UTC", "2026-03-10"), ("Asia/Tokyo", "2026-03-11")):
        done = run_cco("report", "session", "-z", zone, "--db", str(db), env={"COLUMNS": "160"})
        assert done.returncode == 0, done.stderr
        (row,) = [line for line in done.stdout.splitlines() if "s-beta" in line]
        assert row.split()[2] == date, row


def test_tables_name_the_models_counted_at_no_cost(tmp_path: Path) -> None:
    line = (
        '{{"type":"assistant","timestamp":"2026-03-01T10:0{n}:00.000Z","cwd":"/w/p","requestId":"r{n}",'
        '"message":{{"id":"m{n}","model":"{model}","usage":{{"input_tokens":100,"output_tokens":10}}}}}}\n'
    )
    tree = write_tree(
        tmp_path / "claude",
        {"p/s.jsonl": line.format(n=1, model="gpt-4o") + line.format(n=2, model="claude-sonnet-4-5")},
    )
    db = str(tmp_path / "i.duckdb")
    assert run_cco("index", "sync", "--source", str(tree), "--db", db).returncode == 0
    note = "cco: note: no price for gpt-4o: calls without a recorded costUSD count $0"
    for args in (("daily",), ("session", "--instances"), ("blocks",)):
        done = run_cco("report", *args, "--db", db)
        assert done.returncode == 0 and note in done.stderr, (args, done.stderr)
    for args in (("daily", "--json"), ("daily", "--mode", "display")):
        done = run_cco("report", *args, "--db", db)
        assert done.returncode == 0 and done.stderr == "", (args, done.stderr)  # JSON stays ccusage's


def test_project_filter(db: Path) -> None:
    data = report_json(db, "daily", "-z", "UTC", "--project", "beta")
    assert [(r["date"], r["totalTokens"]) for r in data["daily"]] == [("2026-03-10", 64000)]


def test_tables(db: Path) -> None:
    done = run_cco("report", "daily", "-z", "UTC", "--breakdown", "--db", str(db), env={"COLUMNS": "120"})
    assert done.returncode == 0, done.stderr
    for text in ("2026-03-09", "└ sonnet-4-6", "└ opus-4-6", "Total", "94,100", "$0.17", "Cache W"):
        assert text in done.stdout
    done = run_cco("report", "session", "--instances", "--db", str(db))
    assert done.returncode == 0 and "-work-beta" in done.stdout
    done = run_cco("report", "blocks", "-t", "25000", "--db", str(db), env={"COLUMNS": "120"})
    assert done.returncode == 0 and "exceeds" in done.stdout and "gap" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("daily", "--since", "2026-3-1x"), "--since '2026-3-1x' is not a date"),
        (("weekly", "--timezone", "Nowhere/City"), "unknown timezone 'Nowhere/City'"),
        (("monthly", "--since", "2026-05-01", "--until", "2026-04-01"), "is after --until"),
        (("blocks", "--token-limit", "many"), "--token-limit must be a number"),
        (("session", "--order", "up"), "--order must be one of"),
        (("daily", "--timezone", ""), "unknown timezone ''"),
        (("daily", "--since", ""), "--since '' is not a date"),
        (("daily", "--project", ""), "--project needs a project name or path"),
        (("daily", "--mode", "cheap"), "--mode must be one of auto, calculate, display, got 'cheap'"),
        (("daily", "--bogus"), "No such option: --bogus; see `cco report daily --help`"),
        (("daily", "extra"), "Got unexpected extra argument(s) (extra)"),
        (
            ("blocks", "--since", "2025-01-01"),
            "--since is not an option of `cco report blocks`; daily, weekly, monthly, session take it",
        ),
        (("daily", "--active"), "--active is not an option of `cco report daily`; blocks takes it"),
        (("blocks", "--session-length", "abc"), "Invalid value for '--session-length'"),
        (("daily", "--db", ""), "--db needs a path, got ''"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(db: Path, args: tuple[str, ...], message: str) -> None:
    done = run_cco("report", *args, "--db", str(db))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("cco: error: ") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_dates_at_the_ends_of_the_calendar(db: Path) -> None:
    everything = json.loads(run_cco("report", "daily", "--json", "--db", str(db)).stdout)["totals"]
    for args in (("--until", "9999-12-31"), ("--since", "0001-01-01", "-z", "Asia/Tokyo")):
        done = run_cco("report", "session", "--json", *args, "--db", str(db))
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["totals"] == everything
    done = run_cco("report", "daily", "--json", "--since", "9999-12-31", "-z", "America/New_York", "--db", str(db))
    assert json.loads(done.stdout)["daily"] == []


def test_project_given_with_a_trailing_slash(db: Path) -> None:
    plain = json.loads(run_cco("report", "daily", "--json", "--project", "/work/beta", "--db", str(db)).stdout)
    slash = json.loads(run_cco("report", "daily", "--json", "--project", "/work/beta/", "--db", str(db)).stdout)
    assert slash == plain and plain["totals"]["totalTokens"] > 0


def test_empty_index(tmp_path: Path) -> None:
    db = tmp_path / "none.duckdb"
    assert report_json(db, "daily")["daily"] == []
    assert report_json(db, "session", "--instances")["projects"] == {}
    assert report_json(db, "blocks", "--active") == {"blocks": []}
    done = run_cco("report", "monthly", "--db", str(db))
    assert done.returncode == 0 and "No usage" in done.stdout
    assert f"cco: note: no index at {db} yet" in done.stderr  # a mistyped --db is not silently empty
    assert not db.exists()


def test_same_output_from_a_service(db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a live service for the index, `cco report` prints the service's answer, identical to its own."""
    from starlette.applications import Starlette
    from typer.testing import CliRunner

    import api.client
    from api.cli import build_app
    from api.context import AppContext
    from api.routes.reports import routes
    from indexer.paths import run_file
    from indexer.pricing import apply_prices, load_book
    from indexer.store import Index

    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(db.read_bytes())
    app = build_app()
    runner = CliRunner()
    args = [
        ["report", "daily", "-z", "Europe/Berlin", "--json", "--db", str(copy)],
        ["report", "session", "-z", "UTC", "--instances", "--json", "--db", str(copy)],
        ["report", "weekly", "-z", "UTC", "--start-of-week", "tuesday", "--json", "--db", str(copy)],
        ["report", "blocks", "-t", "max", "--json", "--db", str(copy)],
    ]
    local = [runner.invoke(app, a) for a in args]
    assert all(r.exit_code == 0 for r in local), [r.output for r in local]

    with Index(copy) as index:
        apply_prices(index.con, load_book(None))
        ctx = AppContext(copy, reader=lambda: index.con.cursor(), book=lambda: load_book(None), machine="test")
        client = TestClient(Starlette(routes=routes(ctx)))
        asked: list[str] = []

        class FakeService:
            def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
                asked.append(path)
                response = client.get(path, params=params)
                assert response.status_code == 200, response.text
                return response.json()

        monkeypatch.setattr(api.client, "service_for", lambda db: FakeService())
        run_file(copy).write_text("{}")
        remote = [runner.invoke(app, a) for a in args]
    assert asked == ["/api/reports/daily", "/api/reports/session", "/api/reports/weekly", "/api/reports/blocks"]
    assert [r.output for r in remote] == [r.output for r in local]


def test_active_block_table(db: Path, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from api.cli_report import render_blocks
    from api.output import console
    from indexer.blocks import block_options, blocks_report
    from indexer.pricing import apply_prices, load_book
    from indexer.store import Index

    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(db.read_bytes())
    with Index(copy) as index:
        apply_prices(index.con, load_book(None))
        now = datetime(2026, 4, 2, 16, 30, tzinfo=UTC)
        data = blocks_report(index.con, block_options(active=True, token_limit="25000"), now=now)
    with console.capture() as capture:
        render_blocks(data, active_only=True)
    text = capture.get()
    for part in (
        "ACTIVE",
        "burn 100 tok/min ($0.02/h)",
        "projected 24,000 tokens, $0.07",
        "210 min left",
        "96.0% warning (projected)",  # the active block: 24,000 of 25,000 by its end
    ):
        assert part in text


def test_reads_without_writing_and_beside_other_readers(tmp_path: Path) -> None:
    """Once every model has a price row, a report opens the index read-only: other readers may hold it."""
    import duckdb

    db = tmp_path / "index.duckdb"
    assert run_cco("index", "sync", "--source", str(FIXTURE), "--db", str(db)).returncode == 0
    first = report_json(db, "daily", "-z", "UTC")  # may add price rows (opens for writing)
    assert first["totals"]["totalCost"] == pytest.approx(0.1695)
    before = db.stat().st_mtime_ns
    other = duckdb.connect(str(db), read_only=True)
    try:
        again = report_json(db, "daily", "-z", "UTC")
    finally:
        other.close()
    assert again == first
    assert db.stat().st_mtime_ns == before


def test_same_bytes_through_a_real_service(tmp_path: Path) -> None:
    """While `cco index run` holds the index, `cco report` asks it; the output is the same as reading the file."""
    import os
    import subprocess
    import time

    from conftest import CCO

    db = tmp_path / "index.duckdb"
    run_file = tmp_path / "index.duckdb.run.json"
    service = subprocess.Popen(
        [CCO, "index", "run", "--source", str(FIXTURE), "--db", str(db), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ),
    )
    args = [("daily", "-z", "Europe/Berlin"), ("session", "-z", "UTC", "--instances"), ("blocks", "-t", "max")]
    try:
        deadline = time.monotonic() + 90
        while not run_file.exists() or report_json(db, "daily")["totals"]["totalTokens"] != 94100:
            assert service.poll() is None, "the service exited"
            assert time.monotonic() < deadline, "the service did not start"
            time.sleep(0.5)
        served = [run_cco("report", *a, "--json", "--db", str(db)) for a in args]
        # A bad price file: the service keeps its last good prices, but a command fails as it would
        # without the service, naming the line.
        prices = Path(os.environ["CCO_HOME"]) / "pricing.toml"
        prices.parent.mkdir(parents=True, exist_ok=True)
        prices.write_text('[models."claude-x"]\ninput = -1\noutput = 2\n')
        bad = [run_cco(*c, "--db", str(db)) for c in (("report", "daily", "--json"), ("index", "status"))]
    finally:
        service.terminate()
        service.wait(timeout=60)
    assert not run_file.exists()
    bad += [run_cco(*c, "--db", str(db)) for c in (("report", "daily", "--json"), ("index", "status"))]
    assert [r.returncode for r in bad] == [2] * 4
    assert len({r.stderr for r in bad}) == 1 and f"{prices} line 2" in bad[0].stderr
    prices.unlink()
    local = [run_cco("report", *a, "--json", "--db", str(db)) for a in args]
    assert [r.returncode for r in served + local] == [0] * 6
    assert [r.stdout for r in served] == [r.stdout for r in local]


def test_a_changed_price_file_reprices_history(tmp_path: Path) -> None:
    """Prices are data: after `cco config pricing update`, a report over the same index follows it."""
    path = tmp_path / "index.duckdb"
    assert run_cco("index", "sync", "--source", str(FIXTURE), "--db", str(path)).returncode == 0
    before = report_json(path, "daily", "--mode", "calculate")["totals"]["totalCost"]
    # Every model of the fixture becomes free: the whole history must cost 0 now.
    models = {m for row in report_json(path, "daily")["daily"] for m in row["modelsUsed"]}
    for model in models:
        done = run_cco("config", "pricing", "update", model, "--input", "0", "--output", "0",
                       "--cache-write-5m", "0", "--cache-write-1h", "0", "--cache-read", "0")  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert before > 0
    assert report_json(path, "daily", "--mode", "calculate")["totals"]["totalCost"] == 0


# --- the command line without typer -------------------------------------------------------------

ORDINARY = [
    ["daily"],
    ["daily", "--json", "--since", "2026-03-01", "-u", "2026-04-30", "-z", "Europe/Berlin", "-b", "-i"],
    ["daily", "--since=2026-03-01", "--project", "beta", "--mode", "calculate", "-o", "desc", "-j"],
    ["weekly", "--start-of-week", "monday", "--json", "--db", "some/index.duckdb", "--since", ""],
    ["monthly", "-m", "display", "--order", "asc", "--order", "desc"],
    ["session", "--instances", "--timezone=UTC"],
    ["blocks", "--active", "-r", "--token-limit", "max", "--session-length", "2.5", "--json"],
    ["blocks", "-t", "25000", "-n", "3", "--mode", "auto"],
]
UNUSUAL = [
    [],
    ["yearly"],
    ["daily", "--help"],
    ["daily", "--bogus"],
    ["daily", "extra"],
    ["daily", "--since"],
    ["daily", "--json=yes"],
    ["daily", "-bj"],
    ["daily", "-s2026-03-01"],
    ["daily", "--project", "-dash"],
    ["daily", "--start-of-week", "monday"],
    ["blocks", "--since", "2026-03-01"],
    ["blocks", "--session-length", "abc"],
    ["blocks", "--session-length", "1e1"],
    ["weekly", "--db", ""],
]


@pytest.mark.parametrize("args", ORDINARY)
def test_parse_args_reads_what_typer_reads(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Both readers of the one option table give the commands the same values."""
    from typer.testing import CliRunner

    import api.cli_report
    from api.cli import build_app

    seen: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(api.cli_report, "run", lambda kind, values: seen.append((kind, values)))
    done = CliRunner().invoke(build_app(), ["report", *args])
    assert done.exit_code == 0, done.output
    assert api.cli_report.parse_args(args) == seen[0]


@pytest.mark.parametrize("args", UNUSUAL)
def test_parse_args_leaves_the_unusual_to_typer(args: list[str]) -> None:
    from api.cli_report import parse_args

    assert parse_args(args) is None


def test_ordinary_reports_run_without_typer_or_rich(db: Path) -> None:
    """`cco report … --json` neither builds the typer app nor imports rich (nor, in UTC, zoneinfo, nor the
    parser's records); its output is unchanged."""
    import subprocess
    import sys

    code = (  # the report ends the process with os._exit: look at the modules just before
        "import os, sys; from api.cli import main; sys.argv = ['cco', *sys.argv[1:]]; end = os._exit\n"
        "def look(status):\n"
        "    names = ('typer', 'rich', 'pydantic', 'api.cli_index', 'zoneinfo', 'schemas.records')\n"
        "    print(sorted(m for m in names if m in sys.modules), file=sys.stderr, flush=True)\n"
        "    end(status)\n"
        "os._exit = look; main()"
    )
    args = ["report", "daily", "-z", "UTC", "--json", "--db", str(db)]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "[]"
    assert done.stdout == run_cco(*args).stdout
    assert json.loads(done.stdout)["totals"]["totalTokens"] == 94100


def test_help_and_usage_errors_come_from_typer(db: Path) -> None:
    done = run_cco("report", "daily", "--help")
    assert done.returncode == 0 and "--start-of-week" not in done.stdout and "--timezone" in done.stdout
    done = run_cco("report", "weekly", "--help")
    assert done.returncode == 0 and "--start-of-week" in done.stdout and "[default: sunday]" in done.stdout
    done = run_cco("report")  # a group named alone: its help, as click has it
    assert done.returncode == 2 and "daily" in done.stdout and "blocks" in done.stdout


def test_the_index_opens_in_a_thread_for_a_report_computed_here(db: Path, tmp_path: Path) -> None:
    from api.cli_report import _open_early

    assert _open_early(tmp_path / "missing.duckdb") is None  # nothing to open: no thread
    served = tmp_path / "served.duckdb"
    served.touch()
    served.with_name(served.name + ".run.json").touch()
    assert _open_early(served) is None  # a service may answer: the file is its
    opening = _open_early(db)
    assert opening is not None
    con = opening.connection()
    assert con is not None
    try:
        assert con.execute("SELECT count(*) FROM calls").fetchone() == (10,)  # the fixture's calls
    finally:
        con.close()
    assert opening.connection() is None  # handed over once
    opening.close()
