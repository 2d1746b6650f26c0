"""`cco index run`: the live service (issue 4)."""

from __future__ import annotations


def run_cmd() -> None:
    """Run the live service: tail transcripts and serve /api/stats."""
    raise NotImplementedError
