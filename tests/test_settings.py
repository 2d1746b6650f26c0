"""Settings in config.toml: defaults, validated writes, and errors that name the line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from indexer.errors import BadInput
from indexer.settings import (
    SETTINGS,
    default_cost_mode,
    load_settings,
    read_settings,
    resolve_cost_mode,
    set_setting,
    settings_file,
    write_atomic,
)


def test_defaults_without_a_file(isolated_home: Path) -> None:
    assert settings_file() == isolated_home / "config.toml"
    assert read_settings() == {}
    assert load_settings() == {"cost_mode": "auto"}
    assert default_cost_mode() == "auto"


def test_every_setting_has_a_default_among_its_choices_and_help() -> None:
    for setting in SETTINGS.values():
        assert setting.default in setting.choices and setting.help


def test_set_and_read_back() -> None:
    assert set_setting("cost-mode", "calculate").name == "cost_mode"
    assert read_settings() == {"cost_mode": "calculate"}
    assert default_cost_mode() == "calculate"
    set_setting("cost_mode", "display")
    assert default_cost_mode() == "display"
    assert [p.name for p in settings_file().parent.iterdir()] == ["config.toml"]  # no temporary file left


def test_resolve_cost_mode_prefers_the_option() -> None:
    set_setting("cost-mode", "display")
    assert resolve_cost_mode(None) == "display"
    assert resolve_cost_mode("calculate") == "calculate"
    with pytest.raises(BadInput, match="--mode must be one of auto, calculate, display, got 'cheap'"):
        resolve_cost_mode("cheap")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("cost-mode", "cheap", "cost-mode must be one of auto, calculate, display, got 'cheap'"),
        ("colour", "blue", "unknown setting 'colour'; known: cost-mode"),
    ],
)
def test_bad_set_leaves_the_file_untouched(name: str, value: str, message: str) -> None:
    set_setting("cost-mode", "calculate")
    before = settings_file().read_bytes(), os.stat(settings_file()).st_ino
    with pytest.raises(BadInput) as exc:
        set_setting(name, value)
    assert str(exc.value) == message
    assert (settings_file().read_bytes(), os.stat(settings_file()).st_ino) == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('# mine\ncost_mode = "cheap"\n', "line 2: cost_mode must be one of auto, calculate, display, got 'cheap'"),
        ("cost_mode = 3\n", "line 1: cost_mode must be one of auto, calculate, display, got 3"),
        ('\n\ncolour = "blue"\n', "line 3: unknown setting 'colour'; known: cost_mode"),
        ('cost_mode = "auto\n', "line 1, column 18: Illegal character"),
    ],
)
def test_a_bad_file_names_its_line(text: str, message: str) -> None:
    settings_file().parent.mkdir(parents=True, exist_ok=True)
    settings_file().write_text(text)
    with pytest.raises(BadInput) as exc:
        default_cost_mode()
    assert str(exc.value).startswith(f"{settings_file()} {message}")
    if text.startswith(("# mine", "cost_mode = 3")):  # a bad value of the setting being set: repaired
        set_setting("cost-mode", "auto")
        assert default_cost_mode() == "auto"
        return
    with pytest.raises(BadInput):  # anything else: nothing is written over it
        set_setting("cost-mode", "auto")
    assert settings_file().read_text() == text


def test_write_atomic_replaces_in_one_rename(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "file.toml"
    write_atomic(path, "a = 1\n")
    first = os.stat(path).st_ino
    write_atomic(path, "a = 2\n")
    assert path.read_text() == "a = 2\n"
    assert os.stat(path).st_ino != first  # a new file renamed over the old one, never rewritten in place
    assert [p.name for p in path.parent.iterdir()] == ["file.toml"]
