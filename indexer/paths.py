"""Where cco keeps its files: one function per place, all under CCO_HOME when it is set.

The idea (llm's): every path derives from a single user folder with an environment override, so
tests point CCO_HOME at a temporary folder and never touch the real home directory.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "cco"


def data_dir() -> Path:
    home = os.environ.get("CCO_HOME")
    if home:
        return Path(home)
    import platformdirs  # imported when used: a short-lived command saves ~10 ms

    return Path(platformdirs.user_data_dir(APP))


def config_dir() -> Path:
    home = os.environ.get("CCO_HOME")
    if home:
        return Path(home)
    import platformdirs

    return Path(platformdirs.user_config_dir(APP))


def default_db() -> Path:
    return data_dir() / "index.duckdb"


def db_path(db: Path | None) -> Path:
    """The index file: `--db` when given, else the default one."""
    return (db or default_db()).expanduser()


def pricing_file() -> Path:
    return config_dir() / "pricing.toml"


def run_file(db: Path) -> Path:
    """The file beside the index that names the running service (pid, port)."""
    return db.with_name(db.name + ".run.json")
