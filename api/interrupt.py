"""Signals that stop a command at its next safe point instead of wherever its main thread is.

The idea: Python raises KeyboardInterrupt between any two bytecodes, also inside a DuckDB
statement, which then aborts under the transaction's own rollback and surfaces as "Query
interrupted" with a traceback. A command that can stop cleanly (a sync, a rebuild) turns the
signal into an event instead and checks it where stopping loses nothing (ingest.Stopped).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def interruptible(*signals: signal.Signals) -> Iterator[threading.Event]:
    """An event that `signals` (default: SIGINT, Ctrl-C) set while the block runs; their previous
    handlers come back after it."""
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in signals or (signal.SIGINT,)}
    try:
        yield stopping
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
