"""`cco config …`: prices (bundled and the user's own) and settings.

The idea: commands only parse options and call indexer.pricing / indexer.settings, which validate
everything and write files atomically; rates arrive as text so that every bad value (negative,
NaN, not a number) gets the same one-line error instead of a usage panel.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from api.output import console, err_console, print_fields, print_json
from indexer.errors import BadInput
from indexer.paths import config_dir, default_db, pricing_file
from indexer.pricing import (
    PriceBook,
    PriceError,
    bundled,
    load_book,
    price_table,
    reset_user_price,
    shadowed_by,
    update_user_price,
)
from indexer.settings import SETTINGS, load_settings, read_settings, set_setting, settings_file
from schemas.pricing import RATE_FIELDS, ModelPrice

config_app = typer.Typer(help="Prices and settings.", no_args_is_help=True)
pricing_app = typer.Typer(help="Model prices: the bundled list and your own pricing.toml.", no_args_is_help=True)
config_app.add_typer(pricing_app, name="pricing")


def _rate_opt(help_text: str) -> Any:
    return typer.Option(help=help_text, show_default=False, metavar="USD")


Rate = str | None


def _price_json(price: ModelPrice, overrides: bool) -> dict[str, Any]:
    lc = price.long_context
    return {
        "model": price.model,
        "source": price.source,
        "overrides_bundled": overrides,
        **{f: getattr(price.rates, f) for f in RATE_FIELDS},
        "long_context": {f: getattr(lc, f) for f in RATE_FIELDS} if lc else None,
        "fast_multiplier": price.fast_multiplier,
        "tier": price.tier,
        "earlier": [
            {
                "until": e.until.isoformat(),
                **{f: getattr(e.rates, f) for f in RATE_FIELDS},
                "long_context": {f: getattr(e.long_context, f) for f in RATE_FIELDS} if e.long_context else None,
                "fast_multiplier": e.fast_multiplier,
            }
            for e in price.earlier
        ],
    }


def _rate(value: float) -> str:
    return f"{value:g}"


@pricing_app.command("list")
def list_cmd(json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List every price in force (USD per million tokens), bundled and yours."""
    path = pricing_file()
    book: PriceBook = load_book(path)
    base = bundled().models
    prices = sorted(book.models.values(), key=lambda p: p.model)
    if json:
        print_json(
            {
                "pricing_file": str(path),
                "web_search_per_1000": book.web_search_per_1000,
                "models": [_price_json(p, p.source == "user" and p.model in base) for p in prices],
            }
        )
        return
    title = f"USD per million tokens (w5m, w1h: cache writes; yours: {path})"
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("model", no_wrap=True)
    table.add_column("source", no_wrap=True)
    for name in ("in", "out", "w5m", "w1h", "read", "fast"):
        table.add_column(name, justify="right", no_wrap=True)
    long_context = Table(
        title="above 200k context tokens (whole call)", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False
    )
    long_context.add_column("model", no_wrap=True)
    for name in ("in", "out", "w5m", "w1h", "read"):
        long_context.add_column(name, justify="right", no_wrap=True)
    earlier = Table(
        title="earlier prices (for calls before the day)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    earlier.add_column("model", no_wrap=True)
    earlier.add_column("before", no_wrap=True)
    for name in ("in", "out", "w5m", "w1h", "read", "fast"):
        earlier.add_column(name, justify="right", no_wrap=True)
    for p in prices:
        source = "user*" if p.source == "user" and p.model in base else p.source
        table.add_row(p.model, source, *(_rate(getattr(p.rates, f)) for f in RATE_FIELDS), _rate(p.fast_multiplier))
        if p.long_context is not None:
            long_context.add_row(p.model, *(_rate(getattr(p.long_context, f)) for f in RATE_FIELDS))
        for e in p.earlier:
            cells = (_rate(getattr(e.rates, f)) for f in RATE_FIELDS)
            earlier.add_row(p.model, e.until.isoformat(), *cells, _rate(e.fast_multiplier))
            if e.long_context is not None and e.long_context != p.long_context:
                lc = (_rate(getattr(e.long_context, f)) for f in RATE_FIELDS)
                earlier.add_row(p.model, f"{e.until.isoformat()}, >200k", *lc, "")
    console.print(table)
    if long_context.row_count:
        console.print(long_context)
    if earlier.row_count:
        console.print(earlier)
    if any(p.source == "user" and p.model in base for p in prices):
        console.print("user*: your price replaces the bundled one", highlight=False, soft_wrap=True)
    console.print(f"web search: ${book.web_search_per_1000:g} per 1,000 requests", highlight=False, soft_wrap=True)


@pricing_app.command("update")
def update_cmd(
    model: Annotated[str, typer.Argument(help="Model id as transcripts spell it, e.g. claude-sonnet-4-5-20250929.")],
    input: Annotated[Rate, _rate_opt("Input tokens (required for a model with no price yet).")] = None,
    output: Annotated[Rate, _rate_opt("Output tokens (required for a model with no price yet).")] = None,
    cache_write_5m: Annotated[Rate, _rate_opt("5-minute cache writes (kept if not given; unset: 1.25x input).")] = None,
    cache_write_1h: Annotated[Rate, _rate_opt("1-hour cache writes (kept if not given; unset: 2x input).")] = None,
    cache_read: Annotated[Rate, _rate_opt("Cache reads (kept if not given; unset: 0.1x input).")] = None,
    long_context_input: Annotated[Rate, _rate_opt("Input above 200k context tokens.")] = None,
    long_context_output: Annotated[Rate, _rate_opt("Output above 200k context tokens.")] = None,
    long_context_cache_write_5m: Annotated[Rate, _rate_opt("5-minute cache writes above 200k.")] = None,
    long_context_cache_write_1h: Annotated[Rate, _rate_opt("1-hour cache writes above 200k.")] = None,
    long_context_cache_read: Annotated[Rate, _rate_opt("Cache reads above 200k.")] = None,
    fast_multiplier: Annotated[
        Rate, typer.Option(help="Multiplier for fast-mode calls.", show_default=False, metavar="X")
    ] = None,
    tier: Annotated[str | None, typer.Option(help="opus, sonnet, haiku or other.", show_default=False)] = None,
) -> None:
    """Set your price for a model (options not given keep its current price); USD per million tokens."""
    given = {
        "input": input,
        "output": output,
        "cache_write_5m": cache_write_5m,
        "cache_write_1h": cache_write_1h,
        "cache_read": cache_read,
        "long_context_input": long_context_input,
        "long_context_output": long_context_output,
        "long_context_cache_write_5m": long_context_cache_write_5m,
        "long_context_cache_write_1h": long_context_cache_write_1h,
        "long_context_cache_read": long_context_cache_read,
        "fast_multiplier": fast_multiplier,
        "tier": tier,
    }
    path = pricing_file()
    try:
        price = update_user_price(path, model, {k: v for k, v in given.items() if v is not None})
    except PriceError as exc:  # named as the file names it: say the option instead
        message = str(exc)
        for key in given:
            message = re.sub(rf"(?<![\w-]){key}(?![\w-])", "--" + key.replace("_", "-"), message)
        raise BadInput(message) from None
    table = price_table(price)
    console.print(
        f"saved {price.model} to {path}: "
        + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in table.items()),
        highlight=False,
        soft_wrap=True,
    )
    shadowed = shadowed_by(price.model, price)
    if shadowed:
        err_console.print(
            f"cco: note: calls to {', '.join(shadowed)} keep their own bundled price; update those ids to change them",
            highlight=False,
            soft_wrap=True,
        )


@pricing_app.command("reset")
def reset_cmd(
    model: Annotated[str | None, typer.Argument(help="Model id; without it, all your prices go.")] = None,
) -> None:
    """Remove your price for MODEL (or all your prices), back to the bundled ones."""
    path = pricing_file()
    existed = path.exists()
    reset_user_price(path, model)
    if model is None:
        message = f"removed {path}" if existed else "no user prices to remove"
        console.print(message, highlight=False, soft_wrap=True)
    else:
        back = "back to the bundled price" if model in bundled().models else "no longer priced by you"
        console.print(f"reset {model}: {back}", highlight=False, soft_wrap=True)


@config_app.command("show")
def show_cmd(json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show settings and where cco keeps its files."""
    values = load_settings()
    in_file = read_settings()
    data: dict[str, Any] = {
        **{s.replace("_", "-"): values[s] for s in SETTINGS},
        "config_dir": str(config_dir()),
        "config_file": str(settings_file()),
        "pricing_file": str(pricing_file()),
        "pricing_file_exists": pricing_file().exists(),
        "index_file": str(default_db()),
    }
    if json:
        data["sources"] = {s.replace("_", "-"): "config" if s in in_file else "default" for s in SETTINGS}
        print_json(data)
    else:
        print_fields("cco config", data)


@config_app.command("set")
def set_cmd(
    name: Annotated[str, typer.Argument(help=f"Setting: {', '.join(s.replace('_', '-') for s in SETTINGS)}.")],
    value: Annotated[str, typer.Argument(help="New value.")],
) -> None:
    """Change a setting in config.toml (cost-mode: auto, calculate or display)."""
    setting = set_setting(name, value)
    console.print(
        f"{setting.name.replace('_', '-')} = {load_settings()[setting.name]} (saved to {settings_file()})",
        highlight=False,
        soft_wrap=True,
    )
