"""`cco config …` through the installed `cco` executable, as a user runs it.

Errors must be one line on stderr (`cco: error: …`), exit status 2, no traceback, and leave the
user's files exactly as they were.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import FIXTURES, run_cco, write_tree
from test_pricing import call_line

OPUS = "claude-opus-4-1-20250805"


def ok(*args: str) -> str:
    result = run_cco(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(*args: str) -> str:
    """Run a command that must fail cleanly; return its one error line."""
    result = run_cco(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cco: error: ")
    return lines[0].removeprefix("cco: error: ")


def snapshot(path: Path) -> tuple[bytes, int, int] | None:
    if not path.exists():
        return None
    st = os.stat(path)
    return path.read_bytes(), st.st_ino, st.st_mtime_ns


def test_list_marks_where_each_price_comes_from(isolated_home: Path) -> None:
    ok("config", "pricing", "update", OPUS, "--input", "10", "--output", "50")
    ok("config", "pricing", "update", "claude-private-1", "--input", "2", "--output", "8", "--tier", "sonnet")
    data = json.loads(ok("config", "pricing", "list", "--json"))
    assert data["pricing_file"] == str(isolated_home / "pricing.toml")
    assert data["web_search_per_1000"] == 10.0
    models = {m["model"]: m for m in data["models"]}
    assert (models[OPUS]["source"], models[OPUS]["overrides_bundled"]) == ("user", True)
    assert (models[OPUS]["input"], models[OPUS]["output"], models[OPUS]["cache_read"]) == (10.0, 50.0, 1.5)
    assert models["claude-private-1"] | {"model": "-"} == {
        "model": "-",
        "source": "user",
        "overrides_bundled": False,
        "input": 2.0,
        "output": 8.0,
        "cache_write_5m": 2.5,  # defaults: 1.25, 2 and 0.1 x input
        "cache_write_1h": 4.0,
        "cache_read": 0.2,
        "long_context": None,
        "fast_multiplier": 1.0,
        "tier": "sonnet",
        "earlier": [],
    }
    assert models["claude-sonnet-5-5"]["earlier"] == [
        {
            "until": "2026-10-07",
            "input": 2.0,
            "output": 10.0,
            "cache_write_5m": 2.5,
            "cache_write_1h": 4.0,
            "cache_read": 0.2,  # 0.10 since that day
            "long_context": None,
            "fast_multiplier": 1.0,
        }
    ]
    assert "claude-sonnet-5-5   2026-10-07" in ok("config", "pricing", "list")
    sonnet = models["claude-sonnet-4-5-20250929"]
    assert sonnet["source"] == "bundled"
    assert sonnet["long_context"] == {
        "input": 6.0,
        "output": 22.5,
        "cache_write_5m": 7.5,
        "cache_write_1h": 12.0,
        "cache_read": 0.6,
    }
    assert models["claude-opus-4-6"]["fast_multiplier"] == 6.0
    text = ok("config", "pricing", "list")
    assert "claude-private-1" in text and "user*" in text and "above 200k" in text


BAD_UPDATES = [
    (["claude-x", "--input", "1"], "'claude-x' has no price yet: --output is required"),
    (["claude-x", "--input", "-1", "--output", "2"], "--input must not be negative, got '-1'"),
    (["claude-x", "--input", "nan", "--output", "2"], "--input must be a finite number, got 'nan'"),
    (["claude-x", "--input", "1", "--output", "two"], "--output must be a number, got 'two'"),
    ([OPUS, "--cache-write-1h", "-30"], "--cache-write-1h must not be negative, got '-30'"),
    ([OPUS, "--long-context-input", "x"], "--long-context-input must be a number, got 'x'"),
    ([OPUS, "--tier", "gpt"], "--tier must be one of opus, sonnet, haiku, other, got 'gpt'"),
    # named by its option, not by the file's key (long_context_output)
    (
        ["claude-x", "--input", "1", "--output", "2", "--long-context-input", "9"],
        "price for 'claude-x': --long-context-output is required",
    ),
]


def test_bad_updates_fail_cleanly_and_change_nothing(isolated_home: Path) -> None:
    path = isolated_home / "pricing.toml"
    ok("config", "pricing", "update", "claude-keep", "--input", "1", "--output", "2")
    before = snapshot(path)
    for args, message in BAD_UPDATES:  # one loop, not parametrized: each run of `cco` costs a start-up
        assert fails("config", "pricing", "update", *args) == message
        assert snapshot(path) == before


def test_a_malformed_file_is_reported_with_its_line(isolated_home: Path) -> None:
    path = isolated_home / "pricing.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    bad = FIXTURES / "pricing" / "bad" / "negative.toml"
    path.write_bytes(bad.read_bytes())
    before = snapshot(path)
    expected = f"{path} line 6: price for 'claude-x': output must not be negative, got -2"
    assert fails("config", "pricing", "list") == expected
    assert fails("config", "pricing", "update", "claude-y", "--input", "1", "--output", "2") == expected
    assert snapshot(path) == before
    assert ok("config", "pricing", "reset").strip() == f"removed {path}"  # the way out
    assert not path.exists()


def test_reset_one_model_and_all(isolated_home: Path) -> None:
    path = isolated_home / "pricing.toml"
    ok("config", "pricing", "update", OPUS, "--input", "10")
    ok("config", "pricing", "update", "claude-new", "--input", "1", "--output", "2")
    assert ok("config", "pricing", "reset", OPUS).strip() == f"reset {OPUS}: back to the bundled price"
    assert fails("config", "pricing", "reset", OPUS) == (f"no user price for '{OPUS}' (see `cco config pricing list`)")
    models = {m["model"]: m for m in json.loads(ok("config", "pricing", "list", "--json"))["models"]}
    assert models[OPUS]["source"] == "bundled" and models["claude-new"]["source"] == "user"
    assert ok("config", "pricing", "reset").strip() == f"removed {path}"
    assert ok("config", "pricing", "reset").strip() == "no user prices to remove"


def test_update_warns_when_a_bundled_id_keeps_its_own_price() -> None:
    result = run_cco("config", "pricing", "update", "claude-sonnet-4-5", "--input", "1", "--output", "2")
    assert result.returncode == 0
    assert "claude-sonnet-4-5-20250929 keep their own bundled price" in result.stderr


def test_index_status_follows_a_price_update(tmp_path: Path) -> None:
    # one Opus 4.1 call: 5,000 x 15 + 2,000 x 75 = $0.225; after the update 5,000 x 1 + 2,000 x 2 = $0.009
    root = write_tree(tmp_path / "claude", {"demo/s.jsonl": call_line(OPUS, input=5_000, output=2_000) + "\n"})
    db = str(tmp_path / "index.duckdb")
    ok("index", "sync", "--source", str(root), "--db", db)
    assert json.loads(ok("index", "status", "--db", db, "--json"))["total_cost"] == pytest.approx(0.225)
    ok("config", "pricing", "update", OPUS, "--input", "1", "--output", "2")
    assert json.loads(ok("index", "status", "--db", db, "--json"))["total_cost"] == pytest.approx(0.009)
    ok("config", "pricing", "reset", OPUS)
    assert json.loads(ok("index", "status", "--db", db, "--json"))["total_cost"] == pytest.approx(0.225)


def test_show_and_set(isolated_home: Path) -> None:
    data = json.loads(ok("config", "show", "--json"))
    assert data["cost-mode"] == "auto" and data["sources"] == {"cost-mode": "default"}
    assert data["config_file"] == str(isolated_home / "config.toml")
    assert data["pricing_file"] == str(isolated_home / "pricing.toml")
    assert ok("config", "set", "cost-mode", "calculate").startswith("cost-mode = calculate")
    data = json.loads(ok("config", "show", "--json"))
    assert data["cost-mode"] == "calculate" and data["sources"] == {"cost-mode": "config"}
    before = snapshot(isolated_home / "config.toml")
    assert fails("config", "set", "cost-mode", "cheap") == (
        "cost-mode must be one of auto, calculate, display, got 'cheap'"
    )
    assert fails("config", "set", "colour", "blue") == "unknown setting 'colour'; known: cost-mode"
    assert snapshot(isolated_home / "config.toml") == before
    assert "cost-mode" in ok("config", "show")


def test_settings_read_as_typed_and_a_bad_value_can_be_set_right(isolated_home: Path) -> None:
    """The file takes the key as the CLI spells it; values in any case; `config set` repairs a bad value."""
    path = isolated_home / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('cost-mode = "Display"\n')
    assert json.loads(ok("config", "show", "--json"))["cost-mode"] == "display"
    path.write_text('cost_mode = "bogus"\n')
    assert "line 1: cost_mode must be one of auto, calculate, display, got 'bogus'" in fails("config", "show")
    assert ok("config", "set", "cost-mode", "CALCULATE").startswith("cost-mode = calculate")
    assert json.loads(ok("config", "show", "--json"))["cost-mode"] == "calculate"
    assert json.loads(ok("config", "show", "--json"))["index_file"] == str(isolated_home / "index.duckdb")
    path.write_text("cost_mode = \n")  # not TOML: nothing in it can be kept, so set refuses and says what to do
    assert fails("config", "set", "cost-mode", "auto") == (
        f"{path} line 1, column 13: Invalid value (fix that line, or delete {path}: `cco config set` then writes "
        "it anew)"
    )
    assert path.read_text() == "cost_mode = \n"


def test_a_file_where_the_config_folder_should_be_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    out = run_cco("config", "set", "cost-mode", "auto", env={"CCO_HOME": str(home)})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr == f"cco: error: cannot write {home}/config.toml: a file stands where its folder should be\n"


def test_every_config_command_has_help() -> None:
    for args in (["config"], ["config", "pricing"]):
        out = ok(*args, "--help")
        assert "Usage" in out
    for command in ("list", "update", "reset"):
        assert "Usage" in ok("config", "pricing", command, "--help")


def test_no_traceback_for_an_unreadable_file(isolated_home: Path) -> None:
    """A folder where pricing.toml should be: unreadable even for root (a file without read permission
    is not, and these tests often run as root)."""
    path = isolated_home / "pricing.toml"
    path.mkdir(parents=True)
    assert fails("config", "pricing", "list") == f"{path}: cannot read (Is a directory)"


def test_updates_made_at_once_all_land(isolated_home: Path) -> None:
    """Each update reads, changes and writes pricing.toml: at once, none may overwrite another."""
    import subprocess

    from conftest import CCO

    procs = [
        subprocess.Popen([CCO, "config", "pricing", "update", f"model-{i}-x", "--input", "1", "--output", "2"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for i in range(5)
    ]  # fmt: skip
    assert [p.wait(120) for p in procs] == [0] * 5
    text = (isolated_home / "pricing.toml").read_text()
    assert all(f'[models."model-{i}-x"]' in text for i in range(5)), text
