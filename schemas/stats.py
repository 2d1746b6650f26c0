"""StatsSnapshot: what `/api/stats` serves, recomputed by the service every few seconds."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StatsSnapshot:
    timestamp: str  # ISO-8601 UTC, when the snapshot was computed
    uptime_s: float
    port: int
    total_requests: int  # calls including failed ones
    successful_requests: int
    failed_requests: int
    avg_response_time_ms: float | None  # mean estimated latency
    total_cost: float
    total_tokens: int
    input_tokens: int
    output_tokens: int
    cache_creation_tokens: int
    cache_read_tokens: int
    cache_savings: float
    messages_count: int  # transcript lines indexed
    today_cost: float  # local day
    today_tokens: int
    calls_per_minute: float  # over the last 10 minutes
    cost_per_minute: float
    active_projects: int
    last_activity: str | None  # ISO-8601 UTC of the newest call
