"""`cco index run` as a user runs it: options, refusals, and one service per index."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from indexer.paths import run_file
from tests.conftest import CCO, run_cco, write_tree
from tests.live_helpers import calls, free_port, start_cco_run, wait_for_http


def test_help_lists_the_options() -> None:
    r = run_cco("index", "run", "--help")
    assert r.returncode == 0
    for option in ("--source", "--db", "--host", "--port", "--interval", "--rescan", "--token", "--allowed-host"):
        assert option in r.stdout
    assert "CCO_TOKEN" in r.stdout


def test_an_ordinary_command_line_starts_the_service_without_typer(tmp_path: Path) -> None:
    """typer, click and rich would stay resident in the service for its whole life."""
    code = (
        "import sys; import api.cli_run as run\n"
        "def look(**values):\n"
        "    names = ('typer', 'click', 'rich', 'pydantic', 'api.cli_index')\n"
        "    print(sorted(m for m in names if m in sys.modules), values['port'], values['allowed_host'])\n"
        "run.run_service = look; sys.argv = ['cco', *sys.argv[1:]]\n"
        "from api.cli import main; main()"
    )
    args = [
        "index",
        "run",
        "--db",
        str(tmp_path / "i.duckdb"),
        "--port",
        "0",
        "--allowed-host",
        "a",
        "--allowed-host",
        "b",
    ]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] 0 ['a', 'b']"


def test_non_loopback_needs_a_token(tmp_path: Path) -> None:
    r = run_cco("index", "run", "--host", "0.0.0.0", "--db", str(tmp_path / "i.duckdb"))
    assert r.returncode == 2
    assert "cco: error: listening on 0.0.0.0 (not loopback) needs a token" in r.stderr
    assert not (tmp_path / "i.duckdb").exists()


def test_bad_options_are_refused(tmp_path: Path) -> None:
    db = str(tmp_path / "i.duckdb")
    for args, says in (
        (["--interval", "0"], "--interval must be between"),
        (["--rescan", "0.5"], "--rescan must be between"),
        (["--port", "70000"], "--port must be between"),
        (["--host", ""], "--host needs an address to listen on"),
        # a typo'd source is refused as `sync` refuses it, not watched for a folder that never comes
        (["--source", str(tmp_path / "typo")], f"--source {tmp_path / 'typo'}: no such directory"),
    ):
        r = run_cco("index", "run", "--db", db, *args)
        assert r.returncode == 2 and says in r.stderr, r.stderr
        assert not Path(db).exists()


def test_busy_port_is_a_clean_error(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "claude", {"p/s.jsonl": calls(1)})
    db = tmp_path / "i.duckdb"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_cco("index", "run", "--source", str(tree), "--db", str(db), "--port", str(port))
    assert r.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr
    assert not run_file(db).exists()
    assert not db.exists()  # refused before the index is opened: no file made for nothing
    assert run_cco("index", "status", "--db", str(db)).returncode == 0  # the lock was released


def test_second_service_on_the_same_index_names_the_first(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "claude", {"p/s.jsonl": calls(1)})
    db = tmp_path / "i.duckdb"
    port = free_port()
    first = start_cco_run(tree, db, port)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/stats")
        r = run_cco("index", "run", "--source", str(tree), "--db", str(db), "--port", str(free_port()))
        assert r.returncode == 2
        assert "already serving" in r.stderr
        assert f"pid {first.pid}" in r.stderr and f"port {port}" in r.stderr
        assert r.stderr.count("\n") == 1  # one line
    finally:
        first.send_signal(signal.SIGINT)
        assert first.wait(10) == 0
    assert not run_file(db).exists()


def test_stale_run_file_does_not_block(tmp_path: Path) -> None:
    tree = write_tree(tmp_path / "claude", {"p/s.jsonl": calls(1)})
    db = tmp_path / "i.duckdb"
    dead = subprocess.Popen(["true"])
    dead.wait()
    run_file(db).write_text(f'{{"pid": {dead.pid}, "port": 1, "host": "127.0.0.1", "token": false}}')
    port = free_port()
    proc = start_cco_run(tree, db, port)
    try:
        stats = wait_for_http(f"http://127.0.0.1:{port}/api/stats")
        assert stats["port"] == port
        assert f'"pid": {proc.pid}' in run_file(db).read_text()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_commands_sent_while_the_service_starts_or_stops_go_through(tmp_path: Path) -> None:
    """A command that meets the index locked by a service still starting (before its run file) or
    the closed port of one stopping (before it lets go) waits for the handover instead of failing."""
    tree = write_tree(tmp_path / "claude", {"p/s.jsonl": calls(3)})
    db = tmp_path / "i.duckdb"
    assert run_cco("index", "sync", "--source", str(tree), "--db", str(db)).returncode == 0

    def statuses() -> list[subprocess.Popen[str]]:
        procs = []
        for _ in range(8):  # spread over the window
            procs.append(
                subprocess.Popen(
                    [CCO, "index", "status", "--db", str(db), "--json"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
            time.sleep(0.04)
        return procs

    port = free_port()
    service = start_cco_run(tree, db, port)
    try:
        starting = statuses()
        wait_for_http(f"http://127.0.0.1:{port}/api/stats")
        service.send_signal(signal.SIGTERM)
        stopping = statuses()
        assert service.wait(10) == 0
    finally:
        service.kill()
    for proc in starting + stopping:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out)["calls"] == 3


def test_a_signal_at_any_point_of_the_start_stops_the_service_cleanly(tmp_path: Path) -> None:
    """SIGTERM the moment it says 'serving' (before uvicorn had its own handlers, it was lost: the
    service ran on holding the index), or as soon as its run file is there (the default action
    killed it, leaving the file): either way it stops, exits 0 and leaves nothing behind."""
    tree = write_tree(tmp_path / "claude", {"p/s.jsonl": calls(3)})
    db = tmp_path / "i.duckdb"
    assert run_cco("index", "sync", "--source", str(tree), "--db", str(db)).returncode == 0
    for when in ("serving", "run file", "serving", "run file"):
        proc = subprocess.Popen(
            [CCO, "index", "run", "--source", str(tree), "--db", str(db), "--port", str(free_port())],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        if when == "serving":
            for line in proc.stderr:
                if "serving" in line:
                    break
        else:
            deadline = time.monotonic() + 15
            while not run_file(db).exists() and time.monotonic() < deadline:
                time.sleep(0.002)
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=15)[1]
        assert proc.returncode == 0, (when, rest)
        assert not run_file(db).exists(), when
        assert "Traceback" not in rest


def test_a_stop_asked_while_waiting_for_the_index_ends_the_wait(tmp_path: Path) -> None:
    """`cco index run` waits up to 5 s for a lock another process holds; a SIGTERM meanwhile ends
    it at once (exit 0), not after the wait with an 'in use' error."""
    from tests.conftest import index_held_elsewhere

    tree = write_tree(tmp_path / "claude", {"p/s.jsonl": calls(1)})
    db = tmp_path / "i.duckdb"
    assert run_cco("index", "sync", "--source", str(tree), "--db", str(db)).returncode == 0
    with index_held_elsewhere(db) as holder:
        proc = subprocess.Popen(
            [CCO, "index", "run", "--source", str(tree), "--db", str(db), "--port", str(free_port())],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        assert f"waiting for process {holder} to let go of the index" in proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
        assert proc.returncode == 0, rest  # not 2, 'in use', once the wait is over
    assert not run_file(db).exists()
