"""The user's settings file (`config.toml` in the config folder) and safe writes of config files.

The idea (Datasette's): every setting is declared once, as (name, default, help, choices), and
that one declaration drives validation, `cco config show` and `cco config set`. Config files are
written whole to a temporary file and renamed over the old one, so a reader (or a crash) sees the
old file or the new one, never half of one; a bad file is an error naming its line, never a guess.
"""

from __future__ import annotations

import contextlib
import os
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from indexer.errors import BadInput
from indexer.paths import config_dir
from schemas.pricing import COST_MODES

# Patterns are compiled on first use (re caches them): every report reads settings, few need these.
_TOML_POSITION = r"(?s)^(?P<msg>.*?) \(at line (?P<line>\d+), column (?P<col>\d+)\)$"
_BARE_KEY = r"^[A-Za-z0-9_-]+$"


class Setting(NamedTuple):
    name: str  # key in config.toml; the CLI also accepts it with dashes (cost-mode)
    default: str
    help: str
    choices: tuple[str, ...]


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "cost_mode",
            "auto",
            "How cost is computed when a command gets no --mode: auto (the line's costUSD when present, "
            "else calculated), calculate (always from prices), display (costUSD or 0).",
            COST_MODES,
        ),
    )
}


def settings_file() -> Path:
    return config_dir() / "config.toml"


# --- TOML files ---------------------------------------------------------------------------------


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a TOML file into (data, text); errors name the file, line and column."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from None
    return parse_toml(raw, path)


def parse_toml(raw: bytes, path: Path) -> tuple[dict[str, Any], str]:
    """Parse the bytes of TOML file `path` into (data, text)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BadInput(f"{path} line {line}: not valid UTF-8") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        m = re.match(_TOML_POSITION, str(exc))
        if m:
            raise BadInput(f"{path} line {m['line']}, column {m['col']}: {m['msg']}") from None
        msg = str(exc)
        if msg.endswith(" (at end of document)"):
            last = len(text.splitlines()) or 1
            raise BadInput(f"{path} line {last}: {msg.removesuffix(' (at end of document)')} at end of file") from None
        raise BadInput(f"{path}: {msg}") from None


def toml_key(key: str) -> str:
    """A TOML key: bare when it may be, else a basic string."""
    return key if re.match(_BARE_KEY, key) else toml_string(key)


def toml_string(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_value(value: str | float | int) -> str:
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, bool):  # not written by us, but never let True become 1
        return "true" if value else "false"
    return repr(float(value)) if isinstance(value, float) else str(value)


@contextlib.contextmanager
def editing(path: Path) -> Iterator[None]:
    """Hold the lock for a read-modify-write of `path`: an exclusive flock on its folder, so edits
    made at once by several commands (each reads, changes, writes) all land. No lock where the
    system has no flock (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    _make_folder(path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _make_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise BadInput(f"cannot write {path}: a file stands where its folder should be") from None


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename (temporary file in the same folder, fsynced first)."""
    import tempfile  # only writers need it (every report reads settings)

    _make_folder(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def line_of_key(text: str, key: str) -> int | None:
    """The line (1-based) where top-level `key` is set, for error messages."""
    pattern = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for i, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("["):
            return None
        if pattern.match(line):
            return i
    return None


# --- settings -----------------------------------------------------------------------------------


def setting_named(name: str) -> Setting:
    """The setting for a name as users type it (cost-mode or cost_mode)."""
    key = name.replace("-", "_")
    if key not in SETTINGS:
        known = ", ".join(s.replace("_", "-") for s in SETTINGS)
        raise BadInput(f"unknown setting {name!r}; known: {known}")
    return SETTINGS[key]


def choice(value: Any, allowed: tuple[str, ...], label: str) -> str:
    """`value` as one of `allowed` (any case, blanks around ignored); BadInput names it as `label`."""
    low = value.strip().lower() if isinstance(value, str) else None
    if low not in allowed:
        raise BadInput(f"{label} must be one of {', '.join(allowed)}, got {value!r}")
    return low


def _check(setting: Setting, value: Any, label: str | None = None) -> str:
    """`value` as one of the setting's choices; BadInput names it as `label` (default: its key)."""
    return choice(value, setting.choices, label or setting.name)


def read_settings(path: Path | None = None, *, skip: str | None = None) -> dict[str, str]:
    """Only the settings the file sets (empty when there is no file); BadInput names the line.

    Keys are read as the CLI names them too (cost-mode or cost_mode). `skip`: a setting left out
    unread (one about to be replaced, even if its value is bad).
    """
    path = path or settings_file()
    if not path.exists():
        return {}
    data, text = read_toml(path)
    out: dict[str, str] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name == skip:
            continue
        line = line_of_key(text, key)
        where = f"{path} line {line}" if line else str(path)
        if name not in SETTINGS:
            known = ", ".join(SETTINGS)
            raise BadInput(f"{where}: unknown setting {key!r}; known: {known}")
        out[name] = _check(SETTINGS[name], value, f"{where}: {key}")
    return out


def load_settings(path: Path | None = None) -> dict[str, str]:
    """Every setting: the file's value, else the default."""
    return {**{s.name: s.default for s in SETTINGS.values()}, **read_settings(path)}


def set_setting(name: str, value: str, path: Path | None = None) -> Setting:
    """Validate and store one setting; the file is untouched when anything is wrong."""
    setting = setting_named(name)
    value = _check(setting, value, setting.name.replace("_", "-"))
    path = path or settings_file()
    with editing(path):
        try:
            kept = read_settings(path, skip=setting.name)
        except BadInput as exc:  # not TOML: what else it holds cannot be kept, so nothing is written
            raise BadInput(f"{exc} (fix that line, or delete {path}: `cco config set` then writes it anew)") from None
        current = {**kept, setting.name: value}
        lines = ["# cco settings (`cco config set NAME VALUE`, `cco config show`)"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in current.items()]
        write_atomic(path, "\n".join(lines) + "\n")
    return setting


def default_cost_mode() -> str:
    """The cost mode for commands whose --mode is not given."""
    return load_settings()["cost_mode"]


def resolve_cost_mode(mode: str | None) -> str:
    """`--mode` when given (checked), else the configured default."""
    if mode is None:
        return default_cost_mode()
    return _check(SETTINGS["cost_mode"], mode, "--mode")
