"""Rows as numpy column arrays: the form in which parsed calls travel to the writer and into DuckDB.

The idea: a numeric numpy array pickles as one buffer and DuckDB scans it without touching a
Python object, so moving a batch from a worker process to the writer, and from the writer into
the index, is memcpy-like work that needs no GIL (per-row Python in the serving process would
stall HTTP requests). So every call column is numeric: text is a code into a small per-batch
vocabulary (a batch holds a few dozen distinct models, sessions and projects), a missing latency
is -1 and a missing costUSD is NaN; `decoded_calls` turns a registered batch back into rows in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.records import CallRow

if TYPE_CHECKING:
    import numpy as np

try:  # the compiled sink (indexer/_scan.c), built on install where a C compiler is present
    from indexer import _scan
except ImportError:  # pragma: no cover - no compiler at install: from_rows transposes in Python
    _scan = None  # type: ignore[assignment]

# numpy is imported where arrays are made: only writers need it (readers, such as a report
# process, skip its ~0.2 s import).
Arrays = dict[str, "np.ndarray[Any, Any]"]

CALL_COLUMNS = CallRow._fields
TEXT_COLUMNS = ("model", "session", "project", "branch", "version", "agent_id", "error")
_DTYPES = {
    **dict.fromkeys(CALL_COLUMNS, "int64"),
    **dict.fromkeys(("sidechain", "failed", "fast"), "bool"),
    **dict.fromkeys(TEXT_COLUMNS, "int32"),
    "cost_usd": "float64",
}
NO_LATENCY = -1
# The compiled sink's kind of each column (see _scan.c): None reads as -1 (latency, text) or NaN
# (cost_usd), as in from_rows.
_KINDS = "".join(
    "t" if c in TEXT_COLUMNS else "l" if c == "latency_ms" else "d" if c == "cost_usd" else "?" if t == "bool" else "q"
    for c, t in ((c, _DTYPES[c]) for c in CALL_COLUMNS)
)
use_compiled = True  # tests switch the compiled sink off to compare it with the Python transpose


def call_sink() -> _scan.Sink | None:
    """Where a parser process's scan writes its calls straight into columns (CallColumns.from_sink),
    instead of a tuple of Python objects per row transposed afterwards (1 GiB tree: the parsers'
    CPU 1.02 -> 0.84 s); None where the compiled scanner is not built."""
    return _scan.Sink(_KINDS) if _scan is not None and use_compiled else None


def decoded_calls(relation: str, codes: bool = True, extra: tuple[str, ...] = ()) -> str:
    """SQL: the rows of `relation` (CALL_COLUMNS as made here) with text and nulls decoded.

    A text code indexes the batch's vocabulary, given as the statement's first parameter (`$1`,
    a list: code -1 reads index 0, which is NULL). A projection, not a join per text column: the
    rows keep their order and no hash table is built. With `codes` false, the text columns hold
    the strings already (see CallColumns.texts).
    """
    columns = ", ".join(
        f"$1[b.{c} + 1] AS {c}"
        if c in TEXT_COLUMNS and codes
        else f"nullif(b.latency_ms, {NO_LATENCY}) AS latency_ms"
        if c == "latency_ms"
        else "CASE WHEN isnan(b.cost_usd) THEN NULL ELSE b.cost_usd END AS cost_usd"
        if c == "cost_usd"
        else f"b.{c}"
        for c in (*CALL_COLUMNS, *extra)
    )
    return f"SELECT {columns} FROM {relation} AS b"


def column_arrays(rows: Sequence[tuple[Any, ...]], names: Sequence[str]) -> Arrays:
    """Column arrays of `rows` holding Python objects (events, rejects, file states: DuckDB reads
    their nulls and mixed values as they are)."""
    import numpy as np

    cols = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    return {name: np.array(values, dtype=object) for name, values in zip(names, cols, strict=True)}


@dataclass
class CallColumns:
    """Call rows (possibly several per call identity: the store merges them) as numeric arrays.

    Text columns hold indexes into `vocab` (-1: none), which is sorted: codes compare as their
    strings do (code point order, as DuckDB compares UTF-8 text), so SQL can order by a code.
    """

    arrays: Arrays
    vocab: list[str]

    def __len__(self) -> int:
        return len(self.arrays["key"])

    @classmethod
    def from_sink(cls, sink: _scan.Sink) -> CallColumns:
        """The rows written into `sink` (codes in the order the texts came: renumbered here to the
        sorted vocabulary's)."""
        import numpy as np

        buffers, seen = sink.finish()
        read = {c: np.frombuffer(b, dtype=_DTYPES[c]) for c, b in zip(CALL_COLUMNS, buffers, strict=True)}
        vocab = sorted(seen)
        return cls(cls(read, seen).recoded({v: i for i, v in enumerate(vocab)}), vocab)

    @classmethod
    def from_rows(cls, rows: Sequence[CallRow]) -> CallColumns:
        import numpy as np

        sink = call_sink() if rows else None
        if sink is not None:
            try:
                sink.extend(rows if isinstance(rows, list) else list(rows))
            except (TypeError, OverflowError):
                pass  # a field the compiled sink does not take: the reference below decides
            else:
                return cls.from_sink(sink)
        cols = dict(zip(CALL_COLUMNS, zip(*rows, strict=True) if rows else [() for _ in CALL_COLUMNS], strict=True))
        vocab = sorted({v for c in TEXT_COLUMNS for v in cols[c] if v is not None})
        code = {v: i for i, v in enumerate(vocab)}
        arrays: Arrays = {}
        for name, values in cols.items():
            if name in TEXT_COLUMNS:
                values = tuple([-1 if v is None else code[v] for v in values])
            elif name == "latency_ms":
                values = tuple([NO_LATENCY if v is None else v for v in values])
            elif name == "cost_usd":
                values = tuple([np.nan if v is None else v for v in values])
            arrays[name] = np.array(values, dtype=_DTYPES[name])
        return cls(arrays, vocab)

    def texts(self) -> Arrays:
        """The arrays with each text column as an object array of its strings (None: no text).

        DuckDB then reads each string holding the GIL, which the service's commits avoid (codes
        and a vocabulary parameter); a rebuild, which has no event loop to keep answering, gains:
        72,000 calls went in 3x faster (80 vs 270 ms) than through the `$1[code]` lookups.
        """
        import numpy as np

        words = np.array([*self.vocab, None], dtype=object)  # code -1 reads the last: None
        return {c: words[a] if c in TEXT_COLUMNS else a for c, a in self.arrays.items()}

    def recoded(self, code: dict[str, int]) -> Arrays:
        """The arrays with each text code turned into the code `code` gives its text (-1, no text,
        stays -1)."""
        import numpy as np

        mapping = np.array([code[v] for v in self.vocab] + [-1], dtype="int32")  # mapping[-1] == -1
        return {c: mapping[a] if c in TEXT_COLUMNS else a for c, a in self.arrays.items()}

    @classmethod
    def concat(cls, parts: Sequence[CallColumns]) -> CallColumns:
        """One batch of all `parts`, with one vocabulary (each string once: DuckDB reads it holding
        the GIL) and each part's codes mapped into it."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.from_rows([])
        import numpy as np

        vocab = sorted({v for p in parts for v in p.vocab})
        code = {v: i for i, v in enumerate(vocab)}
        mapped = [p.recoded(code) for p in parts]
        return cls({c: np.concatenate([m[c] for m in mapped]) for c in CALL_COLUMNS}, vocab)
