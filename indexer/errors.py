"""Errors a user can act on; every command turns them into one line and exit status 2.

CcoError                 base: str(exc) is the whole message shown to the user
├── IndexCorrupt         the index file cannot be opened as a DuckDB database
├── IndexLocked          another process holds the index (the message names it)
├── IndexDenied          the index file or its folder may not be read or written (permissions)
├── IndexNewer           the index was written by a newer cco (a schema this version does not know)
├── BadInput             a user-supplied value is invalid (dates, prices, options)
├── ServiceError         a running service could not be reached or refused a request
└── WorkerDied           a parser process ended in the middle of a pass (killed, out of memory)
"""

from __future__ import annotations


class CcoError(Exception):
    """An error with a message meant for the user."""


class IndexCorrupt(CcoError):
    pass


class _Held(CcoError):
    """An error caused by process `pid` holding index file `db` (None, "": not known), which a
    command may wait out (api/client.handed_over)."""

    def __init__(self, message: str, pid: int | None = None, db: str = "") -> None:
        super().__init__(message)
        self.pid = pid
        self.db = db


class IndexLocked(_Held):
    """`pid`: the process holding the lock, when DuckDB's message names it."""


class IndexDenied(CcoError):
    pass


class IndexNewer(CcoError):
    pass


class BadInput(CcoError):
    pass


class ServiceError(_Held):
    """`pid`: the service that dropped or refused the connection, or answered 503 marked stopping,
    while its run file is up (it is stopping); None for any other failure."""


class WorkerDied(CcoError):
    @classmethod
    def in_rebuild(cls, db: object) -> WorkerDied:
        """The error with a rebuild's advice instead of a sync's: nothing of `db` was replaced."""
        return cls(
            f"a parser process ended in the middle of the rebuild (killed, or out of memory?); "
            f"{db} is unchanged: run the rebuild again"
        )
