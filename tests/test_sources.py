"""Where transcripts are found: CLAUDE_CONFIG_DIR, the default dirs, --source, every *.jsonl below projects/."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.sources import default_sources, iter_transcripts, projects_dir, resolve_sources
from tests.conftest import write_tree


def test_claude_config_dir_comma_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = write_tree(tmp_path / "a", {"-p/s.jsonl": ""})
    b = write_tree(tmp_path / "b", {"-q/t.jsonl": ""})
    no_projects = tmp_path / "c"
    no_projects.mkdir()
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", f"{a}, {b} ,,{no_projects},{tmp_path / 'missing'}")
    assert default_sources() == [a / "projects", b / "projects"]
    assert resolve_sources(None) == [(a / "projects").resolve(), (b / "projects").resolve()]


def test_defaults_without_the_variable(tmp_path: Path) -> None:
    home = Path.home()  # the isolated fixture's fake home
    assert default_sources() == []
    write_tree(home / ".claude", {"-p/s.jsonl": ""})
    assert default_sources() == [home / ".claude" / "projects"]
    write_tree(home / ".config" / "claude", {"-p/s.jsonl": ""})
    assert default_sources() == [home / ".config" / "claude" / "projects", home / ".claude" / "projects"]


def test_source_may_be_a_config_dir_or_a_projects_dir(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "claude", {"-p/s.jsonl": ""})
    assert projects_dir(root) == root / "projects"
    assert projects_dir(root / "projects") == root / "projects"
    # both spellings of the same place count once
    assert resolve_sources([root, root / "projects"]) == [(root / "projects").resolve()]


def test_every_jsonl_below_projects_is_found(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path / "claude",
        {
            "-home-a-p/0d5c.jsonl": "",
            "-home-a-p/agent-1234.jsonl": "",  # 2.0.x subagent
            "-home-a-p/0d5c/subagents/agent-a1.jsonl": "",  # 2.1.x subagent
            "-home-a-p/0d5c/subagents/agent-acompact-9f.jsonl": "",  # compaction call
            "-home-a-p/0d5c/subagents/agent-a1.meta.json": "{}",
            "-home-a-p/0d5c/tool-results/x.txt": "",
            "-home-a-p/sessions-index.json": "{}",
            "-home-b-q/deep/er/still.jsonl": "",
        },
    )
    found = sorted(Path(p).relative_to(root / "projects").as_posix() for p, _ in iter_transcripts([root / "projects"]))
    assert found == [
        "-home-a-p/0d5c.jsonl",
        "-home-a-p/0d5c/subagents/agent-a1.jsonl",
        "-home-a-p/0d5c/subagents/agent-acompact-9f.jsonl",
        "-home-a-p/agent-1234.jsonl",
        "-home-b-q/deep/er/still.jsonl",
    ]


def test_missing_root_yields_nothing(tmp_path: Path) -> None:
    assert list(iter_transcripts([tmp_path / "nope"])) == []
