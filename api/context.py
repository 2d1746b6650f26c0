"""What the HTTP routes need from the running service, passed in (never imported as globals).

The idea (Datasette's): `create_app(ctx)` builds the app from this object, so tests build one
over a temporary index and talk to the app in-process with TestClient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from indexer.engine import duckdb
from indexer.metrics import Memo
from indexer.pricing import PriceBook


@dataclass
class AppContext:
    db_path: Path
    # A fresh read cursor on the index for each call (DuckDB cursors are per-thread).
    reader: Callable[[], duckdb.DuckDBPyConnection]
    # The prices in force now (hot-reloaded by the service).
    book: Callable[[], PriceBook]
    machine: str
    port: int = 0
    cost_mode: str = "auto"
    allowed_hosts: list[str] = field(default_factory=list)
    token: str | None = None
    # Answers kept until the index changes; the service shares its own (versioned by its commits)
    # with the routes, so the snapshot task and the requests compute each answer once.
    memo: Memo | None = None
