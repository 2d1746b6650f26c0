"""The watcher wakes the reader on transcript changes, survives its observer's death, and polls at the watch limit."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from watchdog.observers import Observer

from indexer.sources import iter_transcripts, linked_folders
from indexer.watch import Watcher, is_watch_limit
from tests.live_helpers import wait_for

# watchdog's inotify thread warns when fast nested mkdirs race its recursive watch; under
# filterwarnings=error that warning would kill the thread, so it is only a warning here, as in use.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


class Counter:
    def __init__(self) -> None:
        self.n = 0
        self.paths: list[str | None] = []
        self.lock = threading.Lock()

    def __call__(self, paths: list[str] | None) -> None:
        with self.lock:
            self.n += 1
            self.paths += paths if paths is not None else [None]

    def quiet(self, seconds: float = 0.4) -> int:
        """Wait until no wake came for `seconds`; the count then."""
        last = -1
        while last != self.n:
            last = self.n
            time.sleep(seconds)
        return self.n


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "projects"
    (r / "proj").mkdir(parents=True)
    (r / "proj" / "s.jsonl").write_bytes(b"{}\n")
    return r


@pytest.fixture
def watched(root: Path) -> Iterator[tuple[Watcher, Counter]]:
    wakes = Counter()
    w = Watcher([root], wakes, supervise_s=0.05)
    w.start()
    yield w, wakes
    w.stop()


def test_append_wakes(root: Path, watched: tuple[Watcher, Counter]) -> None:
    w, wakes = watched
    assert w.alive and w.mode == "events" and w.watched == [str(root)]
    before = wakes.quiet()
    with (root / "proj" / "s.jsonl").open("ab") as f:
        f.write(b"{}\n")
    wait_for(lambda: wakes.n > before, timeout=5)
    assert set(wakes.paths[before:]) == {str(root / "proj" / "s.jsonl")}  # which file, so no tree walk


def test_linked_folders_are_watched_under_their_links(tmp_path: Path, root: Path) -> None:
    """A project folder that links outside the tree (on another disk, say) is read under the link's
    path; its target's events wake the reader with that path, also for a link made while running."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "a").mkdir(parents=True)
    (elsewhere / "b").mkdir()
    (root / "-w-a").symlink_to(elsewhere / "a")
    (root / "-w-inside").symlink_to(root / "proj")  # inside the tree: the root's watch covers it
    wakes = Counter()
    w = Watcher([root], wakes, supervise_s=0.05)
    w.start()
    try:
        assert w.watched == sorted([str(root), str(elsewhere / "a")])
        for link, target in (("-w-a", elsewhere / "a"), ("-w-b", elsewhere / "b")):
            if not (root / link).exists():
                (root / link).symlink_to(target)  # made while running
                wait_for(lambda target=target: str(target) in w.watched, timeout=5)
            before = wakes.quiet()
            with (target / "s.jsonl").open("ab") as f:
                f.write(b"{}\n")
            wait_for(lambda before=before: wakes.n > before, timeout=5)
            assert set(wakes.paths[before:]) == {str(root / link / "s.jsonl")}
    finally:
        w.stop()


def test_reads_are_not_even_reported(root: Path, watched: tuple[Watcher, Counter]) -> None:
    """Opening and reading transcripts (ours, ccusage's, a rebuild's) must not reach the handler:
    a flood of such events overflows inotify's queue, and every overflow walks the whole tree."""
    w, wakes = watched
    seen: list[str] = []
    handler = w._handler
    original = handler.on_any_event
    handler.on_any_event = lambda event: (seen.append(event.event_type), original(event))  # type: ignore[method-assign]
    wakes.quiet()
    for _ in range(20):
        (root / "proj" / "s.jsonl").read_bytes()
    with (root / "proj" / "s.jsonl").open("ab") as f:
        f.write(b"{}\n")
    wait_for(lambda: "modified" in seen, timeout=5)
    assert not {"opened", "closed_no_write"} & set(seen)


def test_folder_created_later_is_watched(root: Path, watched: tuple[Watcher, Counter]) -> None:
    _, wakes = watched
    sub = root / "new-project" / "sess" / "subagents"
    sub.mkdir(parents=True)
    time.sleep(0.2)  # the recursive watch adds the new folders
    before = wakes.quiet()
    (sub / "agent-1.jsonl").write_bytes(b"{}\n")
    wait_for(lambda: wakes.n > before, timeout=5)
    before = wakes.quiet()
    with (sub / "agent-1.jsonl").open("ab") as f:
        f.write(b"{}\n")
    wait_for(lambda: wakes.n > before, timeout=5)


def test_reads_and_other_files_do_not_wake(root: Path, watched: tuple[Watcher, Counter]) -> None:
    _, wakes = watched
    before = wakes.quiet()
    (root / "proj" / "s.jsonl").read_bytes()  # the reader's own reads must not wake it again
    (root / "proj" / "notes.txt").write_text("x")
    (root / "proj" / "s.jsonl.tmp").write_text("x")
    assert wakes.quiet() == before


def test_observer_death_is_survived(root: Path, watched: tuple[Watcher, Counter]) -> None:
    w, wakes = watched
    first = w.observer
    first.stop()  # the observer thread ends, as if it had crashed
    first.join(2)
    wait_for(lambda: w.restarts == 1 and w.alive, timeout=5)
    assert w.observer is not first
    assert w.last_failure is not None and "died" in w.last_failure
    before = wakes.quiet()
    with (root / "proj" / "s.jsonl").open("ab") as f:
        f.write(b"{}\n")
    wait_for(lambda: wakes.n > before, timeout=5)


def test_dead_emitter_is_noticed(root: Path, watched: tuple[Watcher, Counter]) -> None:
    w, _ = watched
    for emitter in list(w.observer.emitters):
        emitter.stop()
    wait_for(lambda: w.restarts >= 1 and w.alive, timeout=5)


class LimitedObserver:
    """An observer whose OS refuses watches, like inotify at max_user_watches."""

    def __new__(cls) -> Any:
        obs = Observer()

        def schedule(*args: Any, **kwargs: Any) -> Any:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

        obs.schedule = schedule  # type: ignore[method-assign]
        return obs


def test_watch_limit_falls_back_to_polling(root: Path) -> None:
    wakes = Counter()
    w = Watcher([root], wakes, observer_factory=LimitedObserver, supervise_s=0.05, poll_s=0.1)
    w.start()
    try:
        assert w.mode == "polling" and w.alive
        assert w.error is not None and "watch limit" in w.error and "polling" in w.error
        status = w.status()
        assert status["mode"] == "polling" and status["alive"]
        before = wakes.quiet()
        with (root / "proj" / "s.jsonl").open("ab") as f:
            f.write(b"{}\n")
        wait_for(lambda: wakes.n > before, timeout=5)
    finally:
        w.stop()


def test_root_created_later_is_picked_up(tmp_path: Path) -> None:
    wakes = Counter()
    later = tmp_path / "later" / "projects"
    w = Watcher([later], wakes, supervise_s=0.05)
    w.start()
    try:
        assert w.watched == []
        later.mkdir(parents=True)
        wait_for(lambda: w.watched == [str(later)], timeout=5)
        before = wakes.quiet()
        (later / "a.jsonl").write_bytes(b"{}\n")
        wait_for(lambda: wakes.n > before, timeout=5)
    finally:
        w.stop()


def test_failing_callback_does_not_kill_the_observer(root: Path) -> None:
    calls: list[int] = []

    def wake(paths: list[str] | None) -> None:
        calls.append(1)
        raise RuntimeError("boom")

    w = Watcher([root], wake, supervise_s=0.05)
    w.start()
    try:
        (root / "proj" / "s.jsonl").write_bytes(b"{}\n{}\n")
        wait_for(lambda: calls, timeout=5)
        time.sleep(0.2)
        assert w.alive and w.restarts == 0
    finally:
        w.stop()


def test_is_watch_limit() -> None:
    assert is_watch_limit(OSError(errno.ENOSPC, "inotify watch limit reached"))
    assert is_watch_limit(OSError(errno.EMFILE, "inotify instance limit reached"))
    assert not is_watch_limit(OSError(errno.ENOENT, "gone"))
    assert not is_watch_limit(ValueError("x"))


def test_a_failed_start_is_retried(root: Path) -> None:
    attempts: list[int] = []

    def flaky() -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError(errno.EACCES, "permission denied")
        return Observer()

    wakes = Counter()
    w = Watcher([root], wakes, observer_factory=flaky, supervise_s=0.05)
    w.start()
    try:
        assert w.started  # started, and down (health says so) until the supervisor's retry
        wait_for(lambda: w.alive, timeout=5)
        assert w.mode == "events" and len(attempts) >= 2
        before = wakes.quiet()
        with (root / "proj" / "s.jsonl").open("ab") as f:
            f.write(b"{}\n")
        wait_for(lambda: wakes.n > before, timeout=5)
    finally:
        w.stop()


def test_dead_inotify_reader_is_noticed(root: Path, watched: tuple[Watcher, Counter]) -> None:
    w, wakes = watched
    reader = getattr(w.observer, "_inotify_fd", None)
    if not isinstance(reader, threading.Thread):
        pytest.skip("this watchdog has no separate inotify reader thread")
    reader.stop()  # type: ignore[attr-defined]
    reader.join(3)
    assert not reader.is_alive()
    wait_for(lambda: w.restarts >= 1 and w.alive, timeout=5)
    before = wakes.quiet()
    with (root / "proj" / "s.jsonl").open("ab") as f:
        f.write(b"{}\n")
    wait_for(lambda: wakes.n > before, timeout=5)


def test_stopped_before_started_never_watches(root: Path) -> None:
    """The service starts its watcher in a thread; a shutdown may come first."""
    w = Watcher([root], Counter(), supervise_s=0.05)
    w.stop()
    w.start()
    assert w.observer is None and not w.alive and not w.started
    w.stop()


def test_a_folder_reached_by_several_links_is_watched_under_the_one_it_is_read_through(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "projects", tmp_path / "elsewhere"
    (elsewhere / "deeper").mkdir(parents=True)
    (elsewhere / "s.jsonl").write_bytes(b"{}\n")
    (elsewhere / "deeper" / "t.jsonl").write_bytes(b"{}\n")
    root.mkdir()
    for name in ("-d", "-a", "-c", "-b"):
        (root / name).symlink_to(elsewhere)
    (elsewhere / "deeper" / "inner").symlink_to(tmp_path / "inner")  # a link inside a linked folder
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner" / "u.jsonl").write_bytes(b"{}\n")
    read = sorted(p for p, _ in iter_transcripts([root]))
    links = dict(linked_folders([root]))
    assert len(read) == 3 and len(links) == 2
    # each file is read under the link whose target is watched (the events are renamed to it)
    assert all(any(p.startswith(link + os.sep) for link in links) for p in read), (read, links)
    assert sorted(links.values()) == [str(elsewhere), str(tmp_path / "inner")]


def test_links_that_go_away_take_their_watch_along_and_are_no_failure(tmp_path: Path, root: Path) -> None:
    gone, removed = tmp_path / "gone", tmp_path / "removed"
    gone.mkdir()
    removed.mkdir()
    (root / "-gone").symlink_to(gone)
    (root / "-removed").symlink_to(removed)
    wakes = Counter()
    w = Watcher([root], wakes, supervise_s=0.05)
    w.start()
    try:
        assert {str(gone), str(removed)} <= set(w.watched)
        (root / "-gone").unlink()  # the link removed
        shutil.rmtree(removed)  # the target removed: its watch ends
        wait_for(lambda: str(gone) not in w.watched and str(removed) not in w.watched, timeout=5)
        before = wakes.quiet()
        (gone / "s.jsonl").write_bytes(b"{}\n")
        assert wakes.quiet() == before  # no wake naming a path under a link that is gone
        assert (w.restarts, w.last_failure, w.alive) == (0, None, True)
    finally:
        w.stop()


def test_a_target_inside_another_names_its_files_as_the_reader_does(tmp_path: Path) -> None:
    """-a links to E/deeper and -b to E: E/deeper's events reach both watches; each must name the
    file as the reader does, whichever link it was read through."""
    root, e = tmp_path / "projects", tmp_path / "E"
    (e / "deeper").mkdir(parents=True)
    root.mkdir()
    (root / "-a").symlink_to(e / "deeper")
    (root / "-b").symlink_to(e)
    (e / "deeper" / "x.jsonl").write_bytes(b"{}\n")
    read = [p for p, _ in iter_transcripts([root])]
    assert len(read) == 1  # read once, under one of the links
    wakes = Counter()
    w = Watcher([root], wakes, supervise_s=0.05)
    w.start()
    try:
        before = wakes.quiet()
        with (e / "deeper" / "x.jsonl").open("ab") as f:
            f.write(b"{}\n")
        wait_for(lambda: wakes.n > before, timeout=5)
        wakes.quiet()
        assert {p for p in wakes.paths[before:] if p is not None} == set(read)
    finally:
        w.stop()


def test_removing_a_link_alone_drops_its_watch(tmp_path: Path, root: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "-l").symlink_to(elsewhere)
    w = Watcher([root], Counter(), supervise_s=0.05)
    w.start()
    try:
        assert str(elsewhere) in w.watched
        (root / "-l").unlink()  # nothing else changes in the tree
        wait_for(lambda: str(elsewhere) not in w.watched, timeout=5)
    finally:
        w.stop()


def test_a_stop_during_start_up_neither_fails_nor_leaves_a_thread(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shutdown may come while the watcher is starting (the service starts it on its own thread):
    seen in a test run, stop() then met a supervisor thread made but not yet started, and failed."""
    import indexer.watch

    w = Watcher([root], Counter(), supervise_s=0.05)
    starting = threading.Event()

    class Slow(threading.Thread):
        def start(self) -> None:  # the supervisor's start waits until a stop() is under way
            starting.set()
            wait_for(w._stop.is_set, timeout=5)
            time.sleep(0.1)
            super().start()

    monkeypatch.setattr(indexer.watch, "threading", SimpleNamespace(**{**vars(threading), "Thread": Slow}))
    starter = threading.Thread(target=w.start)
    starter.start()
    assert starting.wait(5)
    w.stop()
    starter.join(5)
    assert not starter.is_alive() and not w.alive
    assert w._supervisor is None or not w._supervisor.is_alive()


def test_a_watch_ended_by_a_removed_link_target_is_no_failure_before_its_event(tmp_path: Path, root: Path) -> None:
    """A removed target ends its emitter; the supervisor may look before the event that says the
    folders changed has been handled (an audit's finding): that is still no failure."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    (root / "-linked").symlink_to(target)
    w = Watcher([root], Counter(), supervise_s=3600)  # checked by hand below
    w.start()
    try:
        assert str(target) in w.watched
        (root / "-linked").unlink()
        shutil.rmtree(target)
        wait_for(lambda: not w._healthy(w.observer), timeout=5)
        w._relink = False  # as if the folder event had not been handled yet
        w._check()
        assert (w.restarts, w.last_failure, w.alive) == (0, None, True)
        assert str(target) not in w.watched
    finally:
        w.stop()
