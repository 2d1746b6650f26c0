"""`cco report …`: daily, weekly, monthly, session and 5-hour block reports (issue 5)."""

from __future__ import annotations

import typer

report_app = typer.Typer(help="Usage and cost reports from the index.", no_args_is_help=True)
