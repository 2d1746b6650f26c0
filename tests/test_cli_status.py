"""`cco index status` runs without typer on an ordinary command line, and typer still takes the rest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import run_cco
from tests.test_cli_index import assert_one_line_error


def test_an_ordinary_status_runs_without_typer(tmp_path: Path, samples_tree: Path) -> None:
    """typer, click and rich cost about half of a status's time: neither the command line nor
    `--json` output loads them, and the answer is the whole status."""
    db = tmp_path / "i.duckdb"
    assert run_cco("index", "sync", "--source", str(samples_tree), "--db", str(db)).returncode == 0
    code = (
        "import sys, atexit\n"
        "names = ('typer', 'click', 'rich', 'api.cli_index')\n"
        "atexit.register(lambda: print(sorted(m for m in names if m in sys.modules), file=sys.stderr))\n"
        "sys.argv = ['cco', *sys.argv[1:]]\n"
        "from api.cli import main; main()"
    )
    args = ["index", "status", "--db", str(db), "--json", "-m", "calculate"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "[]"
    fields = json.loads(done.stdout)
    assert fields["db"] == str(db) and fields["calls"] > 0 and fields["total_cost"] > 0


def test_help_and_mistakes_still_go_to_typer(tmp_path: Path) -> None:
    """What `options.read` does not take (`--help`, an unknown option, a value missing) is typer's:
    its help, or a one-line usage error."""
    shown = run_cco("index", "status", "--help")
    assert shown.returncode == 0
    for option in ("--db", "--json", "--mode"):
        assert option in shown.stdout
    db = str(tmp_path / "i.duckdb")
    assert_one_line_error(run_cco("index", "status", "--db", db, "--jsn"), "--jsn")
    assert_one_line_error(run_cco("index", "status", "--db", db, "--mode"), "--mode")
    assert not Path(db).exists()
