"""The index's summary, as `cco index status --json` prints it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IndexStatus:
    db: str
    files_live: int
    files_gone: int
    calls: int
    failed_calls: int
    input_tokens: int
    output_tokens: int
    cache_creation_tokens: int
    cache_read_tokens: int
    total_tokens: int
    total_cost: float | None
    rejected_lines: int
    lines: int
    bytes_indexed: int
    db_size: int
    last_ingest: str | None
    unpriced_models: dict[str, int] = field(default_factory=dict)
