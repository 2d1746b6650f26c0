"""Wake the reader when a transcript changes: a supervised watchdog observer over every source tree.

The idea: file events are hints, not data. inotify, FSEvents and Windows all drop events under
load, so an event only wakes the reader, and what is read is decided by a scan (at start-up, on
every wake and on a periodic full rescan) that compares each file with its stored state. A lost
event therefore costs latency, never lines.

The observer is supervised: a thread checks it every `supervise_s`; if the observer or one of its
emitter threads died, it is rebuilt (and the failure logged), and the reader is woken in case
events were lost meanwhile. If the OS refuses more watches (inotify's ENOSPC / EMFILE limits)
the watcher falls back to polling and says so in `mode` and `error` (shown in health). Roots that
do not exist yet are picked up once they appear; recursive watches cover folders created later.
A watch does not see through a link to a folder outside the roots (the reader follows such links),
so each target gets a watch of its own whose events are renamed to the paths under the link; the
links are listed again whenever folders come and go.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserver

from indexer.sources import linked_folders

log = logging.getLogger("cco.watch")

SUPERVISE_S = 1.0
POLL_S = 1.0
_LIMIT_ERRNOS = frozenset({errno.ENOSPC, errno.EMFILE})
# What the OS is asked to report at all. Without a filter inotify also reports every open and
# close-without-write: anyone reading the transcripts (our own reads, ccusage, a rebuild) floods
# the queue until it overflows, and each overflow makes watchdog walk the whole tree again.
_EVENT_FILTER = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileDeletedEvent,
    FileClosedEvent,
    DirCreatedEvent,
    DirMovedEvent,
    DirDeletedEvent,
]
# The same events, as the handler sees them (a polling observer is not filtered by the OS): reading a
# transcript (opened, closed_no_write) must not wake the reader.
_FILE_EVENTS = frozenset(e.event_type for e in _EVENT_FILTER if not e.is_directory)
_DIR_EVENTS = frozenset(e.event_type for e in _EVENT_FILTER if e.is_directory)

ObserverFactory = Callable[[], Any]


def is_watch_limit(exc: BaseException) -> bool:
    """True for the OS refusing more watches (inotify's max_user_watches / max_user_instances)."""
    return isinstance(exc, OSError) and (exc.errno in _LIMIT_ERRNOS or "inotify" in str(exc).lower())


# wake(paths): the transcripts that changed, or None when only a scan of the tree can tell (a folder
# appeared or moved, the observer was restarted and may have missed events).
Wake = Callable[[list[str] | None], None]


class _Wake(FileSystemEventHandler):
    """Turns relevant events into a wake-up call; never raises (that would kill the observer).

    For the watches on linked folders' targets, `rename` turns a path under a target into the path
    the index knows (under its link). `folders_changed` is called when folders (or links to
    folders) come, go or move, which may add or drop linked folders to watch.
    """

    def __init__(
        self,
        wake: Wake,
        folders_changed: Callable[[], None] = lambda: None,
        rename: Callable[[str], str] | None = None,
    ) -> None:
        super().__init__()
        self._wake = wake
        self._folders_changed = folders_changed
        self._rename = rename

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            kind = event.event_type
            if event.is_directory:
                if kind in _DIR_EVENTS:
                    self._folders_changed()
                    self._wake(None)
            elif kind in _FILE_EVENTS:
                paths = [os.fsdecode(event.src_path), os.fsdecode(getattr(event, "dest_path", "") or "")]
                changed = [self._seen_as(p) for p in paths if p.endswith(".jsonl")]
                if changed:
                    self._wake(changed)
                elif kind == "created" and os.path.islink(paths[0]) and os.path.isdir(paths[0]):
                    self._folders_changed()  # a link to a folder: inotify reports it as a file
                    self._wake(None)
                elif kind in ("deleted", "moved"):
                    self._folders_changed()  # maybe a folder link gone: its target's watch goes too
        except Exception:  # a broken callback must not take the observer down
            log.exception("file event handler failed")

    def _seen_as(self, path: str) -> str:
        return self._rename(path) if self._rename is not None else path


class Watcher:
    """A supervised observer over `roots` that calls `wake(paths)` when transcripts may have changed."""

    def __init__(
        self,
        roots: Sequence[Path],
        wake: Wake,
        *,
        observer_factory: ObserverFactory | None = None,
        polling: bool = False,
        supervise_s: float = SUPERVISE_S,
        poll_s: float = POLL_S,
    ) -> None:
        self.roots = [Path(r) for r in roots]
        self._wake = wake
        self._handler = _Wake(wake, self._folders_changed)
        self._factory = observer_factory or Observer
        self._poll_s = poll_s
        self._supervise_s = supervise_s
        self.mode = "polling" if polling else "events"
        self.error: str | None = None  # why we poll instead of receiving events
        self.last_failure: str | None = None  # the last observer death or failed restart
        self.restarts = 0
        self.started = False  # start() has run (the service starts it once its catch-up is done)
        self._observer: Any = None
        self._watched: set[Path] = set()
        self._links: list[tuple[str, str]] = []  # (link, target) of the linked folders watched
        self._relink = False  # folders changed since the links were listed
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None

    # --- public -----------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._stop.is_set():  # stopped before it started (a shutdown during start-up)
                return
            try:
                self._observer = self._start_observer()
            except OSError as exc:  # e.g. an unreadable root: the supervisor keeps trying
                self.last_failure = f"file watcher did not start: {exc}"
                log.warning("%s", self.last_failure)
            # Set once started, under the lock: a stop() meanwhile (a shutdown during start-up)
            # must not find a thread it cannot join yet.
            supervisor = threading.Thread(target=self._supervise, name="cco-watch-supervisor", daemon=True)
            supervisor.start()
            self._supervisor = supervisor
            self.started = True

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        with self._lock:
            supervisor = self._supervisor
        if supervisor is not None:
            supervisor.join(timeout)
        with self._lock:
            self._halt(self._observer, timeout)
            self._observer = None

    @property
    def observer(self) -> Any:
        """The current observer (tests stop it to check the supervisor)."""
        return self._observer

    @property
    def alive(self) -> bool:
        return self._healthy(self._observer)

    @property
    def watched(self) -> list[str]:
        return sorted(str(p) for p in self._watched)

    def status(self) -> dict[str, Any]:
        return {
            "alive": self.alive,
            "started": self.started,
            "mode": self.mode,
            "restarts": self.restarts,
            "watched": self.watched,
            "error": self.error,
            "last_failure": self.last_failure,
        }

    # --- internals ----------------------------------------------------------------------------

    def _new_observer(self) -> Any:
        if self.mode == "polling":
            return PollingObserver(timeout=self._poll_s)
        return self._factory()

    def _start_observer(self) -> Any:
        """A running observer over every existing root, falling back to polling at the watch limit."""
        while True:
            observer = self._new_observer()
            watched: set[Path] = set()
            self._relink = False
            links = linked_folders(self.roots)
            try:
                for root in self.roots:
                    if root.is_dir():
                        observer.schedule(self._handler, str(root), recursive=True, event_filter=_EVENT_FILTER)
                        watched.add(root)
                # A watch does not follow links: each target gets its own. One target may lie inside
                # another (both get events then): a path goes by the deepest target holding it.
                by_depth = sorted(((t + os.sep, link + os.sep) for link, t in links), key=lambda v: -len(v[0]))

                def rename(path: str, by_depth: list[tuple[str, str]] = by_depth) -> str:
                    for target, link in by_depth:
                        if path.startswith(target):
                            return link + path[len(target) :]
                    return path

                handler = _Wake(self._wake, self._folders_changed, rename)
                for _, target in links:
                    observer.schedule(handler, target, recursive=True, event_filter=_EVENT_FILTER)
                    watched.add(Path(target))
                observer.start()
            except OSError as exc:
                self._halt(observer, 1.0)
                if self.mode != "polling" and is_watch_limit(exc):
                    self._fall_back(exc)
                    continue
                raise
            self._watched = watched
            self._links = links
            return observer

    def _folders_changed(self) -> None:
        self._relink = True

    def _fall_back(self, exc: BaseException) -> None:
        self.mode = "polling"
        self.error = f"OS watch limit reached ({exc}); polling every {self._poll_s:g} s"
        log.warning("file watcher: %s", self.error)

    @staticmethod
    def _healthy(observer: Any) -> bool:
        """The observer, its emitters and (watchdog >= 6 on Linux) its inotify reader thread all run."""
        if observer is None or not observer.is_alive():
            return False
        reader = getattr(observer, "_inotify_fd", None)
        if isinstance(reader, threading.Thread) and not reader.is_alive():
            return False
        return all(e.is_alive() for e in list(observer.emitters))

    @staticmethod
    def _halt(observer: Any, timeout: float) -> None:
        if observer is None:
            return
        try:
            observer.stop()
            if observer.is_alive():
                observer.join(timeout)
        except Exception:  # stopping a broken observer must not stop shutdown
            log.debug("stopping observer failed", exc_info=True)

    def _supervise(self) -> None:
        while not self._stop.wait(self._supervise_s):
            try:
                self._check()
            except Exception as exc:  # keep supervising; try again next tick
                self.last_failure = f"file watcher restart failed: {exc}"
                log.warning("%s", self.last_failure)

    def _check(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            healthy = self._healthy(self._observer)
            appeared = [r for r in self.roots if r not in self._watched and r.is_dir()]
            relinked = False
            # A dead observer is also looked at this way: a linked folder removed ends its emitter,
            # and the check may come before the event that says the folders changed.
            if self._relink or not healthy:
                self._relink = False
                relinked = linked_folders(self.roots) != self._links
            if healthy and not appeared and not relinked:
                return
            if not healthy and not relinked:  # a linked folder removed ends its emitter: no failure
                self.restarts += 1
                self.last_failure = "file watcher thread died; restarted"
                log.warning("file watcher thread died; restarting it (restart %d)", self.restarts)
            self._halt(self._observer, 1.0)
            self._observer = None
            self._observer = self._start_observer()
        # Events may have been lost while it was down, and new roots hold files never scanned.
        self._wake(None)
