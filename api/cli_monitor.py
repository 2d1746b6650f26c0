"""`cco monitor`: the terminal view of a running service (issue 6)."""

from __future__ import annotations


def monitor_cmd() -> None:
    """Watch a running cco service in the terminal."""
    raise NotImplementedError
