"""Printing for commands: JSON for machines (orjson), rich tables for people, one-line errors.

The idea: commands build a dataclass or dict and hand it here; how it looks is decided once.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import orjson
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")


def print_fields(title: str, data: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in data.items():
        table.add_row(key, _fmt(value))
    console.print(table)


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


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"cco: error: {message}", highlight=False, soft_wrap=True)
    raise SystemExit(code)
