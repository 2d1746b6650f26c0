"""`cco index sync|rebuild|status` through the installed executable, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CCO, index_held_elsewhere, run_cco, write_tree
from tests.live_helpers import calls as calls_of
from tests.live_helpers import wait_for

RULES = Path(__file__).resolve().parent.parent / "fixtures" / "rules"
SAMPLES = {
    "files_live": 4, "files_gone": 0, "calls": 15, "failed_calls": 0, "input_tokens": 2558, "output_tokens": 1666,
    "cache_creation_tokens": 79835, "cache_read_tokens": 601758, "total_tokens": 685817, "rejected_lines": 0,
    "lines": 156,
}  # fmt: skip


def status(db: Path) -> dict[str, Any]:
    out = run_cco("index", "status", "--db", str(db), "--json")
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def ok(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    out = run_cco(*args, env=env)
    assert out.returncode == 0, out.stderr
    return out


def assert_one_line_error(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("cco: error: ")
    for needle in needles:
        assert needle in lines[0]


def test_sync_then_status_on_the_samples(tmp_path: Path, samples_tree: Path) -> None:
    db = tmp_path / "i.duckdb"
    out = ok("index", "sync", "--source", str(samples_tree), "--db", str(db))
    assert "45 call lines" in out.stdout and "from 4 of 4 files" in out.stdout
    # the sync priced what it added: readers need not write first, so they run side by side
    import duckdb

    from indexer.pricing import load_book, ready_to_read

    with duckdb.connect(str(db), read_only=True) as con:
        assert ready_to_read(con, load_book(None))
    got = status(db)
    assert {k: got[k] for k in SAMPLES} == SAMPLES
    assert got["total_cost"] == pytest.approx(0.60869775, abs=1e-12)  # fixtures/rules/README.md, by hand
    # exactly once: a second pass reads nothing and changes nothing
    again = ok("index", "sync", "--source", str(samples_tree), "--db", str(db))
    assert "read 0 bytes from 0 of 4 files" in again.stdout
    assert status(db) | {"last_ingest": None, "db_size": 0} == got | {"last_ingest": None, "db_size": 0}


def test_sync_says_when_a_source_holds_no_transcripts(tmp_path: Path) -> None:
    (tmp_path / "empty" / "projects").mkdir(parents=True)
    out = ok("index", "sync", "--source", str(tmp_path / "empty"), "--db", str(tmp_path / "i.duckdb"))
    assert out.stderr.strip() == f"cco: note: no transcripts (*.jsonl) under {tmp_path / 'empty' / 'projects'}"


def test_source_as_projects_dir_and_default_index_location(isolated_home: Path, samples_tree: Path) -> None:
    ok("index", "sync", "--source", str(samples_tree / "projects"))
    got = status(isolated_home / "index.duckdb")  # CCO_HOME
    assert {k: got[k] for k in SAMPLES} == SAMPLES


def test_claude_config_dir_is_the_default_source(tmp_path: Path, samples_tree: Path) -> None:
    rules = ",".join(str(p) for p in sorted(RULES.iterdir()) if p.is_dir())
    db = tmp_path / "i.duckdb"
    ok("index", "sync", "--db", str(db), env={"CLAUDE_CONFIG_DIR": f"{samples_tree},{rules}"})
    got = status(db)
    assert got["calls"] == 15 + 28  # the samples and the rule fixtures (fixtures/rules/README.md)
    assert got["failed_calls"] == 1
    assert got["rejected_lines"] == 14
    assert got["total_tokens"] == 685817 + 9591
    assert got["files_live"] == 4 + 21


def test_missing_source_is_an_error(tmp_path: Path) -> None:
    out = run_cco("index", "sync", "--source", str(tmp_path / "nope"), "--db", str(tmp_path / "i.duckdb"))
    assert_one_line_error(out, "no such directory", "nope")


def test_corrupt_index_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    db = tmp_path / "i.duckdb"
    db.write_bytes(b"not a database\n" * 5000)
    for args in (["index", "status", "--db", str(db)], ["index", "sync", "--db", str(db), "--source", str(RULES)]):
        assert_one_line_error(run_cco(*args), str(db), "cco index rebuild")


def test_damaged_blocks_give_one_line_and_exit_2(tmp_path: Path, samples_tree: Path) -> None:
    db = tmp_path / "i.duckdb"
    ok("index", "sync", "--source", str(samples_tree), "--db", str(db))
    data = bytearray(db.read_bytes())
    data[3 * 4096 :] = bytes((i * 7 + 13) % 256 for i in range(len(data) - 3 * 4096))
    db.write_bytes(bytes(data))
    assert_one_line_error(run_cco("index", "status", "--db", str(db)), "cco index rebuild")
    # and rebuild repairs it, warning that the old history could not be salvaged
    out = ok("index", "rebuild", "--source", str(samples_tree), "--db", str(db))
    assert "could not be salvaged" in out.stderr and "Traceback" not in out.stderr
    assert {k: status(db)[k] for k in SAMPLES} == SAMPLES


def test_rebuild_on_garbage_works_and_warns(tmp_path: Path, samples_tree: Path) -> None:
    db = tmp_path / "i.duckdb"
    db.write_bytes(b"\xff" * 100_000)
    out = ok("index", "rebuild", "--source", str(samples_tree), "--db", str(db))
    assert "warning: history not on disk could not be salvaged" in out.stderr
    assert "rebuilt" in out.stdout
    assert {k: status(db)[k] for k in SAMPLES} == SAMPLES


def test_rebuild_salvages_deleted_transcripts(tmp_path: Path, samples_tree: Path) -> None:
    db = tmp_path / "i.duckdb"
    ok("index", "sync", "--source", str(samples_tree), "--db", str(db))
    for f in (samples_tree / "projects" / "-home-USER-spotter").rglob("*.jsonl"):
        f.unlink()  # Claude Code's cleanup: 4 + 3 calls only the index still knows
    out = ok("index", "rebuild", "--source", str(samples_tree), "--db", str(db))
    assert "7 calls salvaged" in out.stdout
    assert out.stderr == ""
    got = status(db)
    assert {k: got[k] for k in SAMPLES if k not in ("files_live", "files_gone", "lines")} == {
        k: v for k, v in SAMPLES.items() if k not in ("files_live", "files_gone", "lines")
    }
    assert (got["files_live"], got["files_gone"]) == (2, 2)


def test_second_writer_is_told_who_holds_the_index(tmp_path: Path, samples_tree: Path) -> None:
    db = tmp_path / "i.duckdb"
    ok("index", "sync", "--source", str(samples_tree), "--db", str(db))
    with index_held_elsewhere(db) as pid:
        for args in (["sync", "--source", str(samples_tree)], ["rebuild", "--source", str(samples_tree)]):
            out = run_cco("index", *args, "--db", str(db))
            assert_one_line_error(out, str(db), f"in use by process {pid}")
    assert status(db)["calls"] == 15


def test_every_index_command_has_help() -> None:
    listing = ok("index", "--help").stdout
    for command in ("sync", "rebuild", "status", "run"):
        assert command in listing
    for command in ("sync", "rebuild", "status"):
        assert "--db" in ok("index", command, "--help").stdout


def test_status_cost_modes(tmp_path: Path) -> None:
    """--mode on the cost_usd rule: a line with costUSD 0.0123 (100 in, 200 out) and one without
    (10 in, 20 out), both claude-sonnet-4-20250514 at $3 in / $15 out per million:
    calculate = (100*3 + 200*15 + 10*3 + 20*15) / 1e6 = 0.00363
    auto      = 0.0123 + (10*3 + 20*15) / 1e6      = 0.01263
    display   = 0.0123 (lines without costUSD cost 0)"""
    db = tmp_path / "i.duckdb"
    ok("index", "sync", "--source", str(RULES / "cost_usd"), "--db", str(db))
    costs = {}
    for mode in ("calculate", "auto", "display"):
        out = ok("index", "status", "--db", str(db), "--json", "--mode", mode)
        costs[mode] = round(json.loads(out.stdout)["total_cost"], 10)
    assert costs == {"calculate": 0.00363, "auto": 0.01263, "display": 0.0123}
    assert round(status(db)["total_cost"], 10) == 0.01263  # auto is the default
    assert_one_line_error(run_cco("index", "status", "--db", str(db), "--mode", "cheap"), "cheap")


def test_rejects_lists_where_each_rejected_line_is(tmp_path: Path) -> None:
    lines = b'{"a":1}\nnot json\n[1,2]\n'
    tree = write_tree(tmp_path / "claude", {"p/s.jsonl": lines})
    db = str(tmp_path / "i.duckdb")
    ok("index", "sync", "--source", str(tree), "--db", db)
    out = ok("index", "rejects", "--db", db).stdout.splitlines()
    where = str(tree / "projects" / "p" / "s.jsonl")
    assert len(out) == 3 and out[0].startswith(f"{where}:8  invalid JSON (")  # byte 8: "not json"
    assert out[1:] == [f"{where}:17  line is not a JSON object", "2 rejected lines"]
    assert ok("index", "rejects", "-n", "1", "--db", db).stdout.splitlines()[-1] == (
        "2 rejected lines (the first 1; --limit shows more)"
    )
    assert_one_line_error(run_cco("index", "rejects", "-n", "0", "--db", db), "--limit must be between 1 and 10000")
    missing = run_cco("index", "rejects", "--db", str(tmp_path / "none.duckdb"))
    assert missing.returncode == 0 and "0 rejected lines" in missing.stdout and "no index at" in missing.stderr


def test_sync_and_status_go_through_a_running_service(tmp_path: Path, samples_tree: Path) -> None:
    """While `cco index run` holds the index, sync and status ask it; rebuild refuses clearly."""
    db = tmp_path / "i.duckdb"
    run_json = tmp_path / "i.duckdb.run.json"
    with subprocess.Popen(
        [CCO, "index", "run", "--source", str(samples_tree), "--db", str(db), "--port", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as service:
        try:
            assert service.stderr is not None
            for line in service.stderr:  # the service logs "serving ..." once its run file is written
                if "serving" in line:
                    break
            assert run_json.exists()
            wait_for(lambda: status(db)["calls"] == 15, timeout=30)  # its catch-up may still be reading
            by_service = ok("index", "status", "--db", str(db), "--json", "--mode", "display")
            assert json.loads(by_service.stdout)["total_cost"] == 0  # the samples carry no costUSD
            (path,) = (samples_tree / "projects").rglob("tool_heavy.jsonl")
            with path.open("ab") as f:
                f.write(
                    b'{"type":"assistant","timestamp":"2026-03-01T00:00:00.000Z","requestId":"req_new",'
                    b'"message":{"id":"msg_new","model":"claude-opus-4-6","usage":{"input_tokens":1}}}\n'
                )
            ok("index", "sync", "--db", str(db))  # a pass on the service's ingest thread
            assert status(db)["calls"] == 16
            ok("index", "sync", "--source", str(samples_tree), "--db", str(db))  # the service's own: fine
            rejects = json.loads(ok("index", "rejects", "--json", "--db", str(db)).stdout)  # asked of the service
            assert rejects["total"] == status(db)["rejected_lines"] == len(rejects["rejects"])
            other = write_tree(tmp_path / "other", {"p/s.jsonl": ""})
            out = run_cco("index", "sync", "--source", str(other), "--db", str(db))
            assert_one_line_error(out, "reads only its own sources", f"not {other / 'projects'}")
            out = run_cco("index", "rebuild", "--source", str(samples_tree), "--db", str(db))
            assert_one_line_error(out, f"in use by process {service.pid}", "cco index run")
        finally:
            service.send_signal(signal.SIGINT)
            service.wait(timeout=60)


def test_no_transcripts_anywhere_is_explained(tmp_path: Path) -> None:
    out = ok("index", "sync", "--db", str(tmp_path / "i.duckdb"))
    assert "read 0 bytes from 0 of 0 files" in out.stdout
    assert "no Claude Code transcripts found" in out.stderr


def test_an_index_command_builds_only_its_group(tmp_path: Path) -> None:
    """`cco index …` leaves the other command groups (config, monitor, report) unimported."""
    import sys

    code = (
        "import sys; from api.cli import main; sys.argv = ['cco', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted(m for m in ('api.cli_config', 'api.cli_monitor', 'api.cli_report') if m in sys.modules), "
        "file=sys.stderr)"
    )
    args = ["index", "status", "--json", "--db", str(tmp_path / "i.duckdb")]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]"
    assert json.loads(done.stdout)["calls"] == 0


def test_rebuild_through_a_symbolic_link_replaces_its_target(tmp_path: Path, samples_tree: Path) -> None:
    real = tmp_path / "real.duckdb"
    link = tmp_path / "link.duckdb"
    link.symlink_to(real.name)
    ok("index", "rebuild", "--source", str(samples_tree), "--db", str(link))
    assert link.is_symlink() and real.is_file()
    assert {k: status(link)[k] for k in SAMPLES} == SAMPLES == {k: status(real)[k] for k in SAMPLES}


def test_a_db_path_that_cannot_be_an_index_file_is_one_line(tmp_path: Path, samples_tree: Path) -> None:
    folder = tmp_path / "folder.duckdb"
    folder.mkdir()
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    cases = [
        (str(folder), "is a folder"),
        ("/dev/null", "/dev/null is not a regular file"),
        (str(a_file / "i.duckdb"), f"{a_file} is not a folder"),
        ("", "--db needs a path, got ''"),
    ]
    for db, message in cases:
        for args in (("index", "rebuild", "--source", str(samples_tree)), ("index", "status"), ("report", "daily")):
            assert_one_line_error(run_cco(*args, "--db", db), message)
    assert Path("/dev/null").is_char_device()  # and nothing was put in its place


def test_status_of_a_missing_index_makes_no_file(tmp_path: Path) -> None:
    db = tmp_path / "typo" / "i.duckdb"
    out = ok("index", "status", "--db", str(db), "--json")
    assert json.loads(out.stdout)["calls"] == 0 and json.loads(out.stdout)["db"] == str(db)
    assert "no index at" in out.stderr
    assert not db.parent.exists()


def test_an_empty_source_is_refused(tmp_path: Path) -> None:
    for args in (("--source", ""), ("--source=",)):
        assert_one_line_error(
            run_cco("index", "sync", *args, "--db", str(tmp_path / "i.duckdb")), "--source needs a path"
        )
    assert not (tmp_path / "i.duckdb").exists()


def test_statuses_and_reports_at_once_all_answer(tmp_path: Path, samples_tree: Path) -> None:
    """Status reads its index read-only when the prices are current: several readers run at once."""
    db = tmp_path / "i.duckdb"
    ok("index", "sync", "--source", str(samples_tree), "--db", str(db))
    ok("index", "status", "--db", str(db))  # prices the index once (it is current from then on)
    commands = [["index", "status", "--json"]] * 4 + [["report", "session", "--json"]] * 2
    procs = [
        subprocess.Popen([CCO, *c, "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * len(commands), [err for _, err in results]
    assert all(json.loads(out)["calls"] == SAMPLES["calls"] for out, _ in results[:4])


def test_version() -> None:
    import tomllib

    declared = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]["version"]
    for flag in ("--version", "-V"):
        assert ok(flag).stdout == f"cco {declared}\n"


def _as_a_user(*args: str) -> subprocess.CompletedProcess[str]:
    """`cco ARGS` with file permissions enforced: as root, without the capabilities that override them."""
    import os
    import shutil

    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
        caps = "-dac_override,-dac_read_search"
        prefix = [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]
    return subprocess.run([*prefix, CCO, *args], capture_output=True, text=True, timeout=120)


def test_permission_problems_are_not_called_damage(tmp_path: Path) -> None:
    """A read-only folder or index file is said to be one; `rebuild` (which would not help) is not
    suggested, and a rebuild does not replace a file the user made read-only."""
    tree = write_tree(tmp_path / "claude", {"p/s.jsonl": calls_of(2)})
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "i.duckdb"
    assert run_cco("index", "sync", "--source", str(tree), "--db", str(db)).returncode == 0
    folder.chmod(0o555)
    try:
        for args in (
            ("index", "sync", "--source", str(tree), "--db", str(db)),  # the log cannot be made
            ("index", "sync", "--source", str(tree), "--db", str(folder / "new.duckdb")),
            ("index", "rebuild", "--source", str(tree), "--db", str(db)),
        ):
            r = _as_a_user(*args)
            assert r.returncode == 2 and "Permission denied" in r.stderr, r.stderr
            assert "damaged" not in r.stderr and "rebuild" not in r.stderr and r.stderr.count("\n") == 1
    finally:
        folder.chmod(0o755)
    db.chmod(0o444)
    before = db.read_bytes()
    r = _as_a_user("index", "rebuild", "--source", str(tree), "--db", str(db))
    assert r.returncode == 2 and "Permission denied" in r.stderr and "damaged" not in r.stderr
    assert db.read_bytes() == before and not db.stat().st_mode & 0o222
    report = _as_a_user("report", "daily", "--json", "--db", str(db))  # reading needs no write
    assert report.returncode == 0 and json.loads(report.stdout)["totals"]["inputTokens"] > 0


def test_transcripts_without_read_permission_are_reported_and_not_gone(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "claude", {"p1/s1.jsonl": calls_of(2), "p2/s2.jsonl": calls_of(1)})
    db = tmp_path / "i.duckdb"
    assert _as_a_user("index", "sync", "--source", str(tree), "--db", str(db)).returncode == 0
    p2, s3 = tree / "projects" / "p2", tree / "projects" / "p1" / "s3.jsonl"
    s3.write_bytes(calls_of(4))
    s3.chmod(0)
    p2.chmod(0)
    try:
        r = _as_a_user("index", "sync", "--source", str(tree), "--db", str(db))
        status = json.loads(_as_a_user("index", "status", "--db", str(db), "--json").stdout)
    finally:
        p2.chmod(0o755)
        s3.chmod(0o644)
    assert r.returncode == 0
    assert "cco: warning: 2 transcript file(s) or folder(s) not read: no permission to read" in r.stderr
    assert (status["calls"], status["files_live"], status["files_gone"]) == (3, 2, 0)  # p2's file is not gone
    again = _as_a_user("index", "sync", "--source", str(tree), "--db", str(db))
    assert "warning" not in again.stderr
    assert json.loads(run_cco("index", "status", "--db", str(db), "--json").stdout)["calls"] == 7


def test_status_prints_sums_past_64_bits(tmp_path: Path) -> None:
    """An index an older version filled with absurd counts: status still prints JSON (the sums are
    128-bit in DuckDB), and a rebuild, which copies no such row back, repairs the index."""
    from indexer.store import Index

    tree = write_tree(tmp_path / "claude", {"p/s.jsonl": calls_of(1)})
    db = tmp_path / "i.duckdb"
    assert run_cco("index", "sync", "--source", str(tree), "--db", str(db)).returncode == 0
    with Index(db) as index:
        huge = "INSERT INTO calls SELECT * REPLACE (? AS key, 9223372036854775807 AS output_tokens) FROM calls LIMIT 1"
        for key in (1, 2):
            index.con.execute(huge, [key])
    r = run_cco("index", "status", "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["output_tokens"] == 2 * (2**63 - 1) + 20
    assert run_cco("index", "rebuild", "--source", str(tree), "--db", str(db)).returncode == 0
    assert json.loads(run_cco("index", "status", "--db", str(db), "--json").stdout)["output_tokens"] == 20


def test_commands_wait_out_each_others_lock(tmp_path: Path) -> None:
    """No service: a sync and readers started together meet each other's lock, and wait for the
    other cco command to end instead of failing."""
    tree = write_tree(tmp_path / "claude", {"p/s.jsonl": calls_of(3)})
    db = tmp_path / "i.duckdb"
    assert run_cco("index", "sync", "--source", str(tree), "--db", str(db)).returncode == 0
    for _ in range(3):
        procs = [
            subprocess.Popen([CCO, "index", *args, "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for args in (("sync", "--source", str(tree)), ("status", "--json"), ("status", "--json"), ("rejects",))
        ]
        errors = [proc.communicate(timeout=60)[1] for proc in procs]  # every pipe read and closed first
        assert [proc.returncode for proc in procs] == [0, 0, 0, 0], errors


@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_rebuild_with_a_closed_output_still_succeeds(tmp_path: Path, samples_tree: Path, closed: str) -> None:
    """Started with stdout or stderr closed (`>&-`), the rebuild replaces the index and exits 0:
    nothing is written to the closed stream and its end does not trip over it."""
    db = tmp_path / "i.duckdb"
    fd = 1 if closed == "stdout" else 2
    done = subprocess.run(
        [CCO, "index", "rebuild", "--source", str(samples_tree), "--db", str(db)],
        preexec_fn=lambda: os.close(fd),  # the child's descriptor only
        stdout=subprocess.DEVNULL if fd == 2 else None,
        stderr=subprocess.DEVNULL if fd == 1 else None,
        timeout=120,
    )
    assert done.returncode == 0
    assert status(db)["calls"] == SAMPLES["calls"]
