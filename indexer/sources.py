"""Find the transcript trees and every `*.jsonl` file below their `projects/` folders.

The idea: sources are given as config dirs (holding `projects/`) or as `projects/` dirs; defaults
follow Claude Code (each entry of CLAUDE_CONFIG_DIR, else ~/.config/claude and ~/.claude).
`os.scandir` recursion keeps a scan of thousands of files to a few milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path


def default_sources() -> list[Path]:
    env = os.environ.get("CLAUDE_CONFIG_DIR", "").strip()
    if env:
        roots = [Path(p.strip()).expanduser() for p in env.split(",") if p.strip()]
    else:
        home = Path.home()
        roots = [home / ".config" / "claude", home / ".claude"]
    return [r / "projects" for r in roots if (r / "projects").is_dir()]


def projects_dir(source: Path) -> Path:
    """A config dir or a projects dir -> the projects dir."""
    source = source.expanduser()
    return source / "projects" if (source / "projects").is_dir() else source


def resolve_sources(given: Iterable[Path] | None) -> list[Path]:
    given = list(given or [])
    found = [projects_dir(p) for p in given] if given else default_sources()
    unique: list[Path] = []
    for p in found:
        p = p.resolve()
        if p not in unique:
            unique.append(p)
    return unique


def iter_transcripts(roots: Iterable[Path]) -> Iterator[tuple[str, os.stat_result]]:
    """Every *.jsonl file below each root, with its stat (files that vanish mid-scan are skipped)."""
    stack = [str(r) for r in roots]
    while stack:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.name.endswith(".jsonl") and entry.is_file():
                    yield entry.path, entry.stat()
            except OSError:
                continue
