"""Read Claude Code transcripts, price and store their calls in DuckDB, and answer queries."""
