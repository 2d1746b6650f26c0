from typing import Any

def scan(
    data: bytes | bytearray,
    pos: int,
    end: int,
    last_user_ms: int | None,
    calls: list[tuple[Any, ...]],
    odd: list[tuple[int, int]],
) -> tuple[int, int | None, int]: ...
