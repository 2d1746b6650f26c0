"""What every route shares: JSON answers, the one error shape, and checked query parameters.

The idea: a bad parameter raises BadParam (or BadInput from the indexer's validators) with a
message that says which parameter and why; each route turns either into `{"error": ...}` with
400, so every endpoint refuses bad input the same way.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from indexer.errors import BadInput


class BadParam(ValueError):
    """A query parameter that cannot be used; the message says which and why."""


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def unavailable(message: str, stopping: bool) -> Response:
    """503; `stopping` marks the answer of a service that is shutting down (api/client.py waits for
    such a service to let go of the index instead of reporting the error)."""
    return json_response({"error": message, **({"stopping": True} if stopping else {})}, 503)


def only_params(request: Request, *known: str) -> None:
    """BadInput for the first query parameter not in `known` (a typo must not be silently ignored);
    names may be given with dashes instead of underscores."""
    for name in request.query_params:
        if name.replace("-", "_") not in known:
            raise BadInput(f"unknown parameter {name!r}; use {', '.join(known) or 'none'}")


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise BadParam(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise BadParam(f"{name} must be between {low} and {high}, got {value}")
    return value
