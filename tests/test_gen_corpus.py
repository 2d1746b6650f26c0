"""The benchmark corpus generator writes valid transcripts that index to the totals it reports."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import orjson
import pytest
from conftest import load_gen_corpus, run_cco

gen = load_gen_corpus()
SIZE = 12 << 20  # above ingest.PARALLEL_BYTES: `cco index rebuild` parses it in its (forked) parser processes


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, _, names in sorted(os.walk(root)):
        for name in sorted(names):
            p = Path(dirpath) / name
            h.update(str(p.relative_to(root)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("corpus")
    summary = gen.generate(out, SIZE, seed=7, days=10, jobs=1)
    return out, summary


def test_tree_is_valid_jsonl_and_matches_summary(corpus: tuple[Path, dict[str, object]]) -> None:
    out, summary = corpus
    files = lines = size = 0
    kinds: set[str] = set()
    layouts = {"session": 0, "subagents": 0, "agent_20": 0}
    for path in (out / "projects").rglob("*.jsonl"):
        data = path.read_bytes()
        assert data.endswith(b"\n"), path
        files += 1
        size += len(data)
        for line in data.split(b"\n")[:-1]:
            obj = orjson.loads(line)
            assert isinstance(obj, dict)
            kinds.add(str(obj.get("type")))
            lines += 1
        if path.parent.name == "subagents":
            layouts["subagents"] += 1
        elif path.name.startswith("agent-"):
            layouts["agent_20"] += 1
        else:
            layouts["session"] += 1
    assert (files, lines, size) == (summary["files"], summary["lines"], summary["bytes"])
    assert 0.7 * SIZE < size < 1.6 * SIZE
    assert {"user", "assistant", "progress", "system"} <= kinds
    assert all(layouts.values()), layouts


def test_same_seed_same_tree(corpus: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    out, summary = corpus
    again = gen.generate(tmp_path, SIZE, seed=7, days=10, jobs=1)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in summary.items() if k != "seconds"}
    assert _tree_digest(tmp_path / "projects") == _tree_digest(out / "projects")


def test_indexes_to_the_reported_totals(corpus: tuple[Path, dict[str, object]], tmp_path: Path) -> None:
    out, summary = corpus
    db = str(tmp_path / "index.duckdb")
    rebuilt = run_cco("index", "rebuild", "--source", str(out), "--db", db)
    assert rebuilt.returncode == 0, rebuilt.stderr
    status = run_cco("index", "status", "--db", db, "--json")
    assert status.returncode == 0, status.stderr
    got = json.loads(status.stdout)
    expected = summary["expected"]
    assert isinstance(expected, dict)
    for key in (
        "calls",
        "failed_calls",
        "input_tokens",
        "output_tokens",
        "cache_creation_tokens",
        "cache_read_tokens",
        "total_tokens",
    ):
        assert got[key] == expected[key], key
    assert got["rejected_lines"] == 0
    assert got["lines"] == summary["lines"]
    assert got["total_cost"] == pytest.approx(expected["cost_usd"], rel=1e-6)
    assert gen.UNKNOWN_MODEL in got["unpriced_models"]
