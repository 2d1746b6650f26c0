"""Rows as numpy column arrays: the form in which parsed calls travel to the writer and into DuckDB.

The idea: an int64 or bool array pickles as one buffer and DuckDB scans it without a Python call
per value, so moving a batch from a worker process to the writer, and from the writer into the
index, costs memcpy-like work instead of per-row Python (which in the serving process would hold
the GIL while HTTP requests wait). Text columns are object arrays whose strings are interned per
batch, so a pickle stores each distinct model, session or project once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.records import CallRow

if TYPE_CHECKING:
    import numpy as np

# numpy is imported where arrays are made: only writers need it (readers, such as a report
# process, skip its ~0.2 s import).
Arrays = dict[str, "np.ndarray[Any, Any]"]

CALL_COLUMNS = CallRow._fields
_CALL_TYPES = {
    **dict.fromkeys(
        (
            "key",
            "msg_hash",
            "ts_ms",
            "input_tokens",
            "output_tokens",
            "cache_5m_tokens",
            "cache_1h_tokens",
            "cache_read_tokens",
            "web_searches",
        ),
        "int64",
    ),
    **dict.fromkeys(("sidechain", "failed", "fast"), "bool"),
}
# DuckDB types of the columns; the others are VARCHAR.
CALL_SQL_TYPES = {
    **{name: {"int64": "BIGINT", "bool": "BOOLEAN"}[kind] for name, kind in _CALL_TYPES.items()},
    "cost_usd": "DOUBLE",
    "latency_ms": "BIGINT",
}
_INTERNED = ("model", "session", "project", "branch", "version", "agent_id")


def column_arrays(rows: Sequence[tuple[Any, ...]], names: Sequence[str], typed: dict[str, str] | None = None) -> Arrays:
    """Column arrays of `rows`: numpy `typed[name]` for never-null numbers (DuckDB reads those
    without a per-value conversion), Python objects otherwise."""
    import numpy as np

    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    types = typed or {}
    return {name: np.array(values, dtype=types.get(name, object)) for name, values in zip(names, cols, strict=True)}


@dataclass
class CallColumns:
    """Call rows (possibly several per call identity: the store merges them) as column arrays."""

    arrays: Arrays

    def __len__(self) -> int:
        return len(self.arrays["key"])

    @classmethod
    def from_rows(cls, rows: Sequence[CallRow]) -> CallColumns:
        import numpy as np

        cols = list(zip(*rows, strict=True)) if rows else [() for _ in CALL_COLUMNS]
        seen: dict[str, str] = {}
        arrays: Arrays = {}
        for name, values in zip(CALL_COLUMNS, cols, strict=True):
            if name in _INTERNED:
                values = tuple([None if v is None else seen.setdefault(v, v) for v in values])
            arrays[name] = np.array(values, dtype=_CALL_TYPES.get(name, object))
        return cls(arrays)

    @classmethod
    def concat(cls, parts: Sequence[CallColumns]) -> CallColumns:
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.from_rows([])
        import numpy as np

        return cls({name: np.concatenate([p.arrays[name] for p in parts]) for name in CALL_COLUMNS})
