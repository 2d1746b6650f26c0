"""The run file beside the index: which process serves it, on which port, since when.

The idea: DuckDB lets one process open the index file, so while `cco index run` holds it every
other `cco` command must ask the service instead. The service writes `index.duckdb.run.json`
(atomically: temporary file, then rename) once it listens, and removes it on shutdown. A run file
whose pid is dead was left by a crash; it is stale and ignored, so a crash never locks users out.
The file says whether a token is required, never the token itself.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from indexer.paths import run_file


@dataclass(frozen=True)
class RunInfo:
    """What the run file says about the running service."""

    pid: int
    port: int
    host: str  # the address it is bound to
    token: bool  # requests need `Authorization: Bearer <token>`
    started: str  # ISO-8601 UTC
    db: str

    @property
    def url(self) -> str:
        """Where a local client reaches it: loopback for wildcard and loopback binds."""
        return f"http://{connect_host(self.host)}:{self.port}"


def connect_host(host: str) -> str:
    if host in ("", "0.0.0.0", "localhost", "127.0.0.1"):
        return "127.0.0.1"
    if host in ("::", "::1", "[::1]", "[::]"):
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (signal 0 checks without sending anything) and has not
    ended: a zombie (ended, not yet reaped by its parent) holds no lock and serves nothing."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists but belongs to someone else
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # field 3: the state
    except (OSError, IndexError):
        return True  # no /proc here: alive, as signal 0 says


def command_line(pid: int) -> bytes | None:
    """Process `pid`'s arguments, NUL-separated, as /proc has them (empty for a zombie); None where
    /proc has no entry for it."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def now_iso() -> str:
    """Now as ISO-8601 UTC with milliseconds and Z, as the service's answers print instants."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_run_file(db: Path, info: RunInfo) -> Path:
    """Write the run file for `db` atomically; returns its path."""
    path = run_file(db)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps(asdict(info), option=orjson.OPT_INDENT_2))
    os.replace(tmp, path)
    return path


def _parse(data: Any) -> RunInfo | None:
    if not isinstance(data, dict):
        return None
    try:
        return RunInfo(
            pid=int(data["pid"]),
            port=int(data["port"]),
            host=str(data["host"]),
            token=bool(data.get("token", False)),
            started=str(data.get("started", "")),
            db=str(data.get("db", "")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def read_run_file(db: Path, *, include_stale: bool = False) -> RunInfo | None:
    """The live service's run info for `db`; None when absent, unreadable or stale (dead pid)."""
    try:
        data = orjson.loads(run_file(db).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    info = _parse(data)
    if info is None or (not include_stale and (not pid_alive(info.pid) or _started_after(info.pid, info.started))):
        return None
    return info


def _started_after(pid: int, started: str) -> bool:
    """True when process `pid` began after the run file was written: its pid was reused (after a
    crash and a reboot, say), so the file names a service that is gone. Linux's /proc says when a
    process began; elsewhere (or unreadable) False, and a live pid is taken as the service."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])  # field 22: start time after boot
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        began = boot + ticks / os.sysconf("SC_CLK_TCK")
        written = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    return began > written + 2  # the service writes its run file after it starts


def remove_run_file(db: Path, pid: int | None = None) -> None:
    """Remove the run file; with `pid`, only if it still names that process (never another's)."""
    path = run_file(db)
    if pid is not None:
        info = read_run_file(db, include_stale=True)
        if info is not None and info.pid != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def left_behind(db: Path, kind: str, own: bool = False) -> list[Path]:
    """What processes left beside `db` named `<db name>.<kind>-<pid>…` (a rebuild's temporary
    index and its WAL, a pass's staging folder), of those that are gone; with `own`, this
    process's too."""
    prefix = f"{db.name}.{kind}-"
    found = []
    for path in db.parent.glob(prefix + "*"):
        pid = path.name[len(prefix) :].partition("-")[0].removesuffix(".wal")
        if pid.isdigit() and ((own and int(pid) == os.getpid()) or not pid_alive(int(pid))):
            found.append(path)
    return found
