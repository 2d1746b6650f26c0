"""Prices as data: a bundled price list, user overrides, model matching and cost in SQL.

The idea: cost is never stored per call. A small `prices` table holds one row per model id seen
in the index (matched to a price by the rules below) and the `priced_calls` view computes each
call's cost from it at query time. A price change rewrites a few rows, and every total, over all
history, reflects it at the next query. Cost is linear in tokens within one rate set, so
aggregates stay exact.

A price that changed keeps its earlier values (`earlier`: the day until which they held, UTC, and
the rates that differed); each call is priced at the rates in force at its time (`price_periods`
holds the earlier spans beside the one-row-per-model `prices`).

Cost of one call (USD): (input x in + output x out + cache_5m x write_5m + cache_1h x write_1h
+ cache_read x read) / 1e6 + web_searches x web_search_per_1000 / 1000, times the model's fast
multiplier when the call ran in fast mode. A model with long-context rates prices ALL token kinds
of a call at those rates when input + cache creation + cache read > 200,000. Failed calls (API
error notices, model `<synthetic>`) count as calls and cost 0; other `<synthetic>` lines are not
calls, and the model is priced at 0 should one be.

Matching a model id: exact; then without a provider prefix (`anthropic/`, `anthropic.`, Bedrock's
`us.anthropic.`) or a date suffix (`-20250929`, Vertex's `@20250929`; also the aliases' `-latest`
and `-0`: `claude-opus-4-0` is `claude-opus-4-20250514`), in either direction; then the longest
known id that is a prefix of it, unless what follows is another version: a digit
(`claude-sonnet-4-60` is not `claude-sonnet-4-6`) or `-` and a number that is not a date
(`claude-sonnet-5-5` is not `claude-sonnet-5`; `…-20250929-v1:0` is `…-20250929`). No match:
cost 0, listed as unpriced, never silently.

The user's `pricing.toml` has the bundled file's shape; it is validated as a whole (a bad value
is an error naming its line) and rewritten whole and atomically by `update_user_price` and
`reset_user_price`, so a bad edit never replaces good prices.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import re
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from indexer.errors import BadInput
from indexer.settings import choice, editing, parse_toml, read_toml, toml_string, toml_value, write_atomic
from schemas import SYNTHETIC_MODEL
from schemas.pricing import COST_MODES, RATE_FIELDS, REQUIRED_FIELDS, TIERS, EarlierPrice, ModelPrice, Rates

if TYPE_CHECKING:
    import duckdb

# The bundled price list: package data beside this module.
BUNDLED_PRICES = Path(__file__).parent / "data" / "prices.toml"
LONG_CONTEXT_TOKENS = 200_000
DEFAULT_WEB_SEARCH_PER_1000 = 10.0
# Optional rates default to Anthropic's fixed ratios to the input rate.
DEFAULT_RATIOS = {"cache_write_5m": 1.25, "cache_write_1h": 2.0, "cache_read": 0.1}
LONG_CONTEXT_PREFIX = "long_context_"
MODEL_KEYS = (*RATE_FIELDS, *(LONG_CONTEXT_PREFIX + f for f in RATE_FIELDS), "fast_multiplier", "tier", "earlier")
# What an `earlier` entry may set: its day, and the rates that differed then.
EARLIER_KEYS = ("until", *RATE_FIELDS, *(LONG_CONTEXT_PREFIX + f for f in RATE_FIELDS), "fast_multiplier")
_TOP_KEYS = ("models", "web_search_per_1000")
# Patterns are compiled on first use (re caches them): a report's models usually match exactly.
_DATE_SUFFIX = r"(?:[-@]\d{8}|-latest|-0)$"
_NEXT_VERSION = r"\d|-\d(?!\d{7}(?!\d))"  # after a known id: a version of its own, not a date
_PROVIDER_PREFIX = r"^(?:[a-z]{2,8}\.)?anthropic[/.]"
_USER_HEADER = """\
# cco user prices, USD per million tokens: they override or add to the bundled prices.
# Written by `cco config pricing update|reset`; hand edits are fine (same shape as the bundled
# list: input, output, cache_write_5m, cache_write_1h, cache_read, long_context_*,
# fast_multiplier, tier, and [[models."id".earlier]] tables of what a price was before a day).
# A running `cco` service reloads this file when it changes.
"""


class PriceError(BadInput):
    """A bad value in a price table; `model` and `key` say where, for a line number."""

    def __init__(self, message: str, model: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.key = key


class PriceBook(NamedTuple):
    """Every price in force: bundled ones overlaid with the user's (a NamedTuple: every report
    loads one, and a tuple class is made in a seventh of a frozen dataclass's time)."""

    models: dict[str, ModelPrice]
    web_search_per_1000: float = DEFAULT_WEB_SEARCH_PER_1000

    def match(self, model: str) -> ModelPrice | None:
        """The price for a model id as transcripts spell it, by the matching rules above."""
        models = self.models
        if model in models:
            return models[model]
        bare = re.sub(_PROVIDER_PREFIX, "", model)
        undated = re.sub(_DATE_SUFFIX, "", bare)
        for candidate in (bare, undated):
            if candidate in models:
                return models[candidate]
        # A known dated id for the same undated one (the latest date when several are known).
        same = [k for k in models if re.sub(_DATE_SUFFIX, "", k) == undated]
        if same:
            return models[max(same)]
        prefixes = [k for k in models if bare.startswith(k) and not re.match(_NEXT_VERSION, bare[len(k) :])]
        return models[max(prefixes, key=len)] if prefixes else None


def tier_of(model: str) -> str:
    low = model.lower()
    for tier in ("opus", "sonnet", "haiku"):
        if tier in low:
            return tier
    return "other"


# --- validation ---------------------------------------------------------------------------------


def check_rate(value: Any, name: str) -> float:
    """A rate or multiplier from a file or a command line: a finite, non-negative number."""
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise BadInput(f"{name} must be a number, got {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise BadInput(f"{name} must be a number, got {value!r}")
    else:
        number = float(value)
    if math.isnan(number) or math.isinf(number):
        raise BadInput(f"{name} must be a finite number, got {value!r}")
    if number < 0:
        raise BadInput(f"{name} must not be negative, got {value!r}")
    return number


def _number(table: dict[str, Any], key: str, model: str | None) -> float | None:
    if key not in table:
        return None
    if isinstance(table[key], str):  # a quoted "3.0" in a file is a mistake, not a number
        raise PriceError(f"{_where(model)}{key} must be a number, got {table[key]!r}", model, key)
    try:
        return check_rate(table[key], key)
    except BadInput as exc:
        raise PriceError(f"{_where(model)}{exc}", model, key) from None


def _where(model: str | None) -> str:
    return f"price for {model!r}: " if model is not None else ""


def _rates(table: dict[str, Any], prefix: str, model: str, required: bool) -> Rates | None:
    values = {f: _number(table, prefix + f, model) for f in RATE_FIELDS}
    if all(v is None for v in values.values()) and not required:
        return None
    for f in REQUIRED_FIELDS:
        if values[f] is None:
            raise PriceError(f"{_where(model)}{prefix}{f} is required", model, None)
    inp = values["input"] or 0.0
    # rounded, so that a default reads like the decimal it is (1.5 x 0.1 -> 0.15, not 0.15000000000000002)
    return Rates(**{f: (v if v is not None else round(inp * DEFAULT_RATIOS[f], 12)) for f, v in values.items()})


def parse_model(model: str, table: Any, source: str) -> ModelPrice:
    """One model's price table, validated (PriceError says what and where)."""
    if not isinstance(table, dict):
        raise PriceError(f"{_where(model)}must be a table of rates, got {table!r}", model, None)
    unknown = sorted(set(table) - set(MODEL_KEYS))
    if unknown:
        raise PriceError(f"{_where(model)}unknown key {unknown[0]!r}", model, unknown[0])
    rates = _rates(table, "", model, required=True)
    assert rates is not None
    tier = table.get("tier")
    if tier is not None and tier not in TIERS:
        raise PriceError(f"{_where(model)}tier must be one of {', '.join(TIERS)}, got {tier!r}", model, "tier")
    fast = _number(table, "fast_multiplier", model)
    return ModelPrice(
        model=model,
        rates=rates,
        long_context=_rates(table, LONG_CONTEXT_PREFIX, model, required=False),
        fast_multiplier=1.0 if fast is None else fast,
        tier=tier,
        source=source,
        earlier=_earlier(model, table),
    )


def _earlier(model: str, table: dict[str, Any]) -> tuple[EarlierPrice, ...]:
    """The `earlier` entries of a model's table: each one's keys over the table's own (a key it does
    not set is as the current price has it), ordered by day; PriceError says what is wrong."""
    entries = table.get("earlier", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        shape = '[[models."id".earlier]]'
        raise PriceError(f"{_where(model)}earlier must be a list of tables ({shape})", model, "earlier")
    current = {k: v for k, v in table.items() if k not in ("earlier", "tier")}
    out: list[EarlierPrice] = []
    for entry in entries:
        unknown = sorted(set(entry) - set(EARLIER_KEYS))
        if unknown:
            raise PriceError(f"{_where(model)}earlier: unknown key {unknown[0]!r}", model, unknown[0])
        until = _day(entry.get("until"), model)
        merged = {**current, **{k: v for k, v in entry.items() if k != "until"}}
        rates = _rates(merged, "", model, required=True)
        assert rates is not None
        fast = _number(merged, "fast_multiplier", model)
        long_context = _rates(merged, LONG_CONTEXT_PREFIX, model, required=False)
        out.append(EarlierPrice(until, rates, long_context, 1.0 if fast is None else fast))
    out.sort(key=lambda e: e.until)
    for a, b in itertools.pairwise(out):
        if a.until == b.until:
            raise PriceError(f"{_where(model)}earlier: two entries until {a.until}", model, "until")
    return tuple(out)


def _day(value: Any, model: str) -> date:
    """An `until` day: a TOML date (2026-10-07) or the same as a string."""
    if isinstance(value, datetime):  # a date-time: only its day counts, which would mislead
        raise PriceError(f"{_where(model)}earlier: until must be a day (2026-10-07), got {value}", model, "until")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return date.fromisoformat(value.strip())
    raise PriceError(f"{_where(model)}earlier: until must be a day (2026-10-07), got {value!r}", model, "until")


def parse_book(data: dict[str, Any], source: str) -> tuple[dict[str, ModelPrice], float | None]:
    """A whole price file: (models, web search price per 1000 or None when not set)."""
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise PriceError(f"unknown key {unknown[0]!r}; expected {' or '.join(_TOP_KEYS)}", None, unknown[0])
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise PriceError("models must be a table", None, "models")
    web = _number(data, "web_search_per_1000", None)
    return {m: parse_model(m, t, source) for m, t in models.items()}, web


def _header_names(line: str) -> str | None:
    """The dotted key of a `[table]` header line, quotes kept, or None."""
    s = line.strip()
    if s.startswith("[") and not s.startswith("[["):
        end = s.find("]")
        return s[1:end].strip() if end > 0 else None
    return None


def _key_pattern(*names: str) -> re.Pattern[str]:
    """Matches a line assigning the dotted key `names` (each part bare or quoted)."""
    parts = [rf"(?:{re.escape(n)}|\"{re.escape(n)}\"|'{re.escape(n)}')" for n in names]
    return re.compile(r"^\s*" + r"\s*\.\s*".join(parts) + r"\s*[=.]")


def locate(text: str, model: str | None, key: str | None) -> int | None:
    """The line (1-based) of a model's table or of one of its keys, found by reading the text."""
    quoted = (f'"{model}"', f"'{model}'", f".{model}") if model is not None else ()
    table = ""  # the current table's dotted name ("" at the top level)
    found: int | None = None  # the model's table or first line, when its key is not found
    for i, line in enumerate(text.splitlines(), 1):
        names = _header_names(line)
        if names is not None:
            table = names
            if model is not None and key is not None and _key_pattern("models", model, key).match(names + "="):
                return i  # a sub-table where a key belongs: [models."id".long_context]
            if model is not None and names.startswith("models") and names.endswith(quoted) and found is None:
                found = i
            continue
        if model is None:
            if table == "" and key is not None and _key_pattern(key).match(line):
                return i
        elif table == "":  # `models."id".input = ...` at the top level
            if key is not None and _key_pattern("models", model, key).match(line):
                return i
            if found is None and _key_pattern("models", model).match(line):
                found = i
        elif table.startswith("models") and table.endswith(quoted):
            if key is not None and _key_pattern(key).match(line):
                return i
        elif table == "models":  # `"id" = {...}` or `"id".input = ...`
            if key is not None and _key_pattern(model, key).match(line):
                return i
            if found is None and _key_pattern(model).match(line):
                found = i
    return found


# --- loading ------------------------------------------------------------------------------------


def read_user(path: Path, raw: bytes | None = None) -> tuple[dict[str, ModelPrice], float | None, dict[str, Any]]:
    """The user's price file (or its bytes `raw`): (models, web price or None, raw data).

    All empty when the file is absent. BadInput names the file and the line of what is wrong.
    """
    if raw is None:
        if not path.exists():
            return {}, None, {}
        data, text = read_toml(path)
    else:
        data, text = parse_toml(raw, path)
    try:
        models, web = parse_book(data, "user")
    except PriceError as exc:
        line = locate(text, exc.model, exc.key)
        raise BadInput(f"{path}{f' line {line}' if line else ''}: {exc}") from None
    return models, web, data


@functools.cache
def bundled() -> PriceBook:
    """The prices shipped with cco (parsed once; callers never mutate a book)."""
    text = BUNDLED_PRICES.read_text(encoding="utf-8")
    models, web = parse_book(tomllib.loads(text), "bundled")
    return PriceBook(models, web if web is not None else DEFAULT_WEB_SEARCH_PER_1000)


def check_user_file(path: Path) -> None:
    """BadInput if the user's price file (when there is one) is bad: what a command answered by the
    running service checks, since the service keeps the last good prices (its health says why)."""
    if path.exists():
        read_user(path)


def load_book(user_path: Path | None, raw: bytes | None = None) -> PriceBook:
    """Bundled prices overlaid with the user's file (or its bytes `raw`); BadInput if it is bad."""
    base = bundled()
    if user_path is None:
        return base
    user, web, _ = read_user(user_path, raw)
    if not user and web is None:
        return base
    return PriceBook({**base.models, **user}, web if web is not None else base.web_search_per_1000)


# --- editing the user's file --------------------------------------------------------------------


def price_table(price: ModelPrice) -> dict[str, Any]:
    """A price as the explicit key/values of a price file (every rate written out, earlier ones too)."""

    def rates(r: Rates, lc: Rates | None, fast: float) -> dict[str, Any]:
        out: dict[str, Any] = {f: getattr(r, f) for f in RATE_FIELDS}
        if lc is not None:
            out.update({LONG_CONTEXT_PREFIX + f: getattr(lc, f) for f in RATE_FIELDS})
        if fast != 1.0:
            out["fast_multiplier"] = fast
        return out

    out = rates(price.rates, price.long_context, price.fast_multiplier)
    if price.tier is not None:
        out["tier"] = price.tier
    if price.earlier:
        out["earlier"] = [
            {"until": e.until, **rates(e.rates, e.long_context, e.fast_multiplier)} for e in price.earlier
        ]
    return out


def dump_user(models: dict[str, dict[str, Any]], web: float | None) -> str:
    """TOML text for a user price file (tables in the given order, keys in MODEL_KEYS order, each
    `earlier` entry as a [[models."id".earlier]] table after them)."""
    parts = [_USER_HEADER]
    if web is not None:
        parts.append(f"web_search_per_1000 = {toml_value(web)}\n")
    for model, table in models.items():
        name = f"models.{toml_string(model)}"
        body = "".join(f"{k} = {toml_value(table[k])}\n" for k in MODEL_KEYS if k in table and k != "earlier")
        for entry in table.get("earlier", []):
            until = entry.get("until")
            keys = "".join(f"{k} = {toml_value(entry[k])}\n" for k in EARLIER_KEYS if k in entry and k != "until")
            day = until.isoformat() if isinstance(until, date) else toml_value(until)
            body += f"\n[[{name}.earlier]]\nuntil = {day}\n{keys}"
        parts.append(f"[{name}]\n{body}")
    return "\n".join(parts)


def _save_user(path: Path, models: dict[str, dict[str, Any]], web: float | None) -> None:
    text = dump_user(models, web)
    parse_book(tomllib.loads(text), "user")  # never write what we could not read back
    write_atomic(path, text)


def update_user_price(path: Path, model: str, values: dict[str, Any]) -> ModelPrice:
    """Set some keys of `model`'s user price (others keep the model's current price) and save.

    `values` maps MODEL_KEYS to numbers or numeric strings (tier: a tier name). A model with no
    price yet needs input and output. Nothing is written unless the whole file is valid. Edits
    made at once by several commands all land (settings.editing).
    """
    with editing(path):
        return _update_user_price(path, model, values)


def _update_user_price(path: Path, model: str, values: dict[str, Any]) -> ModelPrice:
    model = model.strip()
    if not model:
        raise BadInput("the model id must not be empty")
    unknown = sorted(set(values) - set(MODEL_KEYS))
    if unknown:
        raise BadInput(f"unknown price key {unknown[0]!r}")
    _, web, data = read_user(path)
    raw_models: dict[str, Any] = data.get("models", {})
    tables = {m: dict(t) for m, t in raw_models.items()}
    if model in tables:
        table = tables[model]
    elif model in bundled().models:
        table = price_table(bundled().models[model])
    else:
        missing = [f for f in REQUIRED_FIELDS if f not in values]
        if missing:
            flags = " and ".join(f"--{f}" for f in missing)
            raise BadInput(f"{model!r} has no price yet: {flags} {'is' if len(missing) == 1 else 'are'} required")
        table = {}
    if not values:
        raise BadInput(f"nothing to change for {model!r}: give at least one price, e.g. --input")
    for key, value in values.items():
        if key == "tier":
            if value not in TIERS:
                raise BadInput(f"--tier must be one of {', '.join(TIERS)}, got {value!r}")
            table[key] = value
        else:
            table[key] = check_rate(value, "--" + key.replace("_", "-"))
    price = parse_model(model, table, "user")
    tables[model] = table
    _save_user(path, tables, web)
    return price


def shadowed_by(model: str, price: ModelPrice) -> list[str]:
    """Bundled ids that a user price under `model` resembles but does not override.

    Matching tries exact ids first, so a user entry for `claude-sonnet-4-5` leaves calls to
    `claude-sonnet-4-5-20250929` at that id's bundled price: worth telling the user.
    """
    alone = PriceBook({model: price})
    return [k for k in bundled().models if k != model and alone.match(k) is not None]


def reset_user_price(path: Path, model: str | None = None) -> list[str]:
    """Drop the user's price for `model` (all user prices when None); returns the models dropped."""
    with editing(path):
        return _reset_user_price(path, model)


def _reset_user_price(path: Path, model: str | None) -> list[str]:
    if model is None:
        if not path.exists():
            return []
        try:
            dropped = list(read_user(path)[0])
        except BadInput:
            dropped = []  # a broken file is removed too: that is how users get out of one
        path.unlink()
        return dropped
    _, web, data = read_user(path)
    tables = {m: dict(t) for m, t in data.get("models", {}).items()}
    if model not in tables:
        raise BadInput(f"no user price for {model!r} (see `cco config pricing list`)")
    del tables[model]
    _save_user(path, tables, web)
    return [model]


# --- SQL ----------------------------------------------------------------------------------------

_PRICE_COLUMNS = (
    "model", "matched", "tier", "priced", "fast_mult", "web",
    "p_in", "p_out", "p_w5m", "p_w1h", "p_read", "has_lc", "l_in", "l_out", "l_w5m", "l_w1h", "l_read",
)  # fmt: skip

# Views are code, not data: replaced on every open of the index (see store.Index).
#
# Speed (a price change must reach every total over 1M calls within 200 ms): no per-row CASE.
# `rates` expands each `prices` row into 8 variants, one per (above 200k context, fast, failed),
# each with its rates already chosen, multiplied by the fast multiplier and divided by 1e6 (0 for
# failed or unpriced). A call joins its variant, and its cost is a plain sum of products.
_SPAN_COLUMNS = ", ".join(_PRICE_COLUMNS)
PRICED_VIEW = f"""
CREATE OR REPLACE VIEW priced_calls AS
WITH spans AS (  -- each price with the time it was in force: [since, until)
    SELECT * REPLACE (
        coalesce(since, TIMESTAMP '1970-01-01') AS since, coalesce(until, TIMESTAMP '9999-12-31') AS until
    )
    FROM (
        SELECT {_SPAN_COLUMNS}, (SELECT max(q.until) FROM price_periods q WHERE q.model = p.model) AS since,
            NULL::TIMESTAMP AS until
        FROM prices p
        UNION ALL BY NAME
        SELECT {_SPAN_COLUMNS}, since, until FROM price_periods
    )
),
rates AS (
    SELECT p.model, p.since, p.until, v.variant, p.tier, p.priced,
        coalesce(p.has_lc AND v.over, false) AS long_context,
        CASE WHEN v.failed OR NOT p.priced THEN 0.0 WHEN v.fast THEN p.fast_mult ELSE 1.0 END AS m,
        coalesce(CASE WHEN p.has_lc AND v.over THEN p.l_in ELSE p.p_in END * m / 1e6, 0.0) AS r_in,
        coalesce(CASE WHEN p.has_lc AND v.over THEN p.l_out ELSE p.p_out END * m / 1e6, 0.0) AS r_out,
        coalesce(CASE WHEN p.has_lc AND v.over THEN p.l_w5m ELSE p.p_w5m END * m / 1e6, 0.0) AS r_w5m,
        coalesce(CASE WHEN p.has_lc AND v.over THEN p.l_w1h ELSE p.p_w1h END * m / 1e6, 0.0) AS r_w1h,
        coalesce(CASE WHEN p.has_lc AND v.over THEN p.l_read ELSE p.p_read END * m / 1e6, 0.0) AS r_read,
        coalesce(p.web * m, 0.0) AS r_web
    FROM spans p,
        (SELECT k AS variant, k >= 4 AS over, k % 4 >= 2 AS fast, k % 2 = 1 AS failed FROM range(8) AS t(k)) v
)
SELECT c.*,
    coalesce(r.tier, 'other') AS tier,
    coalesce(r.priced, false) AS priced,
    c.cache_5m_tokens + c.cache_1h_tokens AS cache_creation_tokens,
    c.input_tokens + c.output_tokens + c.cache_5m_tokens + c.cache_1h_tokens + c.cache_read_tokens AS total_tokens,
    coalesce(r.long_context, false) AS long_context,
    c.cache_read_tokens > 0 AS cache_hit,
    -- a model not yet in `prices` (apply_prices not run since it appeared) costs 0, not NULL
    coalesce(c.input_tokens * r.r_in + c.output_tokens * r.r_out + c.cache_5m_tokens * r.r_w5m
        + c.cache_1h_tokens * r.r_w1h + c.cache_read_tokens * r.r_read + c.web_searches * r.r_web, 0.0)
        AS cost_calculated,
    -- the same call with every cache read and write priced as plain input
    coalesce((c.input_tokens + c.cache_5m_tokens + c.cache_1h_tokens + c.cache_read_tokens) * r.r_in
        + c.output_tokens * r.r_out + c.web_searches * r.r_web, 0.0) AS would_be_cost,
    would_be_cost - cost_calculated AS cache_savings
FROM calls c LEFT JOIN rates r ON r.model = c.model AND r.variant =
    (c.input_tokens + c.cache_5m_tokens + c.cache_1h_tokens + c.cache_read_tokens > {LONG_CONTEXT_TOKENS})::INTEGER * 4
    + c.fast::INTEGER * 2 + c.failed::INTEGER
    AND c.ts >= r.since AND c.ts < r.until
WHERE NOT c.replay
"""


def check_cost_mode(value: str, label: str = "--mode") -> str:
    """A cost mode (auto, calculate, display; any case), or BadInput naming it as `label`."""
    return choice(value, COST_MODES, label)


def cost_expr(mode: str) -> str:
    """SQL for a priced_calls row's cost under a cost mode (auto, calculate, display)."""
    return {
        "auto": "CASE WHEN failed THEN 0.0 ELSE coalesce(cost_usd, cost_calculated) END",
        "calculate": "cost_calculated",
        "display": "CASE WHEN failed THEN 0.0 ELSE coalesce(cost_usd, 0.0) END",
    }[check_cost_mode(mode, "cost mode")]


Rows = tuple[tuple[Any, ...], tuple[tuple[Any, ...], ...]]  # a model's `prices` row, its `price_periods` rows


def _price_rows(model: str, book: PriceBook) -> Rows:
    web = book.web_search_per_1000 / 1000
    if model == SYNTHETIC_MODEL:  # Claude Code's own notices: free, and not "unpriced"
        return (model, None, "other", True, 1.0, 0.0, *([0.0] * 5), False, *([None] * 5)), ()
    price = book.match(model)
    if price is None:
        return (model, None, tier_of(model), False, 1.0, web, *([None] * 5), False, *([None] * 5)), ()
    head = (model, price.model, price.tier or tier_of(model), True)

    def rates(r: Rates, lc: Rates | None, fast: float) -> tuple[Any, ...]:
        lc_vals = (lc.input, lc.output, lc.cache_write_5m, lc.cache_write_1h, lc.cache_read) if lc else (None,) * 5
        return (
            *head, fast, web, r.input, r.output, r.cache_write_5m, r.cache_write_1h, r.cache_read, lc is not None,
            *lc_vals,
        )  # fmt: skip

    periods = []
    since: datetime | None = None
    for e in price.earlier:
        until = datetime(e.until.year, e.until.month, e.until.day)  # the index's naive UTC
        periods.append((*rates(e.rates, e.long_context, e.fast_multiplier), since, until))
        since = until
    return rates(price.rates, price.long_context, price.fast_multiplier), tuple(periods)


def _price_changes(con: duckdb.DuckDBPyConnection, book: PriceBook, all_models: bool) -> tuple[list[str], list[Rows]]:
    """(models whose stored rows are stale, rows to insert) for `prices` and `price_periods` to hold
    `book`'s rows.

    Rows already in `prices` are always checked against `book` (a few rows, no scan), so a
    changed book is seen either way; all_models=True also re-lists every model from `calls`
    instead of only adding the ones not seen before.
    """
    columns = ", ".join(_PRICE_COLUMNS)
    periods: dict[str, list[tuple[Any, ...]]] = {}
    for r in con.execute(f"SELECT {columns}, since, until FROM price_periods ORDER BY model, until").fetchall():
        periods.setdefault(r[0], []).append(tuple(r))
    current: dict[str, Rows] = {
        r[0]: (tuple(r), tuple(periods.get(r[0], ()))) for r in con.execute(f"SELECT {columns} FROM prices").fetchall()
    }
    if all_models:
        models = [r[0] for r in con.execute("SELECT DISTINCT model FROM calls").fetchall()]
    else:
        new = con.execute("SELECT DISTINCT model FROM calls WHERE model NOT IN (SELECT model FROM prices)")
        models = [*current, *(r[0] for r in new.fetchall())]
    wanted = {m: _price_rows(m, book) for m in models}
    stale = [m for m, rows in current.items() if wanted.get(m) != rows]
    fresh = [rows for m, rows in wanted.items() if current.get(m) != rows]
    return stale, fresh


def apply_prices(con: duckdb.DuckDBPyConnection, book: PriceBook, *, all_models: bool = True) -> bool:
    """Make `prices` hold `book`'s row for every model in the index; True when a row changed.

    Runs in its own transaction (see _price_changes for what is compared).
    """
    con.execute("BEGIN TRANSACTION")
    try:
        stale, fresh = _price_changes(con, book, all_models)
        # one statement each (not one per row): a reload's whole cost is a few milliseconds
        if stale:
            con.execute("DELETE FROM prices WHERE list_contains(?, model)", [stale])
            con.execute("DELETE FROM price_periods WHERE list_contains(?, model)", [stale])
        if fresh:
            row = "(" + ", ".join("?" * len(_PRICE_COLUMNS)) + ")"
            con.execute(f"INSERT INTO prices VALUES {', '.join([row] * len(fresh))}", [v for r, _ in fresh for v in r])
        spans = [p for _, ps in fresh for p in ps]
        if spans:
            row = "(" + ", ".join("?" * (len(_PRICE_COLUMNS) + 2)) + ")"
            names = f"{', '.join(_PRICE_COLUMNS)}, since, until"
            values = [v for p in spans for v in p]
            con.execute(f"INSERT INTO price_periods ({names}) VALUES {', '.join([row] * len(spans))}", values)
        con.execute("COMMIT")
    except BaseException:
        from indexer.engine import rollback  # here: reports import the engine apart, in a thread

        rollback(con)
        raise
    return bool(stale or fresh)


def prices_current(con: duckdb.DuckDBPyConnection, book: PriceBook) -> bool:
    """True when apply_prices(all_models=False) would write nothing: the stored rows are `book`'s.

    Lets a read-only reader use the stored rows only when they match the prices in force now.
    """
    stale, fresh = _price_changes(con, book, all_models=False)
    return not stale and not fresh


def ready_to_read(con: duckdb.DuckDBPyConnection, book: PriceBook) -> bool:
    """Whether a read-only `con` can answer: migrated, and its prices are `book`'s.

    Then the priced_calls view is recreated as a TEMP view, so its definition is this version's
    even if the file's was written by an older one.
    """
    from indexer.migrations import MIGRATIONS, check_known

    temp_view = PRICED_VIEW.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW", 1)
    done = {r[0] for r in con.execute("SELECT name FROM migrations").fetchall()}
    check_known(done)
    if done >= {name for name, _ in MIGRATIONS} and prices_current(con, book):
        con.execute(temp_view)
        return True
    return False


def unpriced_models(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Models with no price and their call counts (failed calls cost 0 anyway and are left out)."""
    rows = con.execute(
        "SELECT model, count(*) FROM priced_calls WHERE NOT priced AND NOT failed GROUP BY model ORDER BY model"
    ).fetchall()
    return {m: n for m, n in rows}
