"""`cco config …`: prices and settings (filled in by the pricing work, issue 3)."""

from __future__ import annotations

import typer

config_app = typer.Typer(help="Prices and settings.", no_args_is_help=True)
