"""Hot reload of the user's price file for a running service.

The idea: the service calls `check()` about once a second; a `stat` is all it costs until the
file's identity (inode, size, mtime, ctime) changes, and only then is the file read and validated. A good
file replaces the prices in force; a bad one leaves the last good prices in force and is reported
through `error` (the health endpoint shows it) until a later version of the file is good. When
`check()` returns True the caller re-applies `book` to its index (pricing.apply_prices), so every
total reflects the new prices from the next snapshot on.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from indexer.errors import BadInput
from indexer.pricing import PriceBook, bundled, load_book

# (device, inode, size, mtime_ns, ctime_ns); None when there is no file; the reason when it cannot
# be looked at (a symlink loop, no permission), so the same failure is seen, and told, once.
Signature = tuple[int, int, int, int, int] | str | None


def file_signature(path: Path) -> Signature:
    """What changes when the file is written (or made, or removed): a stat, no read. Never raises."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class PriceWatcher:
    """The prices in force for a running service, reloaded when the user's file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.book: PriceBook = bundled()
        self.error: str | None = None  # the last reload problem, None once a good file is read
        self._digest: bytes | None = None  # of the last good file's bytes (None: no file)
        self._seen: Signature = file_signature(path)
        self._load()

    def check(self) -> bool:
        """Reload if the file changed since the last look; True when the prices in force changed."""
        sig = file_signature(self.path)
        if sig == self._seen:
            return False
        self._seen = sig
        return self._load()

    def _load(self) -> bool:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = None
        except OSError as exc:
            self.error = f"{self.path}: cannot read ({exc.strerror}); keeping the last good prices"
            return False
        digest = None if data is None else hashlib.blake2b(data, digest_size=16).digest()
        if digest == self._digest and self.error is None:
            return False  # touched or rewritten with the same content
        try:
            book = load_book(self.path, data) if data is not None else bundled()
        except BadInput as exc:
            self.error = f"{exc}; keeping the last good prices"
            return False
        self._digest = digest
        self.error = None
        changed = book != self.book
        self.book = book
        return changed
