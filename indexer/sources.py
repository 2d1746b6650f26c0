"""Find the transcript trees and every `*.jsonl` file below their `projects/` folders.

The idea: sources are given as config dirs (holding `projects/`) or as `projects/` dirs; defaults
follow Claude Code (each entry of CLAUDE_CONFIG_DIR, else ~/.config/claude and ~/.claude).
`os.scandir` recursion keeps a scan of thousands of files to a few milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path


def default_sources(include_missing: bool = False) -> list[Path]:
    """Claude Code's projects dirs: each entry of CLAUDE_CONFIG_DIR, else ~/.config/claude and
    ~/.claude; only those that exist, unless `include_missing` (the service watches for them)."""
    env = os.environ.get("CLAUDE_CONFIG_DIR", "").strip()
    if env:
        roots = [Path(p.strip()).expanduser() for p in env.split(",") if p.strip()]
    else:
        home = Path.home()
        roots = [home / ".config" / "claude", home / ".claude"]
    return [r / "projects" for r in roots if include_missing or (r / "projects").is_dir()]


def projects_dir(source: Path) -> Path:
    """A config dir or a projects dir -> the projects dir."""
    source = source.expanduser()
    return source / "projects" if (source / "projects").is_dir() else source


def resolve_sources(given: Iterable[Path] | None, include_missing: bool = False) -> list[Path]:
    """The distinct projects dirs to read: `given` (config or projects dirs), else the defaults.

    A root inside another one is dropped: its files are read once, through the outer root.
    """
    given = list(given or [])
    found = [projects_dir(p) for p in given] if given else default_sources(include_missing)
    return [Path(p) for p in _outermost([str(p.resolve()) for p in found])]


def iter_transcripts(
    roots: Iterable[Path],
    unlisted: list[str] | None = None,
    links: dict[str, str] | None = None,
    with_files: bool = True,
) -> Iterator[tuple[str, os.stat_result]]:
    """Every *.jsonl file below each root, with its stat (files that vanish mid-scan are skipped).

    Folders that exist but cannot be listed (no permission) are appended to `unlisted`: what the
    index knows below them is not gone, only out of reach. Each folder link walked is put in
    `links` (its path -> its target's real path): the files below it are named under the link.
    With `with_files` False only folders are walked (for `links`): no file is looked at or yielded.

    Roots inside another root are walked once, as part of it. Folders that are symbolic links are
    followed after every real folder has been walked, skipping those whose target was walked (real
    folders are known by path, folders under links by device and inode): links cannot loop, and a
    folder reached two ways is read once, under its real path. A tree without links costs one set
    insertion per folder more than a plain walk. Files that are links come last, and only those
    whose target was not read already (by device and inode), so a file is read once too.
    """
    real_dirs: set[str] = set()
    linked_dirs: set[tuple[int, int]] = set()
    later: list[str] = []
    files: set[tuple[int, int]] = set()  # (device, inode) of every file yielded
    linked_files: list[tuple[str, os.stat_result]] = []
    stack: list[tuple[str, bool]] = [(top, False) for top in _outermost([str(r) for r in roots])]
    while stack or later:
        link = not stack  # a folder link, walked after every real folder
        if stack:
            top, via_link = stack.pop()
        else:
            top, via_link = later.pop(), True
            if os.path.realpath(top) in real_dirs:
                continue
        try:
            if via_link:
                st = os.stat(top)
                if (st.st_dev, st.st_ino) in linked_dirs:
                    continue
                linked_dirs.add((st.st_dev, st.st_ino))
            else:
                real_dirs.add(top)
            entries = list(os.scandir(top))
        except FileNotFoundError:
            continue
        except OSError:
            if unlisted is not None:
                unlisted.append(top)
            continue
        if link and links is not None:
            links[top] = os.path.realpath(top)
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((entry.path, via_link))
                elif entry.name.endswith(".jsonl"):
                    if with_files and entry.is_file():
                        st = entry.stat()
                        if entry.is_symlink():
                            linked_files.append((entry.path, st))
                        else:
                            files.add((st.st_dev, st.st_ino))
                            yield entry.path, st
                elif entry.is_symlink() and entry.is_dir():
                    later.append(entry.path)
            except OSError:
                continue
    for path, st in linked_files:
        if (st.st_dev, st.st_ino) not in files:
            files.add((st.st_dev, st.st_ino))
            yield path, st


def linked_folders(roots: Iterable[Path]) -> list[tuple[str, str]]:
    """(link, target) for each folder link iter_transcripts walks below `roots` (their targets lie
    outside them, or it would not): it names the files there under the link, and a watch on the
    roots does not see into them. Found by that walk itself, so the link chosen for a target
    reached by several, and links inside linked folders, are the walk's."""
    links: dict[str, str] = {}
    for _ in iter_transcripts(roots, links=links, with_files=False):
        pass
    return sorted(links.items())


def _outermost(tops: list[str]) -> list[str]:
    """`tops` in their order, without repeats and without those inside another."""
    unique = list(dict.fromkeys(tops))
    return [t for t in unique if not any(t.startswith(o.rstrip(os.sep) + os.sep) for o in unique if o != t)]
