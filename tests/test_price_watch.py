"""Hot reload: a running service's prices follow the user's pricing.toml; a bad file changes nothing.

The watcher is driven by calling check() as the service's loop does (no threads, no sleeps); file
times are set explicitly so that two writes within one clock tick still look different.
"""

from __future__ import annotations

import os
from itertools import count
from pathlib import Path

import pytest
from conftest import write_tree
from test_pricing import call_line

from indexer.ingest import sync
from indexer.paths import pricing_file
from indexer.price_watch import PriceWatcher
from indexer.pricing import apply_prices, bundled, update_user_price
from indexer.status import index_status
from indexer.store import Index

_stamps = count(1_700_000_000_000_000_000, 1_000_000_000)
OPUS = "claude-opus-4-1-20250805"
CHEAP = f'[models."{OPUS}"]\ninput = 1.0\noutput = 2.0\n'
CHEAPER = f'[models."{OPUS}"]\ninput = 0.5\noutput = 1.0\n'


def rewrite(path: Path, text: str) -> None:
    """Write in place (same inode, as many editors do) with a new modification time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    stamp = next(_stamps)
    os.utime(path, ns=(stamp, stamp))


def total(index: Index) -> float:
    return index_status(index, bundled(), "calculate").total_cost or 0.0


@pytest.fixture
def index(tmp_path: Path) -> Index:
    # one Opus 4.1 call: 5,000 in + 2,000 out = $0.225 at bundled prices
    root = write_tree(tmp_path / "claude", {"demo/s.jsonl": call_line(OPUS, input=5_000, output=2_000) + "\n"})
    idx = Index(tmp_path / "index.duckdb")
    sync(idx, [root / "projects"])
    apply_prices(idx.con, bundled())
    yield idx
    idx.close()


def test_without_a_file_the_bundled_prices_are_in_force() -> None:
    watcher = PriceWatcher(pricing_file())
    assert watcher.book is bundled() and watcher.error is None
    assert watcher.check() is False


def test_reload_changes_every_total_and_a_bad_file_keeps_the_last_good_prices(index: Index) -> None:
    path = pricing_file()
    watcher = PriceWatcher(path)
    assert total(index) == pytest.approx(0.225)

    rewrite(path, CHEAP)
    assert watcher.check() is True
    assert watcher.book.models[OPUS].rates.input == 1.0 and watcher.error is None
    assert apply_prices(index.con, watcher.book, all_models=True) is True
    # 5,000 x 1 + 2,000 x 2 = 9,000 -> $0.009
    assert index.con.execute("SELECT sum(cost_calculated) FROM priced_calls").fetchone() == (pytest.approx(0.009),)
    assert watcher.check() is False  # nothing changed since

    rewrite(path, "# only a comment\n" + CHEAP)  # a new file, the same prices
    assert watcher.check() is False

    rewrite(path, CHEAP.replace("output = 2.0", "output = -2.0"))
    assert watcher.check() is False
    assert watcher.error == (
        f"{path} line 3: price for '{OPUS}': output must not be negative, got -2.0; keeping the last good prices"
    )
    assert watcher.book.models[OPUS].rates.output == 2.0  # the last good prices stay in force

    rewrite(path, "[models\n")
    assert watcher.check() is False
    assert watcher.error is not None and watcher.error.startswith(f"{path} line 1, column 8: ")
    assert watcher.book.models[OPUS].rates.output == 2.0

    rewrite(path, CHEAPER)
    assert watcher.check() is True and watcher.error is None
    apply_prices(index.con, watcher.book, all_models=True)
    # 5,000 x 0.5 + 2,000 x 1 = 4,500 -> $0.0045
    assert index.con.execute("SELECT sum(cost_calculated) FROM priced_calls").fetchone() == (pytest.approx(0.0045),)

    path.unlink()  # no file: back to the bundled prices
    assert watcher.check() is True
    assert watcher.book is bundled()
    apply_prices(index.con, watcher.book, all_models=True)
    assert index.con.execute("SELECT sum(cost_calculated) FROM priced_calls").fetchone() == (pytest.approx(0.225),)


def test_a_fixed_file_clears_the_error_even_with_the_old_prices() -> None:
    path = pricing_file()
    rewrite(path, CHEAP)
    watcher = PriceWatcher(path)
    rewrite(path, CHEAP + "oops\n")
    assert watcher.check() is False and watcher.error is not None
    rewrite(path, CHEAP)
    assert watcher.check() is False  # the prices in force did not change ...
    assert watcher.error is None  # ... but the problem is gone


def test_updates_through_cco_config_are_picked_up() -> None:
    path = pricing_file()
    watcher = PriceWatcher(path)
    update_user_price(path, "claude-new", {"input": "1", "output": "2"})  # written by rename
    assert watcher.check() is True
    assert watcher.book.match("claude-new-20260101") == watcher.book.models["claude-new"]


def test_a_bad_file_at_start_up_is_reported_and_bundled_prices_are_used() -> None:
    path = pricing_file()
    rewrite(path, f'[models."{OPUS}"]\ninput = "cheap"\noutput = 1.0\n')
    watcher = PriceWatcher(path)
    assert watcher.book is bundled()
    assert watcher.error == (
        f"{path} line 2: price for '{OPUS}': input must be a number, got 'cheap'; keeping the last good prices"
    )


def test_a_file_that_cannot_be_looked_at_is_told_and_kept_at_the_last_good_prices(tmp_path: Path) -> None:
    """A symlink loop (stat fails with ELOOP, not 'no such file'): said once, never raised."""
    path = tmp_path / "pricing.toml"
    path.symlink_to(path)
    watcher = PriceWatcher(path)
    assert watcher.book == bundled() and watcher.error is not None
    assert watcher.check() is False and watcher.check() is False
