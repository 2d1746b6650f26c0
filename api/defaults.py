"""Defaults of the live service, in a module of their own so `cco --help` need not import the service."""

from __future__ import annotations

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
DEFAULT_INTERVAL = 2.0  # seconds between snapshots
DEFAULT_RESCAN = 30.0  # seconds between full rescans (events get lost under load)
