"""Where cco keeps its files: one function per place, all under CCO_HOME when it is set.

The idea (llm's): every path derives from a single user folder with an environment override, so
tests point CCO_HOME at a temporary folder and never touch the real home directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from indexer.errors import BadInput

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
    """The index file: `--db` when given, else the default one; through a symbolic link, the file
    it points to (a rebuild replaces the file, not the link).

    BadInput when the path cannot be an index file: no file name, a folder or a device (a rebuild
    would replace it), or a parent that is not a folder.
    """
    path = (db or default_db()).expanduser()
    if not path.name or path.name == "..":
        raise BadInput(f"--db needs a file name, got {str(db)!r}")
    if path.is_symlink():
        path = path.resolve()
    if path.exists() and not path.is_file():
        kind = "a folder" if path.is_dir() else "not a regular file"
        raise BadInput(f"{path} is {kind}; --db must name an index file (it is created if missing)")
    if path.parent.exists() and not path.parent.is_dir():
        raise BadInput(f"cannot keep an index at {path}: {path.parent} is not a folder")
    return path


def pricing_file() -> Path:
    return config_dir() / "pricing.toml"


def run_file(db: Path) -> Path:
    """The file beside the index that names the running service (pid, port)."""
    return db.with_name(db.name + ".run.json")
