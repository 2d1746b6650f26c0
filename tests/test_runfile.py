"""The run file: written atomically, read back, stale when its pid is dead, removed only by its owner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.paths import run_file
from indexer.runfile import RunInfo, connect_host, now_iso, pid_alive, read_run_file, remove_run_file, write_run_file

STARTED = now_iso()  # after this test process began, as a service writes its run file


def _info(pid: int, port: int = 3000, host: str = "127.0.0.1", token: bool = False, started: str = STARTED) -> RunInfo:
    return RunInfo(pid=pid, port=port, host=host, token=token, started=started, db="x")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "index.duckdb"
    path = write_run_file(db, _info(os.getpid(), 4123, token=True))
    assert path == run_file(db) == tmp_path / "index.duckdb.run.json"
    info = read_run_file(db)
    assert info == _info(os.getpid(), 4123, token=True)
    assert info.url == "http://127.0.0.1:4123"
    assert not list(tmp_path.glob("*.tmp"))


def test_absent_and_garbage_are_none(tmp_path: Path) -> None:
    db = tmp_path / "index.duckdb"
    assert read_run_file(db) is None
    run_file(db).write_text("{not json")
    assert read_run_file(db) is None
    run_file(db).write_text('{"pid": "x", "port": 1, "host": "h"}')
    assert read_run_file(db) is None
    run_file(db).write_text("[1, 2]")
    assert read_run_file(db) is None


def test_stale_run_file_is_ignored(tmp_path: Path) -> None:
    db = tmp_path / "index.duckdb"
    pid = _dead_pid()
    write_run_file(db, _info(pid))
    assert not pid_alive(pid)
    assert read_run_file(db) is None
    stale = read_run_file(db, include_stale=True)
    assert stale is not None and stale.pid == pid


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process start times from /proc")
def test_a_pid_reused_by_a_later_process_is_stale(tmp_path: Path) -> None:
    """After a crash (and a reboot) the run file's pid may belong to a process started later: not
    the service, so commands open the index themselves instead of failing to reach it."""
    db = tmp_path / "index.duckdb"
    later = subprocess.Popen(["sleep", "30"])
    try:
        write_run_file(db, _info(later.pid, started="2026-01-01T00:00:00.000Z"))  # written before it began
        assert pid_alive(later.pid) and read_run_file(db) is None
        write_run_file(db, _info(later.pid, started=now_iso()))
        assert read_run_file(db) is not None
    finally:
        later.kill()
        later.wait()


def test_remove_only_our_own(tmp_path: Path) -> None:
    db = tmp_path / "index.duckdb"
    write_run_file(db, _info(os.getpid() + 1_000_000))
    remove_run_file(db, os.getpid())
    assert run_file(db).exists()  # another process's file stays
    write_run_file(db, _info(os.getpid()))
    remove_run_file(db, os.getpid())
    assert not run_file(db).exists()
    remove_run_file(db)  # absent: no error


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    assert not pid_alive(0)
    assert not pid_alive(-5)


def test_connect_host() -> None:
    assert connect_host("0.0.0.0") == "127.0.0.1"
    assert connect_host("localhost") == "127.0.0.1"
    assert connect_host("::") == "[::1]"
    assert connect_host("::1") == "[::1]"
    assert connect_host("192.168.1.5") == "192.168.1.5"
    assert connect_host("fe80::1") == "[fe80::1]"
