"""Daily, weekly, monthly and session reports over the hand-checked fixture (fixtures/reports/README.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from indexer.errors import BadInput
from indexer.ingest import sync
from indexer.pricing import apply_prices, load_book
from indexer.reports import period_of, period_report, report_options, system_timezone, utc_bounds
from indexer.status import index_status
from indexer.store import Index
from tests.conftest import write_tree
from tests.live_helpers import call_line

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "reports"


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Index]:
    ix = Index(tmp_path_factory.mktemp("reports") / "index.duckdb")
    sync(ix, [FIXTURE / "projects"])
    apply_prices(ix.con, load_book(None))
    yield ix
    ix.close()


def report(index: Index, kind: str, **options: Any) -> dict[str, Any]:
    options.setdefault("timezone", "UTC")
    return period_report(index.con, kind, report_options(**options))


def brief(rows: list[dict[str, Any]], key: str) -> list[tuple[str, int, float]]:
    return [(r[key], r["totalTokens"], round(r["totalCost"], 10)) for r in rows]


def test_daily_utc_rows_breakdown_and_totals(index: Index) -> None:
    data = report(index, "daily")
    assert brief(data["daily"], "date") == [
        ("2026-03-09", 20100, 0.0965),
        ("2026-03-10", 67000, 0.052),
        ("2026-04-02", 7000, 0.021),
    ]
    first = data["daily"][0]
    assert list(first) == [
        "date", "inputTokens", "outputTokens", "cacheCreationTokens", "cacheReadTokens", "totalTokens",
        "totalCost", "modelsUsed", "modelBreakdowns",
    ]  # fmt: skip
    assert (first["inputTokens"], first["outputTokens"], first["cacheCreationTokens"], first["cacheReadTokens"]) == (
        1100,
        3000,
        6000,
        10000,
    )
    assert first["modelsUsed"] == ["claude-opus-4-6", "claude-sonnet-4-6"]
    assert first["modelBreakdowns"] == [
        {
            "modelName": "claude-sonnet-4-6",
            "inputTokens": 1000,
            "outputTokens": 2000,
            "cacheCreationTokens": 4000,
            "cacheReadTokens": 10000,
            "cost": pytest.approx(0.051),
        },
        {
            "modelName": "claude-opus-4-6",
            "inputTokens": 100,
            "outputTokens": 1000,  # the streamed partial line (output 10) is the same call
            "cacheCreationTokens": 2000,
            "cacheReadTokens": 0,
            "cost": pytest.approx(0.0455),  # 1-hour cache writes at 2x input
        },
    ]
    assert data["totals"] == {
        "inputTokens": 21100,
        "outputTokens": 7000,
        "cacheCreationTokens": 6000,
        "cacheReadTokens": 60000,
        "totalTokens": 94100,
        "totalCost": pytest.approx(0.1695),
    }


def test_synthetic_never_listed(index: Index) -> None:
    for kind in ("daily", "weekly", "monthly", "session"):
        for row in report(index, kind)[
            {"daily": "daily", "weekly": "weekly", "monthly": "monthly"}.get(kind, "sessions")
        ]:
            assert "<synthetic>" not in row["modelsUsed"]
            assert all(b["modelName"] != "<synthetic>" for b in row["modelBreakdowns"])
    march10 = report(index, "daily")["daily"][1]
    assert march10["modelsUsed"] == ["claude-haiku-4-5-20251001", "claude-sonnet-4-6"]


def test_day_boundary_differs_between_utc_and_berlin(index: Index) -> None:
    data = report(index, "daily", timezone="Europe/Berlin")
    assert brief(data["daily"], "date") == [("2026-03-10", 87100, 0.1485), ("2026-04-02", 7000, 0.021)]
    assert data["daily"][0]["inputTokens"] == 14100


def test_since_until_are_local_days(index: Index) -> None:
    berlin = report(index, "daily", timezone="Europe/Berlin", since="2026-03-10", until="2026-03-10")
    assert brief(berlin["daily"], "date") == [("2026-03-10", 87100, 0.1485)]
    utc = report(index, "daily", since="2026-03-10", until="20260310")
    assert brief(utc["daily"], "date") == [("2026-03-10", 67000, 0.052)]
    assert report(index, "daily", since="2027-01-01")["daily"] == []


def test_project_filter_by_name_path_or_folder(index: Index) -> None:
    for name in ("beta", "/work/beta", "-work-beta"):
        assert brief(report(index, "daily", project=name)["daily"], "date") == [("2026-03-10", 64000, 0.031)]


def test_instances_group_by_project(index: Index) -> None:
    data = report(index, "daily", instances=True)
    assert set(data) == {"projects", "totals"}
    assert {k: brief(v, "date") for k, v in data["projects"].items()} == {
        "-work-alpha": [("2026-03-09", 20100, 0.0965), ("2026-03-10", 3000, 0.021), ("2026-04-02", 7000, 0.021)],
        "-work-beta": [("2026-03-10", 64000, 0.031)],
    }
    assert data["projects"]["-work-beta"][0]["project"] == "-work-beta"
    assert data["totals"]["totalTokens"] == 94100


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("sunday", [("2026-03-08", 87100, 0.1485), ("2026-03-29", 7000, 0.021)]),
        ("monday", [("2026-03-09", 87100, 0.1485), ("2026-03-30", 7000, 0.021)]),
        ("tuesday", [("2026-03-03", 20100, 0.0965), ("2026-03-10", 67000, 0.052), ("2026-03-31", 7000, 0.021)]),
    ],
)
def test_weekly_start_of_week(index: Index, start: str, expected: list[tuple[str, int, float]]) -> None:
    assert brief(report(index, "weekly", start_of_week=start)["weekly"], "week") == expected


def test_monthly_and_order(index: Index) -> None:
    assert brief(report(index, "monthly")["monthly"], "month") == [("2026-03", 87100, 0.1485), ("2026-04", 7000, 0.021)]
    assert [r["month"] for r in report(index, "monthly", order="desc")["monthly"]] == ["2026-04", "2026-03"]


def test_session_rows(index: Index) -> None:
    rows = report(index, "session")["sessions"]
    assert [(r["sessionId"], r["totalTokens"], round(r["totalCost"], 10)) for r in rows] == [
        ("s-alpha", 23100, 0.1175),
        ("s-beta", 64000, 0.031),
        ("s-gamma", 7000, 0.021),
    ]
    alpha, beta, gamma = rows
    assert alpha["firstActivity"] == "2026-03-09T23:30:00.000Z"
    assert alpha["lastActivity"] == "2026-03-10T12:00:00.000Z"
    assert alpha["projectPath"] == "-work-alpha"
    assert beta["lastActivity"] == "2026-03-10T19:31:00.000Z"
    assert beta["projectPath"] == "-work-beta"
    assert gamma["lastActivity"] == "2026-04-02T16:00:00.000Z"
    assert alpha["modelsUsed"] == ["claude-opus-4-6", "claude-sonnet-4-6"]
    assert (alpha["inputTokens"], alpha["outputTokens"], alpha["cacheCreationTokens"]) == (3100, 4000, 6000)
    instances = report(index, "session", instances=True)["projects"]
    assert {k: [r["sessionId"] for r in v] for k, v in instances.items()} == {
        "-work-alpha": ["s-alpha", "s-gamma"],
        "-work-beta": ["s-beta"],
    }


@pytest.mark.parametrize("kind", ["daily", "weekly", "monthly", "session"])
@pytest.mark.parametrize("mode", ["auto", "calculate", "display"])
def test_totals_equal_index_status(index: Index, kind: str, mode: str) -> None:
    status = index_status(index, load_book(None), mode)
    totals = report(index, kind, mode=mode, timezone="America/Los_Angeles")["totals"]
    assert totals["inputTokens"] == status.input_tokens
    assert totals["outputTokens"] == status.output_tokens
    assert totals["cacheCreationTokens"] == status.cache_creation_tokens
    assert totals["cacheReadTokens"] == status.cache_read_tokens
    assert totals["totalTokens"] == status.total_tokens
    assert totals["totalCost"] == pytest.approx(status.total_cost)


def test_empty_index_gives_empty_reports(tmp_path: Path) -> None:
    with Index(tmp_path / "empty.duckdb") as ix:
        apply_prices(ix.con, load_book(None))
        data = period_report(ix.con, "daily", report_options(timezone="UTC"))
        assert data == {
            "daily": [],
            "totals": {
                "inputTokens": 0,
                "outputTokens": 0,
                "cacheCreationTokens": 0,
                "cacheReadTokens": 0,
                "totalTokens": 0,
                "totalCost": 0.0,
            },
        }
        assert period_report(ix.con, "session", report_options(instances=True))["projects"] == {}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"since": "2026-02-30"}, "--since '2026-02-30' is not a date"),
        ({"until": "yesterday"}, "--until 'yesterday' is not a date"),
        ({"since": "2026-03-02", "until": "2026-03-01"}, "--since 2026-03-02 is after --until 2026-03-01"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"timezone": "../etc/passwd"}, "unknown timezone"),
        ({"order": "sideways"}, "--order must be one of asc, desc"),
        ({"start_of_week": "someday"}, "--start-of-week must be one of"),
        ({"mode": "guess"}, "--mode must be one of"),
    ],
)
def test_bad_arguments(options: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInput, match=message.replace("(", r"\(")):
        report_options(**options)


def test_choices_are_taken_in_any_case_as_config_set_takes_them() -> None:
    got = report_options(mode=" Calculate", order="DESC", start_of_week="Monday")
    assert (got.mode, got.order, got.start_of_week) == ("calculate", "desc", "monday")


def test_period_of_and_bounds() -> None:
    assert period_of("2026-03-08", "weekly", "sunday") == "2026-03-08"
    assert period_of("2026-03-14", "weekly", "sunday") == "2026-03-08"
    assert period_of("2026-03-08", "weekly", "monday") == "2026-03-02"
    assert period_of("2026-03-08", "monthly", "sunday") == "2026-03"
    opts = report_options(since="2026-03-29", until="2026-03-29", timezone="Europe/Berlin")
    lo, hi = utc_bounds(opts)
    # The DST day is 23 hours long: 00:00 CET = 23:00Z the day before, 00:00 CEST = 22:00Z.
    assert (str(lo), str(hi)) == ("2026-03-28 23:00:00", "2026-03-29 22:00:00")


def test_system_timezone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    assert system_timezone() == "Asia/Kolkata"
    assert report_options().timezone == "Asia/Kolkata"


def _call_line(n: int, ts: str) -> str:
    return orjson.dumps(
        {
            "type": "assistant",
            "cwd": "/w",
            "sessionId": "s",
            "uuid": f"00000000-0000-0000-0000-{n:012d}",
            "timestamp": ts,
            "requestId": f"r{n}",
            "message": {
                "id": f"m{n}",
                "role": "assistant",
                "model": "claude-sonnet-4-6",
                "usage": {"input_tokens": n, "output_tokens": 0},
            },
        }
    ).decode()


@pytest.mark.parametrize(
    ("zone", "before", "after", "day"),
    [
        ("Asia/Kolkata", "2026-03-09T18:29:59.999Z", "2026-03-09T18:30:00.000Z", "2026-03-10"),  # +05:30
        ("Asia/Kathmandu", "2026-03-09T18:14:59.999Z", "2026-03-09T18:15:00.000Z", "2026-03-10"),  # +05:45
        ("Europe/Berlin", "2026-10-24T21:59:59.999Z", "2026-10-24T22:00:00.000Z", "2026-10-25"),  # CEST, DST ends
        ("America/New_York", "2026-03-08T04:59:59.999Z", "2026-03-08T05:00:00.000Z", "2026-03-08"),  # EST midnight
    ],
)
def test_local_midnight_in_odd_offsets(tmp_path: Path, zone: str, before: str, after: str, day: str) -> None:
    """Calls a millisecond apart around local midnight land on different days (15-minute buckets are exact)."""
    from conftest import write_tree

    root = write_tree(tmp_path / "claude", {"-w/s.jsonl": _call_line(1, before) + "\n" + _call_line(2, after) + "\n"})
    with Index(tmp_path / "i.duckdb") as ix:
        sync(ix, [root / "projects"])
        apply_prices(ix.con, load_book(None))
        rows = period_report(ix.con, "daily", report_options(timezone=zone))["daily"]
    assert [(r["date"], r["inputTokens"]) for r in rows][1] == (day, 2)
    assert rows[0]["inputTokens"] == 1 and rows[0]["date"] < day


@pytest.mark.parametrize(
    "zone",
    ["UTC", "Etc/UTC", "Europe/Berlin", "America/New_York", "America/Sao_Paulo", "Asia/Kolkata", "Australia/Lord_Howe",
     "Pacific/Chatham", "Africa/Casablanca"],
)  # fmt: skip
def test_local_day_arithmetic_agrees_with_icu(zone: str) -> None:
    """The integer local day equals DuckDB's ICU conversion for every second sampled, transitions included."""
    import duckdb

    from indexer.reports import local_day_sql, offset_pieces

    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT TIMESTAMP '2018-01-01' + to_seconds(i * 1237) AS ts FROM range(60000) r(i)")
    lo, hi = con.execute("SELECT min(ts), max(ts) FROM t").fetchone() or (None, None)
    assert lo is not None and hi is not None
    pieces = offset_pieces(zone, lo, hi)
    edges = [start // 1_000_000 + d for start, _ in pieces[1:] for d in (-1, 0, 1)]
    if edges:
        con.execute(f"INSERT INTO t SELECT to_timestamp(e)::TIMESTAMPTZ AT TIME ZONE 'UTC' FROM unnest({edges}) u(e)")
    wrong = con.execute(
        f"SELECT count(*) FROM t WHERE {local_day_sql(pieces)} "
        f"<> timezone('{zone}', timezone('UTC', ts))::DATE - DATE '1970-01-01'"
    ).fetchone()
    assert wrong == (0,)
    if zone not in ("UTC", "Etc/UTC", "Asia/Kolkata"):
        assert len(pieces) > 2  # the sample spans several offset changes


def test_session_rows_of_projects_with_one_name(tmp_path: Path) -> None:
    """With --instances, two projects Claude Code names alike ('/w/a.b', '/w/a-b') are one group, even when
    another project's rows come between theirs; a one-model session row is what a several-model one would be."""
    calls = [  # key, time, model, session, project, input tokens, cost
        (1, "2026-01-01 10:00:00", "claude-opus-4-6", "s", "/w/a.b", 1, 0.5),
        (2, "2026-01-01 11:00:00", "claude-opus-4-6", "s", "/w/b", 2, 0.25),
        (3, "2026-01-01 12:00:00", "claude-sonnet-4-6", "s", "/w/a-b", 4, 0.125),
        (4, "2026-01-02 09:00:00", "<synthetic>", "t", "/w/b", 8, 0.0),
    ]
    with Index(tmp_path / "i.duckdb") as ix:
        ix.con.executemany(
            "INSERT INTO calls VALUES (?, 0, ?::TIMESTAMP, ?, ?, ?, NULL, NULL, NULL, false, false, false, "
            "?, 0, 0, 0, 0, 0, false, ?, NULL, NULL)",
            calls,
        )
        apply_prices(ix.con, load_book(None))
        grouped = period_report(ix.con, "session", report_options(timezone="UTC", instances=True))["projects"]
        plain = period_report(ix.con, "session", report_options(timezone="UTC"))["sessions"]
    assert list(grouped) == ["-w-a-b", "-w-b"]
    (ab,) = grouped["-w-a-b"]
    assert (ab["sessionId"], ab["inputTokens"], ab["totalCost"], ab["project"]) == ("s", 5, 0.625, "-w-a-b")
    assert (ab["firstActivity"], ab["lastActivity"]) == ("2026-01-01T10:00:00.000Z", "2026-01-01T12:00:00.000Z")
    assert [(m["modelName"], m["cost"]) for m in ab["modelBreakdowns"]] == [
        ("claude-opus-4-6", 0.5),
        ("claude-sonnet-4-6", 0.125),
    ]
    assert [(r["sessionId"], r["inputTokens"]) for r in grouped["-w-b"]] == [("s", 2), ("t", 8)]
    assert grouped["-w-b"][0]["modelsUsed"] == ["claude-opus-4-6"]
    assert grouped["-w-b"][0]["modelBreakdowns"][0]["cost"] == 0.25
    t = grouped["-w-b"][1]
    assert (t["modelsUsed"], t["modelBreakdowns"], t["projectPath"]) == ([], [], "-w-b")
    assert [(r["sessionId"], r["inputTokens"], r["projectPath"]) for r in plain] == [
        ("s", 7, "-w-a-b"),
        ("t", 8, "-w-b"),
    ]


def test_a_folder_name_covers_its_sessions_whatever_their_cwd(tmp_path: Path) -> None:
    """--project with Claude Code's folder name means the sessions filed there: a call made after
    `cd frontend` has that cwd as its project, and a 2.0 subagent file is a session of its own."""
    tree = write_tree(
        tmp_path / "claude",
        {
            "-work-app/s1.jsonl": call_line(cwd="/work/app", input_tokens=100, output_tokens=0)
            + call_line(cwd="/work/app/frontend", input_tokens=200, output_tokens=0),
            "-work-app/agent-b2.jsonl": call_line(cwd="/work/app", input_tokens=50, output_tokens=0),
            "-work-app-frontend/s2.jsonl": call_line(cwd="/work/app-frontend", input_tokens=7, output_tokens=0),
            "-work-other/s3.jsonl": call_line(cwd="/work/other", input_tokens=1000, output_tokens=0),
        },
    )
    with Index(tmp_path / "i.duckdb") as ix:
        sync(ix, [tree])

        def tokens(project: str) -> int:
            totals = period_report(ix.con, "daily", report_options(timezone="UTC", project=project))["totals"]
            return int(totals["totalTokens"])

        assert tokens("-work-app") == 350  # s1 in both cwds, and agent-b2
        assert tokens("/work/app") == 150  # the cwd itself: s1's first call and agent-b2
        assert tokens("frontend") == 200
        assert tokens("-work-app-frontend") == 207  # its folder, and the cwd that encodes to it
        assert tokens("-work") == 0
