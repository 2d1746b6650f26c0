"""Prices as data: a bundled price list, user overrides, model matching and cost in SQL.

The idea: cost is never stored per call. A small `prices` table holds one row per model id seen
in the index (matched to a price by the rules below) and the `priced_calls` view computes each
call's cost from it at query time. A price change rewrites a few rows, and every total, over all
history, reflects it at the next query. Cost is linear in tokens within one rate set, so
aggregates stay exact.

Matching a model id: exact; then without a date suffix or a provider prefix (`anthropic/`,
`anthropic.`); then the longest known id that is a prefix of it. No match: cost 0, listed as
unpriced, never silently.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from indexer.errors import BadInput
from schemas.pricing import COST_MODES, RATE_FIELDS, REQUIRED_FIELDS, TIERS, ModelPrice, Rates

LONG_CONTEXT_TOKENS = 200_000
DEFAULT_WEB_SEARCH_PER_1000 = 10.0
_DATE_SUFFIX = re.compile(r"-\d{8}$")
_PROVIDER_PREFIX = re.compile(r"^(anthropic[/.])")
_OPTIONAL = {"cache_write_5m": 1.25, "cache_write_1h": 2.0, "cache_read": 0.1}  # x input when absent


@dataclass(frozen=True)
class PriceBook:
    models: dict[str, ModelPrice]
    web_search_per_1000: float = DEFAULT_WEB_SEARCH_PER_1000
    errors: list[str] = field(default_factory=list)

    def match(self, model: str) -> ModelPrice | None:
        """The price for a model id as transcripts spell it, by the matching rules above."""
        if model in self.models:
            return self.models[model]
        bare = _PROVIDER_PREFIX.sub("", model)
        undated = _DATE_SUFFIX.sub("", bare)
        for known, price in self.models.items():
            if _DATE_SUFFIX.sub("", known) in (bare, undated):
                return price
        prefixes = [k for k in self.models if bare.startswith(k) or undated.startswith(k)]
        return self.models[max(prefixes, key=len)] if prefixes else None


def tier_of(model: str) -> str:
    low = model.lower()
    for tier in ("opus", "sonnet", "haiku"):
        if tier in low:
            return tier
    return "other"


def _number(table: dict[str, Any], name: str, where: str) -> float | None:
    if name not in table:
        return None
    value = table[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"{where}: {name} must be a number, got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise BadInput(f"{where}: {name} must be a finite number")
    if value < 0:
        raise BadInput(f"{where}: {name} must not be negative")
    return float(value)


def _rates(table: dict[str, Any], prefix: str, where: str, required: bool) -> Rates | None:
    values = {f: _number(table, prefix + f, where) for f in RATE_FIELDS}
    if all(v is None for v in values.values()) and not required:
        return None
    for f in REQUIRED_FIELDS:
        if values[f] is None:
            raise BadInput(f"{where}: {prefix}{f} is required")
    inp = values["input"] or 0.0
    filled = {f: (v if v is not None else inp * _OPTIONAL[f]) for f, v in values.items()}
    return Rates(**filled)


def parse_model(model: str, table: Any, source: str) -> ModelPrice:
    where = f"models.{model!r}"
    if not isinstance(table, dict):
        raise BadInput(f"{where} must be a table")
    known = {*RATE_FIELDS, *(f"long_context_{f}" for f in RATE_FIELDS), "fast_multiplier", "tier"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise BadInput(f"{where}: unknown key {unknown[0]!r}")
    rates = _rates(table, "", where, required=True)
    assert rates is not None
    tier = table.get("tier")
    if tier is not None and tier not in TIERS:
        raise BadInput(f"{where}: tier must be one of {', '.join(TIERS)}")
    fast = _number(table, "fast_multiplier", where)
    return ModelPrice(
        model=model,
        rates=rates,
        long_context=_rates(table, "long_context_", where, required=False),
        fast_multiplier=1.0 if fast is None else fast,
        tier=tier,
        source=source,
    )


def parse_book(data: dict[str, Any], source: str) -> tuple[dict[str, ModelPrice], float | None]:
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise BadInput("models must be a table")
    unknown = sorted(set(data) - {"models", "web_search_per_1000"})
    if unknown:
        raise BadInput(f"unknown key {unknown[0]!r}")
    web = _number(data, "web_search_per_1000", "top level")
    return {m: parse_model(m, t, source) for m, t in models.items()}, web


def _line_of(text: str, needle: str) -> int | None:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    return None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, with errors that name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not valid UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{path}: {exc}") from None


def load_user(path: Path) -> tuple[dict[str, ModelPrice], float | None]:
    """The user's price file (empty when absent); BadInput says which line is wrong."""
    if not path.exists():
        return {}, None
    data = read_toml(path)
    try:
        return parse_book(data, "user")
    except BadInput as exc:
        text = path.read_text(encoding="utf-8")
        model = re.search(r"models\.'([^']*)'", str(exc))
        line = _line_of(text, model.group(1)) if model else None
        raise BadInput(f"{path}{f' line {line}' if line else ''}: {exc}") from None


def bundled() -> PriceBook:
    text = resources.files("indexer").joinpath("data/prices.toml").read_text(encoding="utf-8")
    models, web = parse_book(tomllib.loads(text), "bundled")
    return PriceBook(models, web if web is not None else DEFAULT_WEB_SEARCH_PER_1000)


def load_book(user_path: Path | None) -> PriceBook:
    """Bundled prices overlaid with the user's file; raises BadInput if the user's file is bad."""
    base = bundled()
    if user_path is None:
        return base
    user, web = load_user(user_path)
    return PriceBook({**base.models, **user}, web if web is not None else base.web_search_per_1000)


# --- SQL ----------------------------------------------------------------------------------------

_PRICE_COLUMNS = (
    "model", "matched", "tier", "priced", "fast_mult", "web",
    "p_in", "p_out", "p_w5m", "p_w1h", "p_read", "has_lc", "l_in", "l_out", "l_w5m", "l_w1h", "l_read",
)  # fmt: skip

# Views are code, not data: replaced on every open of the index (see store.Index).
PRICED_VIEW = f"""
CREATE OR REPLACE VIEW priced_calls AS
WITH base AS (
    SELECT c.*,
        coalesce(p.tier, 'other') AS tier,
        coalesce(p.priced, false) AS priced,
        c.cache_5m_tokens + c.cache_1h_tokens AS cache_creation_tokens,
        c.input_tokens + c.output_tokens + c.cache_5m_tokens + c.cache_1h_tokens + c.cache_read_tokens
            AS total_tokens,
        coalesce(p.has_lc AND c.input_tokens + c.cache_5m_tokens + c.cache_1h_tokens + c.cache_read_tokens
            > {LONG_CONTEXT_TOKENS}, false) AS long_context,
        CASE WHEN c.fast THEN p.fast_mult ELSE 1.0 END AS _mult,
        p.web AS _web, p.p_in, p.p_out, p.p_w5m, p.p_w1h, p.p_read, p.l_in, p.l_out, p.l_w5m, p.l_w1h, p.l_read
    FROM calls c LEFT JOIN prices p USING (model)
    WHERE NOT c.replay
)
SELECT * EXCLUDE (_mult, _web, p_in, p_out, p_w5m, p_w1h, p_read, l_in, l_out, l_w5m, l_w1h, l_read),
    CASE WHEN failed OR NOT priced THEN 0.0 ELSE
        ((CASE WHEN long_context
            THEN input_tokens * l_in + output_tokens * l_out + cache_5m_tokens * l_w5m
                 + cache_1h_tokens * l_w1h + cache_read_tokens * l_read
            ELSE input_tokens * p_in + output_tokens * p_out + cache_5m_tokens * p_w5m
                 + cache_1h_tokens * p_w1h + cache_read_tokens * p_read
          END) / 1e6 + web_searches * _web) * _mult
    END AS cost_calculated,
    CASE WHEN failed OR NOT priced THEN 0.0 ELSE
        (((input_tokens + cache_creation_tokens + cache_read_tokens) * CASE WHEN long_context THEN l_in ELSE p_in END
          + output_tokens * CASE WHEN long_context THEN l_out ELSE p_out END) / 1e6 + web_searches * _web) * _mult
    END AS would_be_cost
FROM base
"""


def cost_expr(mode: str) -> str:
    """SQL for a priced_calls row's cost under a cost mode (auto, calculate, display)."""
    if mode not in COST_MODES:
        raise BadInput(f"unknown cost mode {mode!r}; use one of {', '.join(COST_MODES)}")
    return {
        "auto": "CASE WHEN failed THEN 0.0 ELSE coalesce(cost_usd, cost_calculated) END",
        "calculate": "cost_calculated",
        "display": "CASE WHEN failed THEN 0.0 ELSE coalesce(cost_usd, 0.0) END",
    }[mode]


def _price_row(model: str, book: PriceBook) -> tuple[Any, ...]:
    price = book.match(model)
    web = book.web_search_per_1000 / 1000
    if price is None:
        return (model, None, tier_of(model), False, 1.0, web, *([None] * 5), False, *([None] * 5))
    r, lc = price.rates, price.long_context
    lc_vals = (lc.input, lc.output, lc.cache_write_5m, lc.cache_write_1h, lc.cache_read) if lc else (None,) * 5
    return (
        model, price.model, price.tier or tier_of(model), True, price.fast_multiplier, web,
        r.input, r.output, r.cache_write_5m, r.cache_write_1h, r.cache_read, lc is not None, *lc_vals,
    )  # fmt: skip


def apply_prices(con: duckdb.DuckDBPyConnection, book: PriceBook, *, all_models: bool = True) -> None:
    """Make `prices` hold a row for every model in the index (all of them again when all_models)."""
    con.execute("BEGIN TRANSACTION")
    try:
        if all_models:
            con.execute("DELETE FROM prices")
        models = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT model FROM calls WHERE model NOT IN (SELECT model FROM prices)"
            ).fetchall()
        ]
        if models:
            placeholders = ", ".join("?" * len(_PRICE_COLUMNS))
            con.executemany(f"INSERT INTO prices VALUES ({placeholders})", [_price_row(m, book) for m in models])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def unpriced_models(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute(
        "SELECT model, count(*) FROM priced_calls WHERE NOT priced AND NOT failed GROUP BY model ORDER BY model"
    ).fetchall()
    return {m: n for m, n in rows}
