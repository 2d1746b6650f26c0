"""`cco monitor`: the terminal view of a running service (issue 6); the drawing lives in api/monitor.py."""

from __future__ import annotations

import typer

from api import monitor
from api.output import fail


def monitor_cmd(
    url: str = typer.Option(monitor.DEFAULT_URL, "--url", help="Base URL of the running `cco index run` service."),
    interval: float = typer.Option(monitor.DEFAULT_INTERVAL_S, "--interval", min=0.1, help="Seconds between polls."),
    token_limit: str | None = typer.Option(
        None, "--token-limit", help="Tokens per 5-hour block to measure the active block against, or 'max'."
    ),
) -> None:
    """Watch a running cco service in the terminal (q or Ctrl-C quits)."""
    try:
        monitor.parse_token_limit(token_limit)
    except ValueError as exc:
        fail(str(exc))
    monitor.run(url=url, interval=interval, token_limit=token_limit)
