"""Printing for commands: JSON for machines (orjson), rich tables for people, one-line errors.

The idea: commands build a dataclass or dict and hand it here; how it looks is decided once.
rich is imported on first use of a console (module `__getattr__`), so a command that only prints
JSON, like `cco report … --json`, never pays for it; orjson (which imports dataclasses, inspect,
uuid and json: ~20 ms) is imported when JSON is first printed, so tables and errors skip it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from pathlib import Path

    from rich.console import Console

    from indexer.ingest import SyncReport

# Made on first use (see __getattr__); `from api.output import console` works as usual.
console: Console
err_console: Console


def __getattr__(name: str) -> Console:
    if name not in ("console", "err_console"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from rich.console import Console

    made = Console(stderr=name == "err_console")
    globals()[name] = made
    return made


def _console(name: str) -> Console:
    """The module's console `name` (inside this module, globals do not go through __getattr__)."""
    made = globals().get(name)
    return made if made is not None else __getattr__(name)


def load_json() -> None:
    """Import orjson now rather than at the first print_json, e.g. while a thread waits on I/O."""
    import orjson  # noqa: F401


def print_json(data: Any) -> None:
    """Indented UTF-8 JSON and a newline, written as bytes (a report can be megabytes: no decoding,
    and the newline is written after it rather than added to a copy of it)."""
    import orjson

    sys.stdout.flush()
    out = sys.stdout.buffer
    try:
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    except TypeError:  # a sum past 64 bits (an index an older version filled with absurd counts)
        import json

        text = json.dumps(data, indent=2, ensure_ascii=False, default=str).encode()
    out.write(text)
    out.write(b"\n")
    out.flush()


def print_fields(title: str, data: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in data.items():
        table.add_row(key, _fmt(value))
    _console("console").print(table)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    return str(value)


def note_no_index(path: Path) -> None:
    """What `status`, `rejects` and the reports say when --db (or the default) names no file yet:
    their answer is empty, and a mistyped path must not pass for an empty history."""
    print(f"cco: note: no index at {path} yet (`cco index sync` or `cco index run` makes it)", file=sys.stderr)


def skipped_warnings(report: SyncReport) -> list[str]:
    """The warnings for transcripts a pass found and could not read: names that are not UTF-8,
    files or folders without read permission (the commands print each after `cco: warning: `, the
    service logs them)."""
    out = []
    if report.files_unnamed:
        out.append(
            f"{report.files_unnamed} transcript file(s) not read: the name is not UTF-8 "
            f"(e.g. {report.unnamed_example}); rename them to read them"
        )
    if report.files_unreadable:
        out.append(
            f"{report.files_unreadable} transcript file(s) or folder(s) not read: no permission to read "
            f"(e.g. {report.unreadable_example}); what the index holds of them is kept"
        )
    return out


def fail(message: str, code: int = 2) -> NoReturn:
    _console("err_console").print(f"cco: error: {message}", highlight=False, soft_wrap=True)
    raise SystemExit(code)
