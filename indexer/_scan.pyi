from typing import Any

def scan(
    data: bytes | bytearray,
    pos: int,
    end: int,
    last_user_ms: int | None,
    calls: list[Any],
    odd: list[tuple[int, int]],
    row_type: type[tuple[Any, ...]],
    session: str,
    project_fallback: str,
    agent_id: str | None,
) -> tuple[int, int | None, int]: ...
def hash64(data: bytes | bytearray) -> int: ...
