"""Price records: what one model costs, in USD per million tokens, and the names of cost modes.

The idea: a price is plain data (frozen dataclasses), parsed and validated once by
indexer.pricing from the bundled list or the user's file, so the API, CLI and tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

RATE_FIELDS = ("input", "output", "cache_write_5m", "cache_write_1h", "cache_read")
REQUIRED_FIELDS = ("input", "output")
TIERS = ("opus", "sonnet", "haiku", "other")
COST_MODES = ("auto", "calculate", "display")


@dataclass(frozen=True)
class Rates:
    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float


@dataclass(frozen=True)
class EarlierPrice:
    """What a model cost before `until` (a UTC day), from the end of the entry before it."""

    until: date
    rates: Rates
    long_context: Rates | None
    fast_multiplier: float


@dataclass(frozen=True)
class ModelPrice:
    model: str
    rates: Rates  # in force since the last `earlier` entry's day (all along without one)
    long_context: Rates | None = None  # applies to the whole call above LONG_CONTEXT_TOKENS
    fast_multiplier: float = 1.0
    tier: str | None = None  # None: derived from the model id
    source: str = "bundled"  # or "user"
    earlier: tuple[EarlierPrice, ...] = ()  # by `until`, oldest first
