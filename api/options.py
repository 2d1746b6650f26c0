"""Command options declared once: typer builds its command from them, and `read` takes an ordinary
command line without typer.

The idea: typer (with click and rich) costs 50-100 ms and ~12 MB to import. A report is a short
process where that is most of the time, and the live service a long one that would keep it
resident; both read their options here. `--help`, mistakes and unusual spellings are left to the
typer command built from the same declarations, which reads them or prints its usual message.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, NamedTuple

_NUMBER = r"^[0-9]+(\.[0-9]+)?$"  # a number that every parser reads the same way (compiled when used)


class Opt(NamedTuple):
    """One option: its flags, its type as typer reads it, its default, its help, its variable."""

    flags: tuple[str, ...]
    kind: Any
    default: Any
    help: str
    envvar: str | None = None


SOURCE = Opt(
    ("--source",),
    list[Path] | None,
    None,
    "A Claude config dir or its projects/ dir (repeatable). Default: Claude Code's.",
)
DB = Opt(("--db",), Path | None, None, "Index file. Default: the cco data folder.")
MODE = Opt(("--mode", "-m"), str | None, None, "Cost: auto (recorded costUSD, else prices), calculate or display.")


PATH_FLAGS = ("--source", "--db")


def empty_path(args: list[str]) -> str | None:
    """The first of PATH_FLAGS given an empty value in `args` (`--db ""`), else None.

    Checked before any parser: typer would read "" as the current folder, and `--source ""`
    would index every transcript below it.
    """
    for i, arg in enumerate(args):
        flag, eq, value = arg.partition("=")
        if flag in PATH_FLAGS and ((eq and not value) or (not eq and i + 1 < len(args) and args[i + 1] == "")):
            return flag
    return None


def check_sources(source: list[Path] | None) -> None:
    """A --source that names no directory is an error (a typo must not give an empty index)."""
    from indexer.errors import BadInput

    for p in source or []:
        if not p.expanduser().is_dir():
            raise BadInput(f"--source {p}: no such directory")


def roots_of(source: list[Path] | None) -> list[Path]:
    """The projects dirs --source names (default: Claude Code's); one that does not exist is an
    error, not an empty index."""
    from indexer.sources import resolve_sources

    check_sources(source)
    roots = resolve_sources(source)
    if not roots:
        print(
            "cco: note: no Claude Code transcripts found (no projects/ folder in $CLAUDE_CONFIG_DIR, "
            "~/.config/claude or ~/.claude); pass --source",
            file=sys.stderr,
        )
    return roots


def typer_option(o: Opt) -> Any:
    """`o` as a typer.Option (typer is imported here: only typer's own commands call this)."""
    import typer

    return typer.Option(*o.flags, help=o.help, envvar=o.envvar, show_envvar=o.envvar is not None)


def typer_command(
    options: dict[str, Opt], names: tuple[str, ...], text: str, run: Callable[[dict[str, Any]], None]
) -> Callable[..., None]:
    """A function typer turns into a command with the options `names`; it calls `run(values)`."""
    import inspect

    def command(**values: Any) -> None:
        run(values)

    params = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=options[name].default,
            annotation=Annotated[options[name].kind, typer_option(options[name])],
        )
        for name in names
    ]
    command.__doc__ = text
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # typer reads options here
    return command


def read(args: list[str], options: dict[str, Opt], names: tuple[str, ...]) -> dict[str, Any] | None:
    """Every option's value for an ordinary command line of options `names`, else None.

    Ordinary: options as `--name value`, `--name=value`, `-x value` or a flag, no value starting
    with '-', numbers as plain decimals. A repeatable option (a list) collects its values; an
    option not given takes its variable's value, if it has one and it is set, else its default.
    """
    by_flag = {flag: name for name in names for flag in options[name].flags}
    values: dict[str, Any] = {}
    rest: Iterator[str] = iter(args)
    for arg in rest:
        flag, eq, attached = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        name = by_flag.get(flag)
        if name is None:
            return None
        kind = options[name].kind
        if kind is bool:
            if eq:
                return None
            values[name] = True
            continue
        text = attached if eq else next(rest, None)
        if text is None or text.startswith("-"):
            return None
        value = _value(kind, text)
        if value is None:
            return None
        if kind in (list[Path] | None, list[str] | None):
            values.setdefault(name, []).extend(value)
        else:
            values[name] = value
    for name in names:
        if name not in values:
            o = options[name]
            env = os.environ.get(o.envvar) if o.envvar else None
            values[name] = o.default if env is None else _value(o.kind, env)
    return values


def _value(kind: Any, text: str) -> Any:
    """`text` as an option of type `kind` (a list for a repeatable one), None if it is not one here."""
    if kind in (str, str | None):
        return text
    if kind == list[str] | None:
        return [text]
    if kind in (Path | None, list[Path] | None) and text:
        return Path(text) if kind == Path | None else [Path(text)]
    if kind in (float, float | None, int) and re.match(_NUMBER, text):
        return float(text) if kind is not int else int(text) if text.isdigit() else None
    return None
