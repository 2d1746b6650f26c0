"""Pricing rules, each checked against a hand-computed cost, through a real DuckDB index.

Every call here is one transcript line in its own file (so its session names it), read by the real
parser and store, priced by `apply_prices` and read back from the `priced_calls` view, the one
definition every total uses. Rates are USD per million tokens; the arithmetic is in the comments.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, time, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import FIXTURES, write_tree

from indexer.errors import BadInput
from indexer.ingest import sync
from indexer.pricing import (
    PriceBook,
    apply_prices,
    bundled,
    cost_expr,
    dump_user,
    load_book,
    parse_book,
    prices_current,
    reset_user_price,
    update_user_price,
)
from indexer.status import index_status
from indexer.store import Index
from schemas.pricing import ModelPrice, Rates

_ids = count(1)


def call_line(
    model: str,
    *,
    input: int = 0,
    output: int = 0,
    cache_5m: int = 0,
    cache_1h: int = 0,
    cache_read: int = 0,
    web: int = 0,
    speed: str | None = None,
    cost_usd: float | None = None,
    failed: bool = False,
    ts: str = "2026-01-01T00:00:00.000Z",
) -> str:
    """One assistant line as Claude Code writes it (only the fields cost depends on)."""
    n = next(_ids)
    usage: dict[str, Any] = {
        "input_tokens": input,
        "output_tokens": output,
        "cache_creation_input_tokens": cache_5m + cache_1h,
        "cache_read_input_tokens": cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": cache_5m, "ephemeral_1h_input_tokens": cache_1h},
        "server_tool_use": {"web_search_requests": web},
    }
    if speed is not None:
        usage["speed"] = speed
    obj: dict[str, Any] = {
        "type": "assistant",
        "uuid": f"00000000-0000-0000-0000-{n:012d}",
        "timestamp": ts,
        "requestId": f"req_{n}",
        "cwd": "/work/demo",
        "isSidechain": False,
        "message": {"id": f"msg_{n}", "model": model, "role": "assistant", "usage": usage},
    }
    if cost_usd is not None:
        obj["costUSD"] = cost_usd
    if failed:
        obj["isApiErrorMessage"] = True
    return orjson.dumps(obj).decode()


Build = Callable[..., Index]


@pytest.fixture
def build(tmp_path: Path) -> Any:
    """Index named calls: build(book=None, name=line, ...) -> an open Index with prices applied."""
    opened: list[Index] = []

    def _build(book: PriceBook | None = None, **calls: str) -> Index:
        root = write_tree(tmp_path / "claude", {f"demo/{name}.jsonl": line + "\n" for name, line in calls.items()})
        index = Index(tmp_path / "index.duckdb")
        opened.append(index)
        sync(index, [root / "projects"])
        apply_prices(index.con, book or bundled())
        return index

    yield _build
    for index in opened:
        index.close()


def costs(index: Index, column: str = "cost_calculated") -> dict[str, float]:
    rows = index.con.execute(f"SELECT session, {column} FROM priced_calls").fetchall()
    return {session: value for session, value in rows}


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-12, abs=1e-12)


# --- the cost of one call -----------------------------------------------------------------------


def test_opus_4_1_example_from_the_docs(build: Build) -> None:
    index = build(call=call_line("claude-opus-4-1-20250805", input=5_000, output=2_000))
    # 5,000 x $15 + 2,000 x $75 = 75,000 + 150,000 = 225,000 per million -> $0.225
    assert costs(index) == {"call": approx(0.225)}


def test_one_hour_cache_writes_use_their_own_rate(build: Build) -> None:
    index = build(
        both=call_line("claude-sonnet-4-5-20250929", input=100, output=1_000, cache_5m=10_000, cache_1h=10_000),
        only_1h=call_line("claude-haiku-4-5-20251001", cache_1h=1_000_000),
    )
    # sonnet 4.5: 100 x 3 + 1,000 x 15 + 10,000 x 3.75 (5m) + 10,000 x 6 (1h)
    #   = 300 + 15,000 + 37,500 + 60,000 = 112,800 -> $0.1128 (at the 5m rate it would be $0.0753)
    # haiku 4.5: 1,000,000 1-hour writes x $2 = $2 (not 1.25)
    assert costs(index) == {"both": approx(0.1128), "only_1h": approx(2.0)}
    assert index.con.execute("SELECT sum(cache_creation_tokens) FROM priced_calls").fetchone() == (1_020_000,)


def test_long_context_reprices_every_token_kind(build: Build) -> None:
    model = "claude-sonnet-4-5-20250929"
    index = build(
        # context = 150,000 + 10,001 + 40,000 = 200,001 > 200,000: the whole call at long-context rates
        over=call_line(model, input=150_000, output=2_000, cache_5m=10_001, cache_read=40_000),
        # context = 150,000 + 10,000 + 40,000 = 200,000: not above the line, standard rates
        at=call_line(model, input=150_000, output=2_000, cache_5m=10_000, cache_read=40_000),
        # output does not count towards the context: 199,999 input + 10,000 output stays standard
        output_heavy=call_line(model, input=199_999, output=10_000),
        # 1-hour writes count and are repriced too: 100,000 + 100,001 = 200,001
        with_1h=call_line(model, input=100_000, cache_1h=100_001),
        # a model without long-context rates keeps its rates at any size
        opus=call_line("claude-opus-4-1-20250805", input=300_000),
    )
    assert costs(index) == {
        # 150,000 x 6 + 2,000 x 22.50 + 10,001 x 7.50 + 40,000 x 0.60
        #   = 900,000 + 45,000 + 75,007.5 + 24,000 = 1,044,007.5 -> $1.0440075
        "over": approx(1.0440075),
        # 150,000 x 3 + 2,000 x 15 + 10,000 x 3.75 + 40,000 x 0.30 = 450,000 + 30,000 + 37,500 + 12,000
        #   = 529,500 -> $0.5295
        "at": approx(0.5295),
        # 199,999 x 3 + 10,000 x 15 = 599,997 + 150,000 = 749,997 -> $0.749997
        "output_heavy": approx(0.749997),
        # 100,000 x 6 + 100,001 x 12 = 600,000 + 1,200,012 = 1,800,012 -> $1.800012
        "with_1h": approx(1.800012),
        # 300,000 x 15 = 4,500,000 -> $4.5
        "opus": approx(4.5),
    }
    flags = dict(index.con.execute("SELECT session, long_context FROM priced_calls").fetchall())
    assert flags == {"over": True, "at": False, "output_heavy": False, "with_1h": True, "opus": False}


def test_web_search_costs_ten_dollars_per_thousand(build: Build) -> None:
    index = build(
        # 1,000 x 1 + 100 x 5 = 1,500 -> $0.0015, plus 3 searches x $0.01 = $0.03 -> $0.0315
        searches=call_line("claude-haiku-4-5-20251001", input=1_000, output=100, web=3),
        # searches alone: 1,000 x $0.01 = $10
        only=call_line("claude-sonnet-4-6", web=1_000),
    )
    assert costs(index) == {"searches": approx(0.0315), "only": approx(10.0)}


def test_fast_mode_multiplies_the_whole_call(build: Build) -> None:
    index = build(
        # opus 4.6: (1,000 x 5 + 1,000 x 25) = 30,000 -> $0.03, fast x6 -> $0.18
        fast_4_6=call_line("claude-opus-4-6", input=1_000, output=1_000, speed="fast"),
        # the same call at normal speed: $0.03
        normal_4_6=call_line("claude-opus-4-6", input=1_000, output=1_000, speed="standard"),
        # opus 4.8: $0.03 x 2 -> $0.06
        fast_4_8=call_line("claude-opus-4-8", input=1_000, output=1_000, speed="fast"),
        # a web search in fast mode: $0.01 x 6 -> $0.06
        fast_web=call_line("claude-opus-4-7", web=1, speed="fast"),
        # sonnet 4.6 has multiplier 1: (1,000 x 3 + 1,000 x 15) = 18,000 -> $0.018
        fast_sonnet=call_line("claude-sonnet-4-6", input=1_000, output=1_000, speed="fast"),
    )
    assert costs(index) == {
        "fast_4_6": approx(0.18),
        "normal_4_6": approx(0.03),
        "fast_4_8": approx(0.06),
        "fast_web": approx(0.06),
        "fast_sonnet": approx(0.018),
    }


def test_would_be_cost_cache_savings_and_hits(build: Build) -> None:
    model = "claude-sonnet-4-5-20250929"
    index = build(
        reads=call_line(model, input=100, output=500, cache_read=100_000),
        writes=call_line(model, input=100, cache_1h=10_000),
        long=call_line(model, input=150_000, output=2_000, cache_5m=10_001, cache_read=40_000),
    )
    rows = index.con.execute(
        "SELECT session, cost_calculated, would_be_cost, cache_savings, cache_hit FROM priced_calls"
    ).fetchall()
    got = {r[0]: r[1:] for r in rows}
    # reads: cost 100 x 3 + 500 x 15 + 100,000 x 0.30 = 300 + 7,500 + 30,000 = 37,800 -> $0.0378
    #        would be (100 + 100,000) x 3 + 500 x 15 = 300,300 + 7,500 = 307,800 -> $0.3078; saved $0.27
    assert got["reads"] == (approx(0.0378), approx(0.3078), approx(0.27), True)
    # writes: cost 100 x 3 + 10,000 x 6 = 60,300 -> $0.0603; would be 10,100 x 3 = 30,300 -> $0.0303:
    #         1-hour writes cost more than plain input, so the "savings" are -$0.03
    assert got["writes"] == (approx(0.0603), approx(0.0303), approx(-0.03), False)
    # long context: would be (150,000 + 10,001 + 40,000) x 6 + 2,000 x 22.50 = 1,200,006 + 45,000
    #   = 1,245,006 -> $1.245006; cost $1.0440075 (above); saved $0.2009985
    assert got["long"] == (approx(1.0440075), approx(1.245006), approx(0.2009985), True)


def test_failed_and_synthetic_calls_cost_nothing(build: Build) -> None:
    index = build(
        failed=call_line("claude-opus-4-1-20250805", input=5_000, output=2_000, cost_usd=0.5, failed=True),
        synthetic_error=call_line("<synthetic>", failed=True),
        synthetic_notice=call_line("<synthetic>", input=10, output=10),  # not a call: never counted
        ok=call_line("claude-opus-4-1-20250805", input=5_000, output=2_000),
    )
    for mode in ("auto", "calculate", "display"):
        got = dict(index.con.execute(f"SELECT session, {cost_expr(mode)} FROM priced_calls").fetchall())
        assert got["failed"] == 0.0 and got["synthetic_error"] == 0.0
        assert "synthetic_notice" not in got
    assert costs(index, "would_be_cost")["failed"] == 0.0
    status = index_status(index, bundled())
    assert status.total_cost == approx(0.225)  # only the successful call: 0.075 + 0.15
    assert status.unpriced_models == {}  # <synthetic> is free, not unpriced


def test_cost_modes_auto_calculate_display(build: Build) -> None:
    model = "claude-sonnet-4-5-20250929"
    index = build(
        # calculated: 1,000 x 3 + 1,000 x 15 = 18,000 -> $0.018; the line says $0.5
        with_cost=call_line(model, input=1_000, output=1_000, cost_usd=0.5),
        without=call_line(model, input=1_000, output=1_000),
    )

    def by_mode(mode: str) -> dict[str, float]:
        return dict(index.con.execute(f"SELECT session, {cost_expr(mode)} FROM priced_calls").fetchall())

    assert by_mode("auto") == {"with_cost": approx(0.5), "without": approx(0.018)}
    assert by_mode("calculate") == {"with_cost": approx(0.018), "without": approx(0.018)}
    assert by_mode("display") == {"with_cost": approx(0.5), "without": 0.0}
    # totals: auto 0.5 + 0.018, calculate 0.018 x 2, display 0.5 + 0
    assert index_status(index, bundled(), "auto").total_cost == approx(0.518)
    assert index_status(index, bundled(), "calculate").total_cost == approx(0.036)
    assert index_status(index, bundled(), "display").total_cost == approx(0.5)
    with pytest.raises(BadInput, match="cost mode must be one of auto, calculate, display, got 'estimate'"):
        cost_expr("estimate")


def test_unknown_models_cost_nothing_and_are_listed(build: Build) -> None:
    index = build(
        a=call_line("gpt-4o", input=1_000, output=1_000),
        b=call_line("gpt-4o", input=5, output=5),
        c=call_line("claude-sonnet-4-60", input=1_000),  # not claude-sonnet-4-6: a digit follows
        d=call_line("claude-sonnet-4-60", failed=True),  # failed calls are not listed
        e=call_line("claude-opus-4-1-20250805", input=5_000, output=2_000),
    )
    assert costs(index) == {"a": 0.0, "b": 0.0, "c": 0.0, "d": 0.0, "e": approx(0.225)}
    status = index_status(index, bundled())
    assert status.unpriced_models == {"claude-sonnet-4-60": 1, "gpt-4o": 2}
    assert status.total_cost == approx(0.225)


def test_an_unpriced_model_takes_its_tier_from_its_id(build: Build) -> None:
    index = build(
        o=call_line("claude-opus-9-20300101"),
        s=call_line("us.anthropic.claude-sonnet-7-v2:0"),
        h=call_line("claude-Haiku-6"),
        x=call_line("gpt-4o"),
    )
    tiers = dict(index.con.execute("SELECT session, tier FROM priced_calls WHERE NOT priced").fetchall())
    assert tiers == {"o": "opus", "s": "sonnet", "h": "haiku", "x": "other"}


# --- matching model ids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seen", "priced_as"),
    [
        ("claude-opus-4-1-20250805", "claude-opus-4-1-20250805"),  # exact
        ("anthropic/claude-opus-4-1-20250805", "claude-opus-4-1-20250805"),  # provider prefix
        ("anthropic.claude-opus-4-1-20250805", "claude-opus-4-1-20250805"),
        ("claude-opus-4-1", "claude-opus-4-1-20250805"),  # the known id without its date
        ("claude-opus-4", "claude-opus-4-20250514"),
        ("claude-opus-4-1@20250805", "claude-opus-4-1-20250805"),  # Vertex's date form
        ("claude-opus-4-6-20260301", "claude-opus-4-6"),  # a dated form of an undated id
        ("anthropic/claude-sonnet-4-6-20260301", "claude-sonnet-4-6"),
        ("claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929"),  # known id as a prefix
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929"),  # Bedrock
        ("claude-sonnet-5-preview", "claude-sonnet-5"),
        ("claude-sonnet-4-60", None),  # a prefix followed by a digit is another model
        ("claude-haiku-5-5", None),  # ... or by another version number (not claude-haiku-5...)
        ("claude-sonnet-5-6-20261001", None),
        ("claude-fable-5-2", None),
        ("claude-opus-4-0", "claude-opus-4-20250514"),  # the aliases' spellings
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet-20241022"),
        ("claude-opus-4-6[1m]", "claude-opus-4-6"),
        ("claude-opus-4-9", None),
        ("gpt-4o", None),
        ("unknown", None),
    ],
)
def test_matching(seen: str, priced_as: str | None) -> None:
    price = bundled().match(seen)
    assert (price.model if price else None) == priced_as


def _price(model: str, rate: float) -> ModelPrice:
    return ModelPrice(model, Rates(rate, rate, rate, rate, rate))


def test_matching_prefers_the_longest_prefix_and_the_latest_date() -> None:
    book = PriceBook({m: _price(m, 1.0) for m in ("claude-x", "claude-x-big", "m-20240101", "m-20250101")})
    assert book.match("claude-x-big-preview") == book.models["claude-x-big"]
    assert book.match("claude-x-preview") == book.models["claude-x"]
    assert book.match("claude-x-2") is None  # another version, not claude-x
    assert book.match("m") == book.models["m-20250101"]


def test_matched_ids_are_priced_in_the_index(build: Build) -> None:
    index = build(
        # 5,000 x 15 + 2,000 x 75 -> $0.225, whatever the spelling
        prefixed=call_line("anthropic/claude-opus-4-1-20250805", input=5_000, output=2_000),
        undated=call_line("claude-opus-4-1", input=5_000, output=2_000),
        bedrock=call_line("anthropic.claude-opus-4-1-20250805-v1:0", input=5_000, output=2_000),
    )
    assert costs(index) == {"prefixed": approx(0.225), "undated": approx(0.225), "bedrock": approx(0.225)}
    rows = index.con.execute("SELECT DISTINCT matched, tier FROM prices").fetchall()
    assert rows == [("claude-opus-4-1-20250805", "opus")]


# --- prices are data: a change applies to all history ------------------------------------------


def test_a_price_change_applies_to_history(build: Build) -> None:
    index = build(call=call_line("claude-opus-4-1-20250805", input=5_000, output=2_000))
    assert costs(index) == {"call": approx(0.225)}
    cheaper = replace(bundled().models["claude-opus-4-1-20250805"], rates=Rates(1.0, 2.0, 0.0, 0.0, 0.0))
    book = PriceBook({**bundled().models, cheaper.model: cheaper})
    # only models already in `prices` are compared (no full re-listing), yet the change applies
    assert apply_prices(index.con, book, all_models=False) is True
    # 5,000 x 1 + 2,000 x 2 = 9,000 -> $0.009
    assert costs(index) == {"call": approx(0.009)}
    assert index_status(index, book).total_cost == approx(0.009)
    assert apply_prices(index.con, book) is False  # nothing left to change
    assert apply_prices(index.con, bundled()) is True
    assert costs(index) == {"call": approx(0.225)}


# --- price files --------------------------------------------------------------------------------

BAD_FILES = sorted((FIXTURES / "pricing" / "bad").glob("*.toml"))


@pytest.mark.parametrize("path", BAD_FILES, ids=[p.stem for p in BAD_FILES])
def test_bad_price_files_name_the_line_and_the_problem(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(BadInput) as exc:
        load_book(path)
    assert str(exc.value) == f"{path} {expected}"


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pricing.toml"
    path.write_bytes(b'[models."x"]\ninput = 1.0\noutput = 2.0 # \xff\n')
    with pytest.raises(BadInput, match=r"line 3: not valid UTF-8"):
        load_book(path)


def test_user_prices_override_and_add(tmp_path: Path, build: Build) -> None:
    book = load_book(FIXTURES / "pricing" / "user_pricing.toml")
    private = book.models["claude-private-1"]
    # absent cache rates follow the input rate: 5m x1.25, 1h x2, read x0.1
    assert private.rates == Rates(2.0, 8.0, 2.5, 4.0, 0.2)
    assert (private.source, private.tier) == ("user", "sonnet")
    assert book.models["claude-opus-4-1-20250805"].source == "user"
    assert book.models["claude-sonnet-4-6"].source == "bundled"
    index = build(
        book,
        # 5,000 x 10 + 2,000 x 50 = 150,000 -> $0.15 (the bundled price would give $0.225)
        opus=call_line("claude-opus-4-1-20250805", input=5_000, output=2_000),
        # 1,000 x 2 + 1,000 x 8 + 1,000 x 2.5 (5m at 1.25 x 2) = 12,500 -> $0.0125; plus 2 searches at
        # the user's $20 per 1,000 = $0.04 -> $0.0525
        private=call_line("claude-private-1", input=1_000, output=1_000, cache_5m=1_000, web=2),
    )
    assert costs(index) == {"opus": approx(0.15), "private": approx(0.0525)}
    assert dict(index.con.execute("SELECT model, tier FROM prices").fetchall())["claude-private-1"] == "sonnet"


def test_no_user_file_means_bundled_prices(tmp_path: Path) -> None:
    assert load_book(tmp_path / "missing.toml") is bundled()
    assert load_book(None) is bundled()


def test_bundled_prices_match_the_issue_table() -> None:
    models = bundled().models
    # (input, output, 5m, 1h, read), long-context rates or None, fast multiplier
    table: dict[str, tuple[tuple[float, ...], tuple[float, ...] | None, float]] = {
        "claude-3-5-haiku-20241022": ((0.80, 4, 1.00, 1.60, 0.08), None, 1),
        "claude-3-5-sonnet-20241022": ((3, 15, 3.75, 6, 0.30), None, 1),
        "claude-3-7-sonnet-20250219": ((3, 15, 3.75, 6, 0.30), None, 1),
        "claude-sonnet-4-20250514": ((3, 15, 3.75, 6, 0.30), (6, 22.50, 7.50, 12, 0.60), 1),
        "claude-sonnet-4-5-20250929": ((3, 15, 3.75, 6, 0.30), (6, 22.50, 7.50, 12, 0.60), 1),
        "claude-sonnet-4-6": ((3, 15, 3.75, 6, 0.30), None, 1),
        "claude-opus-4-20250514": ((15, 75, 18.75, 30, 1.50), None, 1),
        "claude-opus-4-1-20250805": ((15, 75, 18.75, 30, 1.50), None, 1),
        "claude-opus-4-5-20251101": ((5, 25, 6.25, 10, 0.50), None, 1),
        "claude-opus-4-6": ((5, 25, 6.25, 10, 0.50), None, 6),
        "claude-opus-4-7": ((5, 25, 6.25, 10, 0.50), None, 6),
        "claude-opus-4-8": ((5, 25, 6.25, 10, 0.50), None, 2),
        "claude-haiku-4-5-20251001": ((1, 5, 1.25, 2, 0.10), None, 1),
        "claude-sonnet-5": ((2, 10, 2.50, 4, 0.20), None, 1),
        "claude-fable-5": ((10, 50, 12.50, 20, 1.00), None, 1),
        # added later, from Anthropic's pricing page and model overview (see the file's comments)
        "claude-opus-5": ((5, 25, 6.25, 10, 0.50), None, 1),
        "claude-fable-5-1": ((10, 50, 12.50, 20, 0.25), None, 1),
        "claude-mythos-5": ((10, 50, 12.50, 20, 1.00), None, 1),
        "claude-mythos-5-1": ((10, 50, 12.50, 20, 0.25), None, 1),
        "claude-3-opus-20240229": ((15, 75, 18.75, 30, 1.50), None, 1),
        "claude-3-haiku-20240307": ((0.25, 1.25, 0.30, 0.50, 0.03), None, 1),
        "claude-opus-5-5": ((4, 20, 5, 8, 0.20), None, 1),
        "claude-sonnet-5-5": ((2, 10, 2.50, 4, 0.10), None, 1),
    }
    assert set(models) == set(table)
    for model, (rates, long_context, fast) in table.items():
        price = models[model]
        assert price.rates == Rates(*map(float, rates)), model
        assert price.long_context == (Rates(*map(float, long_context)) if long_context else None), model
        assert price.fast_multiplier == fast, model
    assert bundled().web_search_per_1000 == 10.0


# --- editing the user's file --------------------------------------------------------------------


def test_update_writes_a_file_that_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "pricing.toml"
    odd = 'vendor.model "quoted" \\ id'
    update_user_price(path, odd, {"input": "1.5", "output": 6, "tier": "haiku"})
    update_user_price(path, "claude-sonnet-4-6", {"cache_read": "0.25", "fast_multiplier": "1.5"})
    book = load_book(path)
    assert book.models[odd].rates == Rates(1.5, 6.0, 1.875, 3.0, 0.15)
    assert book.models[odd].tier == "haiku"
    # a bundled model keeps every rate not given
    assert book.models["claude-sonnet-4-6"].rates == Rates(3.0, 15.0, 3.75, 6.0, 0.25)
    assert book.models["claude-sonnet-4-6"].fast_multiplier == 1.5
    # a second update keeps the user's earlier values
    update_user_price(path, odd, {"output": "7"})
    assert load_book(path).models[odd].rates == Rates(1.5, 7.0, 1.875, 3.0, 0.15)
    assert [p.name for p in path.parent.iterdir()] == ["pricing.toml"]  # no temporary file left


def test_update_keeps_long_context_rates_of_a_bundled_model(tmp_path: Path) -> None:
    path = tmp_path / "pricing.toml"
    update_user_price(path, "claude-sonnet-4-5-20250929", {"input": "4"})
    price = load_book(path).models["claude-sonnet-4-5-20250929"]
    assert price.rates.input == 4.0 and price.rates.cache_write_5m == 3.75
    assert price.long_context == Rates(6.0, 22.5, 7.5, 12.0, 0.6)


@pytest.mark.parametrize(
    ("model", "values", "message"),
    [
        ("claude-x", {"input": "1"}, "'claude-x' has no price yet: --output is required"),
        ("claude-x", {}, "'claude-x' has no price yet: --input and --output are required"),
        ("claude-x", {"input": "-1", "output": "2"}, "--input must not be negative, got '-1'"),
        ("claude-x", {"input": "nan", "output": "2"}, "--input must be a finite number, got 'nan'"),
        ("claude-x", {"input": "1", "output": "inf"}, "--output must be a finite number, got 'inf'"),
        ("claude-x", {"input": "one", "output": "2"}, "--input must be a number, got 'one'"),
        ("claude-x", {"input": "1", "output": "2", "cache_read": ""}, "--cache-read must be a number, got ''"),
        ("claude-x", {"input": "1", "output": "2", "tier": "gpt"}, "--tier must be one of opus, sonnet, haiku"),
        ("claude-x", {"input": "1", "output": "2", "long_context_output": "3"}, "long_context_input is required"),
        ("claude-opus-4-6", {"fast_multiplier": "-6"}, "--fast-multiplier must not be negative"),
        (" ", {"input": "1", "output": "2"}, "the model id must not be empty"),
        ("claude-opus-4-6", {}, "nothing to change for 'claude-opus-4-6': give at least one price, e.g. --input"),
        ("claude-keep", {}, "nothing to change for 'claude-keep'"),
    ],
)
def test_bad_updates_leave_the_file_untouched(tmp_path: Path, model: str, values: dict[str, str], message: str) -> None:
    path = tmp_path / "pricing.toml"
    update_user_price(path, "claude-keep", {"input": "1", "output": "2"})
    before = path.read_bytes(), os.stat(path).st_ino
    with pytest.raises(BadInput) as exc:
        update_user_price(path, model, values)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)
    assert (path.read_bytes(), os.stat(path).st_ino) == before


def test_update_refuses_to_rewrite_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "pricing.toml"
    path.write_text('[models."a"]\ninput = 1.0\noutput = -1.0\n')
    with pytest.raises(BadInput, match="line 3: price for 'a': output must not be negative"):
        update_user_price(path, "b", {"input": "1", "output": "1"})
    assert path.read_text() == '[models."a"]\ninput = 1.0\noutput = -1.0\n'


def test_reset(tmp_path: Path) -> None:
    path = tmp_path / "pricing.toml"
    update_user_price(path, "claude-opus-4-6", {"input": "1"})
    update_user_price(path, "claude-new", {"input": "1", "output": "2"})
    assert reset_user_price(path, "claude-opus-4-6") == ["claude-opus-4-6"]
    book = load_book(path)
    assert book.models["claude-opus-4-6"].source == "bundled" and "claude-new" in book.models
    with pytest.raises(BadInput, match="no user price for 'claude-opus-4-6'"):
        reset_user_price(path, "claude-opus-4-6")
    assert reset_user_price(path) == ["claude-new"]
    assert not path.exists()
    assert reset_user_price(path) == []
    path.write_text("not toml [")  # a broken file can always be reset away
    assert reset_user_price(path) == []
    assert not path.exists()


def test_dump_user_writes_valid_toml_for_any_float() -> None:
    table = {"input": 1e-7, "output": 1e21, "cache_read": 0.0, "tier": "other"}
    data = tomllib.loads(dump_user({"m": table}, 12.5))
    assert data == {"web_search_per_1000": 12.5, "models": {"m": table}}


# --- the SQL against a plain reading of the rules -----------------------------------------------


def reference_cost(book: PriceBook, row: dict[str, Any]) -> tuple[float, float, bool]:
    """(cost, would-be cost, long context) of one call, written as the issue states the rules."""
    price = book.match(row["model"])
    if price is None or row["model"] == "<synthetic>":
        return 0.0, 0.0, False
    # the rates in force at the call's time (UTC): the first earlier entry whose day is still ahead
    then = next((e for e in price.earlier if row["ts"] < datetime.combine(e.until, time())), None)
    rates, lc, fast = (then.rates, then.long_context, then.fast_multiplier) if then else (
        price.rates, price.long_context, price.fast_multiplier
    )  # fmt: skip
    context = row["input_tokens"] + row["cache_5m_tokens"] + row["cache_1h_tokens"] + row["cache_read_tokens"]
    long_context = lc is not None and context > 200_000  # a fact about the call, failed or not
    if row["failed"]:
        return 0.0, 0.0, long_context
    r = lc if long_context and lc else rates
    mult = fast if row["fast"] else 1.0
    web = row["web_searches"] * book.web_search_per_1000 / 1000
    tokens = (
        row["input_tokens"] * r.input
        + row["output_tokens"] * r.output
        + row["cache_5m_tokens"] * r.cache_write_5m
        + row["cache_1h_tokens"] * r.cache_write_1h
        + row["cache_read_tokens"] * r.cache_read
    )
    would_be = (context * r.input + row["output_tokens"] * r.output) / 1e6
    return (tokens / 1e6 + web) * mult, (would_be + web) * mult, long_context


TOKEN_COLUMNS = (
    "input_tokens", "output_tokens", "cache_5m_tokens", "cache_1h_tokens", "cache_read_tokens", "web_searches",
)  # fmt: skip


def test_the_view_agrees_with_the_rules_on_random_calls(tmp_path: Path) -> None:
    import random

    rnd = random.Random(20260101)
    book = _book(EARLIER)  # the bundled prices and `m`, whose earlier entries change its long-context rates too
    models = [*bundled().models, "anthropic/claude-sonnet-4-5-20250929", "claude-opus-4-1", "gpt-4o", "<synthetic>"]
    models += ["claude-sonnet-4-5-20250929", "claude-sonnet-4-20250514"] * 3  # the models with long-context rates
    models += ["m", "claude-sonnet-5-5"] * 3  # models with earlier prices
    days = [datetime(2025, 12, 31), datetime(2026, 1, 1), datetime(2026, 2, 1), datetime(2026, 10, 7)]
    rows = []
    for key in range(800):
        near = rnd.random() < 0.5  # half of the calls sit around the 200k line
        ts = rnd.choice(days) + timedelta(milliseconds=rnd.choice([-1, 0, 1, rnd.randint(-(10**10), 10**10)]))
        rows.append(
            {
                "key": key,
                "ts": ts,
                "model": rnd.choice(models),
                "failed": rnd.random() < 0.05,
                "input_tokens": rnd.randint(0, 120_000 if near else 5_000),
                "output_tokens": rnd.randint(0, 30_000),
                "cache_5m_tokens": rnd.randint(0, 60_000 if near else 5_000),
                "cache_1h_tokens": rnd.choice([0, rnd.randint(0, 40_000)]),
                "cache_read_tokens": rnd.randint(0, 90_000 if near else 5_000),
                "web_searches": rnd.choice([0, 0, 0, rnd.randint(1, 5)]),
                "fast": rnd.random() < 0.2,
                "cost_usd": rnd.choice([None, None, round(rnd.random(), 4)]),
            }
        )
    with Index(tmp_path / "index.duckdb") as index:
        con = index.con
        con.executemany(
            "INSERT INTO calls VALUES (?, 0, ?, ?, 's', 'p', NULL, NULL, NULL, false, ?, false, "
            "?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
            [[r[name] for name in ("key", "ts", "model", "failed", *TOKEN_COLUMNS, "fast", "cost_usd")] for r in rows],
        )
        apply_prices(con, book)
        got = {
            k: rest
            for k, *rest in con.execute(
                f"SELECT key, cost_calculated, would_be_cost, cache_savings, long_context, {cost_expr('auto')}, "
                f"{cost_expr('display')} FROM priced_calls"
            ).fetchall()
        }
        assert len(got) == len(rows)
        # the sample reaches every rule: long context, fast models, web searches, failures, costUSD, unpriced
        assert sum(1 for v in got.values() if v[3]) >= 10
        assert any(r["fast"] and r["model"] == "claude-opus-4-6" and not r["failed"] for r in rows)
        assert any(r["web_searches"] for r in rows) and any(r["failed"] for r in rows)
        assert any(r["cost_usd"] is not None for r in rows) and any(r["model"] == "gpt-4o" for r in rows)
        # ... and every span of the models with earlier prices, on both sides of each day
        assert {(r["model"], r["ts"] < d) for r in rows for d in days if r["model"] in ("m", "claude-sonnet-5-5")} >= {
            (m, side) for m in ("m", "claude-sonnet-5-5") for side in (True, False)
        }
        for r in rows:
            cost, would_be, long_context = reference_cost(book, r)
            auto = 0.0 if r["failed"] else (r["cost_usd"] if r["cost_usd"] is not None else cost)
            display = 0.0 if r["failed"] else (r["cost_usd"] or 0.0)
            expected = [approx(cost), approx(would_be), approx(would_be - cost), long_context, approx(auto)]
            assert got[r["key"]] == [*expected, approx(display)], r


# --- earlier prices: a call is priced at the rates of its time ----------------------------------


def test_sonnet_5_5_cache_reads_cost_what_they_did_that_day(build: Build) -> None:
    index = build(
        before=call_line("claude-sonnet-5-5", input=1_000, cache_read=1_000_000, ts="2026-10-06T23:59:59.999Z"),
        after=call_line("claude-sonnet-5-5", input=1_000, cache_read=1_000_000, ts="2026-10-07T00:00:00.000Z"),
    )
    # 1,000 x $2 + 1,000,000 x $0.20 (before the cut) or $0.10 (from 2026-10-07, UTC), per million
    assert costs(index) == {"before": approx(0.202), "after": approx(0.102)}


EARLIER = """
[models."m"]
input = 1.0
output = 2.0

[[models."m".earlier]]
until = 2026-02-01
input = 3.0
long_context_input = 6.0
long_context_output = 9.0

[[models."m".earlier]]
until = "2026-01-01"
output = 5.0
"""


def _book(text: str) -> PriceBook:
    models, web = parse_book(tomllib.loads(text), "user")
    return PriceBook({**bundled().models, **models}, web or 10.0)


def test_earlier_entries_take_the_current_keys_they_do_not_set(build: Build) -> None:
    index = build(
        _book(EARLIER),
        # until 2026-01-01: input $1 (current), output $5 -> 1,000 x 1 + 1,000 x 5 = $0.006
        a=call_line("m", input=1_000, output=1_000, ts="2025-12-31T12:00:00.000Z"),
        # until 2026-02-01: input $3, output $2 (current) -> $0.005
        b=call_line("m", input=1_000, output=1_000, ts="2026-01-15T00:00:00.000Z"),
        # same span above 200k: the whole call at $6 / $9 -> 300,000 x 6 + 1,000 x 9 = $1.809
        c=call_line("m", input=300_000, output=1_000, ts="2026-01-20T00:00:00.000Z"),
        # from 2026-02-01, the current price, which has no long-context rates -> 0.3 + 0.002 = $0.302
        d=call_line("m", input=300_000, output=1_000, ts="2026-02-01T00:00:00.000Z"),
    )
    assert costs(index) == {"a": approx(0.006), "b": approx(0.005), "c": approx(1.809), "d": approx(0.302)}
    spans = index.con.execute("SELECT since, until, p_in, p_out FROM price_periods ORDER BY until").fetchall()
    assert [(str(s), str(u), i, o) for s, u, i, o in spans] == [
        ("None", "2026-01-01 00:00:00", 1.0, 5.0),
        ("2026-01-01 00:00:00", "2026-02-01 00:00:00", 3.0, 2.0),
    ]


def test_a_change_to_earlier_prices_reaches_every_total(build: Build) -> None:
    index = build(old=call_line("claude-sonnet-5-5", cache_read=1_000_000, ts="2026-09-01T00:00:00.000Z"))
    assert costs(index) == {"old": approx(0.20)}
    flat = _book('[models."claude-sonnet-5-5"]\ninput = 2.0\noutput = 10.0\ncache_read = 0.10\n')
    assert not prices_current(index.con, flat)
    assert apply_prices(index.con, flat)
    assert costs(index) == {"old": approx(0.10)}
    assert index.con.execute("SELECT count(*) FROM price_periods").fetchone() == (0,)
    assert prices_current(index.con, flat) and not apply_prices(index.con, flat)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("until = 2026-10-07\nspeed = 1", "earlier: unknown key 'speed'"),
        ("cache_read = 0.2", "until must be a day"),
        ("until = 2026-10-07T00:00:00Z\ncache_read = 0.2", "until must be a day"),
        ("until = 'October'", "until must be a day"),
        ("until = 2026-10-07\ncache_read = -1", "cache_read must not be negative"),
    ],
)
def test_bad_earlier_entries_are_refused(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "pricing.toml"
    path.write_text(f'[models."m"]\ninput = 1.0\noutput = 2.0\n\n[[models."m".earlier]]\n{entry}\n')
    with pytest.raises(BadInput, match=message) as info:
        load_book(path)
    assert re.search(r"pricing.toml line \d+: price for 'm': ", str(info.value))  # where to look


def test_two_earlier_entries_for_one_day_are_refused() -> None:
    twice = '[models."m"]\ninput = 1.0\noutput = 2.0\n' + '[[models."m".earlier]]\nuntil = 2026-01-01\n' * 2
    with pytest.raises(BadInput, match="two entries until 2026-01-01"):
        _book(twice)
    with pytest.raises(BadInput, match="earlier must be a list of tables"):
        _book('[models."m"]\ninput = 1.0\noutput = 2.0\nearlier = 3\n')


def test_updating_a_model_keeps_what_it_cost_before(tmp_path: Path) -> None:
    """A user price for a bundled model changes today's rates; the earlier entries come along."""
    path = tmp_path / "pricing.toml"
    update_user_price(path, "claude-sonnet-5-5", {"input": "2.5"})
    price = load_book(path).models["claude-sonnet-5-5"]
    assert price.source == "user" and price.rates.input == 2.5
    assert price.earlier == bundled().models["claude-sonnet-5-5"].earlier  # input 2.0, cache reads 0.20
    assert '[[models."claude-sonnet-5-5".earlier]]\nuntil = 2026-10-07\n' in path.read_text()
