"""Shared test fixtures: an isolated CCO_HOME, transcript trees, and the real `cco` executable."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from indexer.store import Index

# What the machine running the suite may set that would change what it checks (the suite's `cco`
# processes inherit this environment too): typer's rich output turns to terminal colour codes
# under GITHUB_ACTIONS, FORCE_COLOR or PY_COLORS ("--db" no longer reads as such) and wraps tables
# at a narrow COLUMNS; glibc's malloc settings would undo what test_memory measures.
for _name in [*os.environ]:
    if _name in ("GITHUB_ACTIONS", "FORCE_COLOR", "PY_COLORS", "COLUMNS", "LINES", "TERMINAL_WIDTH") or (
        _name.startswith("MALLOC_") or _name == "GLIBC_TUNABLES"
    ):
        del os.environ[_name]

# No time limit per generated example: on a busy or slow machine (CI's) a limit fails a test
# whose examples are merely slow, as "Unreliable test timings" (Flaky).
settings.register_profile("cco", deadline=None)
settings.load_profile("cco")

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
SAMPLES = FIXTURES / "samples"
CCO = str(Path(sys.executable).parent / "cco")

# Where each real sample sits in a Claude Code projects/ tree (the layout its source had).
SAMPLE_LAYOUT = {
    "sniffly_v1.0.17_fed8ce56-bc79-401f-a83e-af084253362f.jsonl":
        "-Users-chip-dev-ai-music/fed8ce56-bc79-401f-a83e-af084253362f.jsonl",
    "spotter_v2.1.38_tool_heavy.jsonl": "-home-marco-spotter/tool_heavy.jsonl",
    "spotter_v2.1.39_ae4a77f8_excerpt_lines1456-1511.jsonl":
        "-home-USER-spotter/ae4a77f8-aedd-4bc1-888f-c94edc91af04.jsonl",
    "spotter_v2.1.39_ae4a77f8_subagents_agent-aac57f5.jsonl":
        "-home-USER-spotter/ae4a77f8-aedd-4bc1-888f-c94edc91af04/subagents/agent-aac57f5.jsonl",
}  # fmt: skip


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No test touches the real home: CCO_HOME is temporary and Claude's default roots are hidden."""
    home = tmp_path / "cco-home"
    monkeypatch.setenv("CCO_HOME", str(home))
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("CCO_TOKEN", raising=False)
    yield home


def write_tree(root: Path, files: dict[str, bytes | str]) -> Path:
    """Write `files` (path relative to root/projects -> content) and return root (a config dir)."""
    for rel, content in files.items():
        path = root / "projects" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


@pytest.fixture
def samples_tree(tmp_path: Path) -> Path:
    """A config dir whose projects/ holds the real samples in their original layout."""
    root = tmp_path / "claude"
    for name, rel in SAMPLE_LAYOUT.items():
        dest = root / "projects" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLES / name, dest)
    return root


def run_cco(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed `cco` executable as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([CCO, *args], capture_output=True, text=True, env=full_env, timeout=timeout)


def service_files() -> dict[str, bytes | str]:
    """fixtures/service's transcripts (hand-checked in its README), as write_tree takes them."""
    base = FIXTURES / "service" / "projects"
    return {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*.jsonl")}


def build_service_index(folder: Path) -> Index:
    """An index over fixtures/service, priced with the bundled prices."""
    from indexer.ingest import sync
    from indexer.pricing import apply_prices, load_book
    from indexer.store import Index

    root = write_tree(folder / "claude", service_files())
    index = Index(folder / "i.duckdb")
    sync(index, [root / "projects"])
    apply_prices(index.con, load_book(None))
    return index


@contextlib.contextmanager
def index_held_elsewhere(db: Path) -> Iterator[int]:
    """Another process holds `db` open (DuckDB's file lock) until the block ends; yields its pid."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
         "sys.stdin.read()", str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        yield holder.pid
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.stdout.close()
        holder.wait(timeout=30)


GATE = "CCO_TEST_PARSER_GATE"


def gated_read_task(plans: list[Any]) -> Any:
    """worker.read_task once the file named by $CCO_TEST_PARSER_GATE exists (parser and writer
    processes inherit the variable): a test decides when its parsers may finish, whatever the
    machine's speed."""
    from indexer import worker

    gate = Path(os.environ[GATE])
    deadline = time.monotonic() + 60
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return worker.read_task(plans)


@pytest.fixture
def parser_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Parser tasks wait until the returned path is touched."""
    from indexer import ingest

    gate = tmp_path / "parser-gate"
    monkeypatch.setenv(GATE, str(gate))
    # Pickled by reference: parsers import this module; a pass's writer process takes it along
    # (ingest.settings).
    monkeypatch.setattr(ingest, "read_task", gated_read_task)
    return gate


def load_gen_corpus() -> ModuleType:
    """scripts/gen_corpus.py as a module (scripts/ is no package)."""
    if "gen_corpus" in sys.modules:
        return sys.modules["gen_corpus"]
    spec = importlib.util.spec_from_file_location("gen_corpus", ROOT / "scripts" / "gen_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_corpus"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module
