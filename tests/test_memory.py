from __future__ import annotations

from api.memory import release_memory, tune_malloc


def test_helpers_run_anywhere() -> None:
    tune_malloc()
    release_memory()
