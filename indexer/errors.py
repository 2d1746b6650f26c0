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


class IndexLocked(CcoError):
    """`holder`: the pid holding the lock of index file `db`, when DuckDB's message names it."""

    def __init__(self, message: str, holder: int | None = None, db: str = "") -> None:
        super().__init__(message)
        self.holder = holder
        self.db = db


class IndexDenied(CcoError):
    pass


class IndexNewer(CcoError):
    pass


class BadInput(CcoError):
    pass


class ServiceError(CcoError):
    """`refused_by`: the pid of the service for index file `db` that refused the connection or
    answered 503 while its run file is up (it is stopping)."""

    def __init__(self, message: str, refused_by: int | None = None, db: str = "") -> None:
        super().__init__(message)
        self.refused_by = refused_by
        self.db = db


class WorkerDied(CcoError):
    pass
