"""Errors a user can act on; every command turns them into one line and exit status 2.

CcoError                 base: str(exc) is the whole message shown to the user
├── IndexCorrupt         the index file cannot be opened as a DuckDB database
├── IndexLocked          another process holds the index (the message names it)
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
    pass


class BadInput(CcoError):
    pass


class ServiceError(CcoError):
    pass


class WorkerDied(CcoError):
    pass
