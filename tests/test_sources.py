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


def test_the_service_also_watches_default_folders_that_do_not_exist_yet(tmp_path: Path) -> None:
    home = Path.home()
    missing = [home / ".config" / "claude" / "projects", home / ".claude" / "projects"]
    assert default_sources() == []
    assert default_sources(include_missing=True) == missing
    assert resolve_sources(None, include_missing=True) == [p.resolve() for p in missing]


def test_a_source_inside_another_is_read_once(tmp_path: Path) -> None:
    """`--source cfg --source cfg/projects/-w-a`: each file once (a path given twice broke the index)."""
    cfg = write_tree(tmp_path / "cfg", {"-w-a/s1.jsonl": "", "-w-other/s.jsonl": ""})
    roots = resolve_sources([cfg, cfg / "projects" / "-w-a"])
    assert roots == [(cfg / "projects").resolve()]
    paths = [p for p, _ in iter_transcripts([*roots, (cfg / "projects" / "-w-a").resolve()])]
    assert sorted(paths) == sorted({*paths}) and len(paths) == 2


def test_symbolic_links_to_folders_are_followed_once(tmp_path: Path) -> None:
    cfg = write_tree(tmp_path / "cfg", {"-w-p1/s.jsonl": ""})
    outside = write_tree(tmp_path / "out", {"-w-real/s.jsonl": ""}) / "projects" / "-w-real"
    projects = cfg / "projects"
    (projects / "-w-link").symlink_to(outside)  # a project folder kept elsewhere
    (projects / "-w-p1" / "again").symlink_to(projects / "-w-p1")  # a loop
    (projects / "-w-alias").symlink_to(projects / "-w-p1")  # a folder reached twice
    found = sorted(p for p, _ in iter_transcripts([projects]))
    assert found == [str(projects / "-w-link" / "s.jsonl"), str(projects / "-w-p1" / "s.jsonl")]


def test_a_file_reached_through_links_is_found_once(tmp_path: Path) -> None:
    """Under its real path when the tree holds it, else under one of the links to it."""
    cfg = write_tree(tmp_path / "cfg", {"-w-p1/a.jsonl": "", "-w-p1/b.jsonl": ""})
    outside = write_tree(tmp_path / "out", {"x/c.jsonl": ""}) / "projects" / "x" / "c.jsonl"
    projects = cfg / "projects"
    (projects / "-w-p1" / "0-link-to-a.jsonl").symlink_to(projects / "-w-p1" / "a.jsonl")
    (projects / "-w-p1" / "c.jsonl").symlink_to(outside)
    (projects / "-w-p2").mkdir()
    (projects / "-w-p2" / "c-again.jsonl").symlink_to(outside)
    (projects / "-w-p2" / "dangling.jsonl").symlink_to(tmp_path / "nothing.jsonl")
    found = sorted(p for p, _ in iter_transcripts([projects]))
    real = [str(projects / "-w-p1" / "a.jsonl"), str(projects / "-w-p1" / "b.jsonl")]
    assert found in (
        sorted([*real, str(projects / "-w-p1" / "c.jsonl")]),
        sorted([*real, str(projects / "-w-p2" / "c-again.jsonl")]),
    )


def test_folders_that_cannot_be_listed_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Told apart from folders that are gone: what the index knows below them is out of reach, not deleted."""
    import os

    cfg = write_tree(tmp_path / "cfg", {"-w-p1/a.jsonl": "", "-w-p2/b.jsonl": ""})
    projects = cfg / "projects"
    denied = str(projects / "-w-p2")
    scandir = os.scandir

    def no_entry(path: str) -> object:
        if path == denied:
            raise PermissionError(13, "Permission denied", path)
        if path.endswith("vanished"):
            raise FileNotFoundError(2, "No such file or directory", path)
        return scandir(path)

    monkeypatch.setattr(os, "scandir", no_entry)
    (projects / "vanished").mkdir()
    unlisted: list[str] = []
    assert [p for p, _ in iter_transcripts([projects], unlisted)] == [str(projects / "-w-p1" / "a.jsonl")]
    assert unlisted == [denied]
