"""`cco monitor`: the terminal view of a running service (issue 6); the drawing lives in api/monitor.py.

Without --url it watches the service of the default index, found through the run file that
`cco index run` leaves beside the index (so a service started with another --port is found too).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import typer

from api import monitor
from api.output import fail
from indexer.paths import default_db
from indexer.runfile import read_run_file


def service_url(url: str | None) -> str:
    """--url if given (http:// when it names no scheme), else the running service of the default
    index, else the default address."""
    if url:
        if "://" not in url:
            url = "http://" + url
        if not url.startswith(("http://", "https://")) or not urlsplit(url).hostname:
            raise ValueError(f"--url must be the service's address, e.g. http://127.0.0.1:3000, got {url!r}")
        return url
    return running_url() or monitor.DEFAULT_URL


def running_url() -> str | None:
    """Where the default index's service is now (its run file), or None when none runs."""
    info = read_run_file(default_db())
    return info.url if info is not None else None


def monitor_cmd(
    url: str | None = typer.Option(
        None,
        "--url",
        help=f"Base URL of the running `cco index run` service. Default: the default index's service, "
        f"else {monitor.DEFAULT_URL}.",
        show_default=False,
    ),
    interval: float = typer.Option(monitor.DEFAULT_INTERVAL_S, "--interval", min=0.1, help="Seconds between polls."),
    token_limit: str | None = typer.Option(
        None, "--token-limit", help="Tokens per 5-hour block to measure the active block against, or 'max'."
    ),
) -> None:
    """Watch a running cco service in the terminal (q or Ctrl-C quits).

    A service that requires a token (bound beyond loopback) is asked with CCO_TOKEN.
    """
    try:
        monitor.parse_token_limit(token_limit)
        base = service_url(url)
    except ValueError as exc:
        fail(str(exc))
    # Without --url, a service restarted (on another port) is found again through its run file.
    monitor.run(url=base, interval=interval, token_limit=token_limit, locate=None if url else running_url)
