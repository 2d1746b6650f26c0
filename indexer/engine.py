"""DuckDB for cco: its compiled engine `_duckdb`, without the Python layer of the `duckdb` package.

The idea: `import duckdb` costs ~100 ms and several MB (its relational API, Arrow and Polars glue
and version metadata pull in importlib.metadata and more), and cco uses none of it: the package
re-exports the engine's connection and exception classes, so they are the same objects either
way. Where the engine cannot be imported on its own (another packaging), the package is used.
Modules write `from indexer.engine import duckdb` and use it as they would the package.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb
else:
    try:
        import _duckdb as duckdb
    except ImportError:  # pragma: no cover - a duckdb build without a separate engine module
        import duckdb

__all__ = ["duckdb", "rollback", "transaction"]


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back after a failure, leaving that failure the one raised: an interrupted statement (Ctrl-C,
    shutdown) may have ended the transaction already, and DuckDB then says "no transaction is
    active", which would hide the real cause behind a false hint that the index is damaged."""
    with contextlib.suppress(duckdb.Error):
        con.execute("ROLLBACK")


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """The block in one transaction: committed at its end, rolled back (rollback) if anything in it,
    or the commit, fails, that failure then raised."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        rollback(con)
        raise
