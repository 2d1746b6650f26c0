"""api/options.py: an ordinary command line read without typer, the same values typer would give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from api.options import DB, SOURCE, Opt, read, typer_command

OPTIONS: dict[str, Opt] = {
    "source": SOURCE,
    "db": DB,
    "name": Opt(("--name", "-n"), str, "x", "A name."),
    "port": Opt(("--port",), int, 3000, "A port."),
    "rate": Opt(("--rate",), float, 2.0, "A rate."),
    "limit": Opt(("--limit",), float | None, None, "A limit."),
    "token": Opt(("--token",), str | None, None, "A token.", "CCO_TEST_TOKEN"),
    "host": Opt(("--host",), list[str] | None, None, "Hosts."),
    "json": Opt(("--json", "-j"), bool, False, "JSON."),
}
NAMES = tuple(OPTIONS)


def via_typer(args: list[str]) -> dict[str, Any]:
    got: dict[str, Any] = {}
    app = typer.Typer()
    app.command()(typer_command(OPTIONS, NAMES, "A command.", got.update))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return got


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--source", "a", "--source=b", "--db", "i.duckdb"],
        ["-n", "y", "--port", "0", "--rate", "0.5", "--limit=7", "-j"],
        ["--host", "box.lan", "--host", "other", "--token", "t"],
    ],
)
def test_ordinary_command_lines_read_as_typer_reads_them(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CCO_TEST_TOKEN", raising=False)
    assert read(args, OPTIONS, NAMES) == via_typer(args)


def test_values_types_and_repeats() -> None:
    got = read(["--source", "a", "--source", "b", "--port", "8080", "--rate", "3"], OPTIONS, NAMES)
    assert got is not None
    assert got["source"] == [Path("a"), Path("b")] and got["port"] == 8080 and got["rate"] == 3.0
    assert got["name"] == "x" and got["db"] is None and got["host"] is None and got["json"] is False


def test_an_unset_option_takes_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCO_TEST_TOKEN", "from-env")
    assert (read([], OPTIONS, NAMES) or {})["token"] == "from-env"
    assert (read(["--token", "given"], OPTIONS, NAMES) or {})["token"] == "given"
    assert via_typer([])["token"] == "from-env"


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--bogus"],
        ["--port"],  # no value
        ["--port", "1.5"],  # not an integer: typer says so
        ["--rate", "1e3"],  # not a plain decimal
        ["--name", "-x"],  # a value that looks like an option
        ["--json=yes"],
        ["-jn", "y"],  # combined short flags
        ["--db", ""],
    ],
)
def test_anything_unusual_is_left_to_typer(args: list[str]) -> None:
    assert read(args, OPTIONS, NAMES) is None
