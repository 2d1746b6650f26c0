"""The runtime without HTTP: start-up snapshot, catch-up, wake-ups, supervision, prices, jobs and shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import api.service as service_module
from api.app import create_app
from api.service import CatchUp, LiveService, Ring, StreamHub, lag
from indexer import ingest
from indexer.errors import ServiceError
from indexer.ingest import ParserPool, sync
from indexer.metrics import overall
from indexer.paths import run_file
from indexer.runfile import read_run_file
from indexer.sources import resolve_sources
from indexer.store import Index
from tests.conftest import write_tree
from tests.live_helpers import TestClient, append, calls, count_calls, make_config, wait_for

# watchdog's inotify thread warns when fast nested mkdirs race its recursive watch; under
# filterwarnings=error that warning would kill the thread, so it is only a warning here, as in use.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


TRANSCRIPT = "-home-u-proj/s1.jsonl"


def latest(service: LiveService) -> dict[str, Any]:
    data = service.ring.latest()
    assert data is not None
    parsed: dict[str, Any] = orjson.loads(data)
    return parsed


def with_loop(service: LiveService, body: Callable[[], None]) -> None:
    """Run `body` (blocking code) in a thread while the service's event-loop side runs."""

    async def main() -> None:
        async with service.running():
            await asyncio.to_thread(body)

    asyncio.run(main())


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "claude", {TRANSCRIPT: calls(3)})


@pytest.fixture
def service(tree: Path, tmp_path: Path) -> Iterator[LiveService]:
    svc = LiveService(make_config(tree, tmp_path / "index.duckdb"))
    svc.open()
    svc.start()
    wait_for(lambda: svc.catch_up.done and svc.watcher.alive)  # the watcher starts on a thread of its own
    yield svc
    svc.close()


def big_tree(root: Path, megabytes: int) -> Path:
    blob = calls(1000) * 4  # about 2 MB per file
    for i in range(max(1, (megabytes << 20) // len(blob))):
        path = root / "projects" / f"proj{i % 4}" / f"s{i}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    return root


@pytest.mark.parametrize("planner", ["service", "writer"])
def test_first_snapshot_comes_from_the_existing_index_before_catch_up(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planner: str
) -> None:
    """Then the catch-up, planned by the service or, for a tree of more than PLAN_HERE_FILES
    transcripts, by its writer process: health follows it, and a deleted transcript is marked gone."""
    db = tmp_path / "index.duckdb"
    deleted = write_tree(tree, {"-home-u-old/gone.jsonl": calls(2)}) / "projects" / "-home-u-old" / "gone.jsonl"
    with Index(db) as index:
        sync(index, resolve_sources([tree]))
    deleted.unlink()
    big_tree(tree, 24)  # 24 MB more: a catch-up with worker processes
    if planner == "writer":
        monkeypatch.setattr(service_module, "PLAN_HERE_FILES", 2)
    svc = LiveService(make_config(tree, db))
    started = time.perf_counter()
    svc.open()
    assert time.perf_counter() - started < 5.0  # 1 s is the target; scripts/bench_service.py measures it
    try:
        assert latest(svc)["total_requests"] == 5  # served now, from what the index already had
        svc.start()
        wait_for(lambda: svc.catch_up.running or svc.catch_up.done)
        wait_for(lambda: svc.catch_up.bytes_total > 0)  # once planned: by the writer, a moment later
        assert svc.catch_up.bytes_total > (24 << 20) - (2 << 20)

        def caught_up() -> None:
            wait_for(lambda: svc.catch_up.done, timeout=60)
            wait_for(lambda: latest(svc)["total_requests"] > 5, timeout=5)

        with_loop(svc, caught_up)
        assert svc.catch_up.bytes_done == svc.catch_up.bytes_total
        assert svc.catch_up.files_done == svc.catch_up.files == 12  # health's files lagging counts down to 0
        assert svc.catch_up.as_json()["fraction"] == 1.0
        assert svc.ingest_error is None
        with svc.reader() as con:
            assert con.execute("SELECT path FROM files WHERE gone").fetchall() == [(str(deleted),)]
            assert con.execute("SELECT count(*) FROM calls").fetchone() == (3 + 2 + 1000,)  # gone's calls stay
    finally:
        svc.close()


def test_shutdown_during_a_big_catch_up_is_quick_and_clean(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = big_tree(tmp_path / "big", 24)  # 12 files alike, so it does not matter which are read first
    db = tmp_path / "index.duckdb"
    monkeypatch.setattr(ingest, "TASK_BYTES", 1)  # a parser task per file ...
    monkeypatch.setattr(ingest, "STAGED_COMMIT_CALLS", 1)  # ... and a commit per task, so 4 files are committed
    svc = LiveService(make_config(root, db))
    svc.open()
    svc.write_run_file()
    progress = svc._progress
    reached = threading.Event()

    def held_at_the_fifth_file(n: int) -> None:
        # The shutdown must come mid-catch-up: on a fast machine the parsers could otherwise
        # finish all 12 files between two looks of wait_for (seen in CI).
        if svc.catch_up.files_done == 4:
            reached.set()
            svc._stopping.wait(10)
        progress(n)

    svc._progress = held_at_the_fifth_file  # type: ignore[method-assign]
    svc.start()
    assert reached.wait(120)  # idle-class parsers beside busy loops took 20-30 s to read 4 files
    assert not svc.catch_up.done
    started = time.perf_counter()
    svc.close()
    assert time.perf_counter() - started < 2.0
    assert "still busy" not in caplog.text  # the ingest thread stopped, so the index was closed
    assert svc.ingest_error is None
    assert not run_file(db).exists()
    with Index(db) as index:  # whole: what was committed is there, the rest is read next time
        files = index.con.execute("SELECT count(*), sum(lines) FROM files").fetchone()
        calls_n = index.con.execute("SELECT count(*) FROM calls").fetchone()
    assert files is not None and calls_n is not None
    assert files == (4, 4 * 4000) and calls_n == (1000,)  # each file repeats one blob of 1,000 calls
    with Index(db) as index:  # and the next pass reads the rest, once
        sync(index, resolve_sources([root]))
        total = index.con.execute("SELECT count(*), sum(lines) FROM files").fetchone()
        calls_n = index.con.execute("SELECT count(*) FROM calls").fetchone()
    assert total == (12, 12 * 4000) and calls_n == (1000,)


@pytest.mark.parametrize(("killed", "said"), [(0, "writer process ended"), (1, "a parser process ended")])
def test_a_helper_process_killed_during_the_catch_up_is_reported_and_the_rest_read_later(
    tree: Path, tmp_path: Path, parser_gate: Path, monkeypatch: pytest.MonkeyPatch, killed: int, said: str
) -> None:
    """The catch-up's writer process (helpers[0]) or one of its parsers, killed as the OOM killer
    would: the catch-up fails with a message that says so, and the next pass reads the rest."""
    big_tree(tree, 48)
    svc = LiveService(make_config(tree, tmp_path / "index.duckdb"))
    svc.open()
    svc.start()
    try:
        # The parsers wait at the gate (their tasks, given out before the writer names its helpers,
        # go with the pass: ingest.settings), so the kill comes with work still to do on any machine.
        wait_for(lambda: len(svc._helpers) == 1 + (os.cpu_count() or 2), timeout=60)  # the writer, its parsers
        assert not svc.catch_up.done
        # Later passes read in this process: idle-class parsers get no core while other work fills
        # them all (two busy loops held it past 120 s).
        monkeypatch.setattr(service_module, "PARALLEL_BYTES", 1 << 40)
        monkeypatch.setattr(ingest, "PARALLEL_BYTES", 1 << 40)  # no parser pool of its own either
        os.kill(svc._helpers[killed], signal.SIGKILL)
        parser_gate.touch()
        wait_for(lambda: svc.ingest_error is not None, timeout=60)
        assert svc.ingest_error is not None and said in svc.ingest_error
        assert svc.health()["ok"] is False
        assert not list(tmp_path.glob("index.duckdb.pass-*"))  # its staged batches are gone with it
        svc.wake()  # the next pass (a watcher event or the rescan) reads what was not committed
        wait_for(lambda: svc.ingest_error is None and not svc.health()["files_lagging"], timeout=60)
        on_disk = [p.read_bytes().count(b"\n") for p in (tree / "projects").rglob("*.jsonl")]
        with svc.reader() as con:  # every file read whole, and no line counted twice
            assert con.execute("SELECT count(*), sum(lines) FROM files").fetchone() == (len(on_disk), sum(on_disk))
            assert con.execute("SELECT count(*) FROM calls").fetchone() == (1000 + 3,)  # big_tree repeats its calls
    finally:
        svc.close()


def test_the_run_file_is_written_once_the_lock_is_taken_before_the_first_snapshot(tree: Path, tmp_path: Path) -> None:
    """Commands started while the service opens go through it rather than meet a lock with no run
    file; a failed open takes its run file away again."""
    db = tmp_path / "index.duckdb"
    svc = LiveService(make_config(tree, db))
    seen: list[object] = []

    def locked() -> None:
        svc.write_run_file()
        seen.append((run_file(db).exists(), svc.ring.latest_time()))

    svc.open(locked=locked)
    try:
        assert seen == [(True, None)] and svc.ring.latest_time() is not None
    finally:
        svc.close()
    again = LiveService(make_config(tree, db))

    def fails() -> None:
        again.write_run_file()
        raise RuntimeError("pricing failed")

    with pytest.raises(RuntimeError):
        again.open(locked=fails)
    assert not run_file(db).exists()


def test_shutdown_during_a_big_pass_after_the_catch_up_ends_its_parsers(
    service: LiveService, tree: Path, tmp_path: Path, parser_gate: Path
) -> None:
    """A later pass big enough for parser processes is stopped as the catch-up is: the ingest thread
    ends them and returns, so close() neither waits for them nor leaves them running."""
    import multiprocessing

    # Whole folders of 12 MB appear at once (written as they are, a pass could keep up with the
    # writes and read each file without parser processes); their parsers wait at the gate for good.
    staging = big_tree(tmp_path / "staging", 48)
    for folder in sorted((staging / "projects").iterdir()):
        folder.rename(tree / "projects" / f"big-{folder.name}")
    service.wake()
    wait_for(lambda: multiprocessing.active_children(), timeout=30)  # the pass's parsers are at work
    service.close()
    assert not service.busy_at_exit
    # killed: gone as soon as the kernel has ended them (on a loaded machine, not always at once)
    wait_for(lambda: multiprocessing.active_children() == [], timeout=5)


def test_shutdown_does_not_wait_for_a_snapshot_query_that_will_not_end(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A reader query can be slow on odd data (an audit met a 340 s one): close() interrupts it and,
    if it still runs, leaves the index to the exit rather than waiting (or closing it under it)."""
    import api.service

    started, release = threading.Event(), threading.Event()
    real = api.service.compute_snapshot

    def stuck(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name.startswith("cco-snapshot"):
            started.set()
            release.wait(30)  # Python, not DuckDB: the interrupt cannot end it
        return real(*args, **kwargs)

    monkeypatch.setattr(api.service, "compute_snapshot", stuck)
    db = tmp_path / "index.duckdb"
    svc = LiveService(make_config(tree, db))
    svc.open()
    svc.write_run_file()
    svc.start()
    try:
        svc._snap_pool.submit(svc._snapshot)  # a snapshot in flight on the snapshot thread
        assert started.wait(10)
        svc.close()
        assert not release.is_set() and svc.busy_at_exit  # returned while the query still ran
        assert "a snapshot query still running at shutdown" in caplog.text
        assert not run_file(db).exists()
    finally:
        release.set()


def test_appends_wake_the_ingest_and_refresh_the_snapshot(service: LiveService, tree: Path) -> None:
    def body() -> None:
        appended = time.perf_counter()
        append(tree / "projects" / TRANSCRIPT, calls(2))
        wait_for(lambda: latest(service)["total_requests"] == 5, timeout=5)
        # Event-driven: well before the 0.2 s interval would matter, never near the 3600 s rescan.
        assert time.perf_counter() - appended < 2.0

    with_loop(service, body)
    assert service.last_ingest is not None


def test_memoized_answers_go_stale_with_each_commit(tree: Path, tmp_path: Path) -> None:
    """The shared memo is versioned by the writer's own commits (no fingerprint query), so a
    commit in the middle of a catch-up, not only the end of a pass, must make answers stale."""
    svc = LiveService(make_config(tree, tmp_path / "index.duckdb"))
    svc.open()  # not started: this thread plays the ingest thread
    try:
        ctx = svc.context()
        assert ctx.memo is not None and svc.index is not None
        con = ctx.reader()
        assert overall(con, memo=ctx.memo).calls == 0  # memoized for the empty index
        sync(svc.index, resolve_sources([tree]))
        assert overall(con, memo=ctx.memo).calls == 3
        con.close()
    finally:
        svc.close()


def test_a_new_project_folder_is_read(service: LiveService, tree: Path) -> None:
    sub = tree / "projects" / "-home-u-new" / "sess" / "subagents"
    sub.mkdir(parents=True)
    time.sleep(0.2)
    (sub / "agent-a1.jsonl").write_bytes(calls(4, cwd="/home/u/new"))
    wait_for(lambda: count_calls(service) == 7, timeout=5)


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2, reason="needs two cores to use"
)
def test_a_big_catch_up_leaves_one_core_to_the_event_loop_while_someone_watches(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody watching, its writer and parser processes and the ingest thread use every core; once
    `/api/stats` is asked for, the event loop's thread gets the first core and they keep off it;
    when the catch-up is done, all may use every core again."""
    monkeypatch.setattr(service_module, "WATCHED_S", 600.0)  # one request counts, however slow the parsers
    # A catch-up with parser processes over a few small files: the parsers, in the idle class, may
    # have little CPU to do it with (beside two busy loops, 24 MB took 50 s).
    monkeypatch.setattr(service_module, "PARALLEL_BYTES", 1)
    monkeypatch.setattr(ingest, "PARALLEL_BYTES", 1)
    write_tree(tree, {f"-home-u-p{i}/s{i}.jsonl": calls(5) for i in range(4)})
    allowed = os.sched_getaffinity(0)  # what the service's threads start with (they inherit it)
    first, others = {min(allowed)}, allowed - {min(allowed)}
    svc = LiveService(make_config(tree, tmp_path / "index.duckdb"))
    svc.open()
    progress, tick = svc._progress, svc._tick
    held, go_on = threading.Event(), threading.Event()
    before: list[tuple[set[int], list[set[int]]]] = []  # at the first file read: ingest thread's, helpers'
    after: list[tuple[set[int], list[set[int]], set[int]]] = []  # at the ticks after it: the same, and the loop's

    def helpers() -> list[set[int]]:  # the pass's writer process and its parsers
        return [os.sched_getaffinity(pid) for pid in svc._helpers]

    def held_at_the_first_file(n: int) -> None:
        if not held.is_set():
            before.append((os.sched_getaffinity(0), helpers()))
            held.set()
            assert go_on.wait(60)
        progress(n)

    def recorded_tick() -> None:
        tick()
        loop = svc._loop_thread
        if go_on.is_set() and svc._helpers and loop is not None:
            after.append((os.sched_getaffinity(0), helpers(), os.sched_getaffinity(loop)))

    svc._progress = held_at_the_first_file  # type: ignore[method-assign]
    svc._tick = recorded_tick  # type: ignore[method-assign]
    svc.start()

    def body() -> None:
        assert held.wait(120)  # the parsers ran in the idle class: beside busy loops, slowly
        client = TestClient(create_app(svc.context(), svc), base_url="http://localhost", client=("127.0.0.1", 1))
        assert client.get("/api/stats").status_code == 200  # someone watches now
        assert svc.watched()
        go_on.set()
        wait_for(lambda: svc.catch_up.done, timeout=60)
        ingest_thread = svc._ingest
        assert ingest_thread is not None and ingest_thread.native_id is not None
        assert os.sched_getaffinity(ingest_thread.native_id) == allowed

    try:
        with_loop(svc, body)  # the event loop runs on this thread
        assert (
            before
            and before[0][0] == allowed
            and before[0][1]
            and set(map(frozenset, before[0][1])) == {frozenset(allowed)}
        )
        assert after and after[0] == (others, [others] * len(after[0][1]), first)
        assert os.sched_getaffinity(0) == allowed  # the event loop's thread may use every core again
        assert count_calls(svc) == 3 + 4 * 5 and svc.ingest_error is None
    finally:
        os.sched_setaffinity(0, allowed)  # whatever happened, the rest of the suite keeps every core
        go_on.set()
        svc.close()


@pytest.mark.parametrize("planner", ["service", "writer"])
def test_the_watcher_starts_once_the_catch_up_is_done(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planner: str
) -> None:
    """Its recursive walk would compete with requests for the GIL beside a catch-up's commits;
    meanwhile health is still ok, and a line written before the watches exist is still read (by
    a pass planned in the service, or, for a tree of more than PLAN_HERE_FILES transcripts, by
    its writer process)."""
    write_tree(tree, {"-home-u-other/s2.jsonl": calls(2)})
    if planner == "writer":
        monkeypatch.setattr(service_module, "PLAN_HERE_FILES", 1)
    svc = LiveService(make_config(tree, tmp_path / "index.duckdb"))
    svc.open()
    progress = svc._progress
    held, go_on = threading.Event(), threading.Event()

    def held_at_the_first_file(n: int) -> None:
        held.set()
        assert go_on.wait(10)
        progress(n)

    svc._progress = held_at_the_first_file  # type: ignore[method-assign]
    svc.start()
    try:
        assert held.wait(10)
        health = svc.health()
        assert not svc.watcher.started and health["observer"]["started"] is False
        assert health["ok"] and health["catch_up"]["running"]
        # No watch sees these; one of the files is read already (the rescan is an hour away).
        for name in (TRANSCRIPT, "-home-u-other/s2.jsonl"):
            append(tree / "projects" / name, calls(1))
        go_on.set()
        wait_for(lambda: svc.catch_up.done and svc.watcher.alive)
        assert svc.health()["observer"]["started"] is True
        wait_for(lambda: count_calls(svc) == 3 + 2 + 2)  # the watcher's start asked for a whole pass
    finally:
        go_on.set()
        svc.close()


def test_observer_death_is_survived(service: LiveService, tree: Path) -> None:
    observer = service.watcher.observer
    observer.stop()
    observer.join(2)
    wait_for(lambda: service.watcher.restarts == 1 and service.watcher.alive, timeout=5)
    append(tree / "projects" / TRANSCRIPT, calls(2))
    # The rescan is an hour away: only the restarted observer can have woken the ingest.
    wait_for(lambda: count_calls(service) == 5, timeout=5)
    assert service.health()["observer"]["restarts"] == 1


def test_rescan_catches_what_events_miss(tree: Path, tmp_path: Path) -> None:
    svc = LiveService(make_config(tree, tmp_path / "index.duckdb", rescan=1.0))
    svc.open()
    svc.start()
    try:
        wait_for(lambda: svc.catch_up.done)
        svc.watcher.stop()  # no events at all from now on
        append(tree / "projects" / TRANSCRIPT, calls(2))
        wait_for(lambda: count_calls(svc) == 5, timeout=5)
    finally:
        svc.close()


def test_health_names_the_day_of_today(service: LiveService) -> None:
    """Besides the zone's name, health gives the day /api/stats' `today` covers, as instants: the
    dashboard compares it with its own day (a browser says UTC where this machine says Etc/UTC,
    and took the two for different zones: its today card then lagged behind the stats)."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    iso = "{:%Y-%m-%dT%H:%M:%S.000Z}".format

    def day(now: datetime) -> dict[str, str]:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=1, hours=3)).replace(hour=0)  # the next midnight, even on a DST day
        return {"start": iso(start.astimezone(UTC)), "end": iso(end.astimezone(UTC))}

    before = datetime.now(UTC)
    health = service.health()
    zone = ZoneInfo(health["timezone"])
    # the clock read on both sides: a midnight in between makes either day right
    assert health["today"] in (day(before.astimezone(zone)), day(datetime.now(UTC).astimezone(zone)))


def test_price_file_change_reprices_everything(service: LiveService) -> None:
    path = service.prices.path
    path.parent.mkdir(parents=True, exist_ok=True)

    def body() -> None:
        before = wait_for(lambda: latest(service)["total_cost"], timeout=5)
        assert before != pytest.approx(0.099)
        path.write_text('[models."claude-sonnet-4-5"]\ninput = 300.0\noutput = 1500.0\n')
        # 3 calls x (10 input x 300 + 20 output x 1500) / 1e6
        wait_for(lambda: latest(service)["total_cost"] == pytest.approx(0.099), timeout=5)
        path.write_text("[models\n")  # a bad file keeps the last good prices and says why
        wait_for(lambda: service.prices.error is not None, timeout=5)
        time.sleep(0.3)
        assert latest(service)["total_cost"] == pytest.approx(0.099)

    with_loop(service, body)
    assert service.health()["prices"]["error"] is not None


def test_a_changed_cost_mode_reaches_every_answer(service: LiveService) -> None:
    """`cco config set cost-mode` while the service runs: its snapshots and its routes (the context
    the app was built with) take it up, as the commands that read the setting themselves do."""
    from indexer.settings import set_setting

    ctx = service.context()  # what create_app is given

    def body() -> None:
        assert wait_for(lambda: latest(service)["total_cost"], timeout=5) > 0
        set_setting("cost_mode", "display")  # costUSD only: these calls have none
        wait_for(lambda: latest(service)["total_cost"] == 0, timeout=5)
        assert (ctx.cost_mode, service.config.cost_mode) == ("display", "display")

    with_loop(service, body)


def test_a_settings_file_that_cannot_be_read_keeps_the_mode_and_the_ingest(
    service: LiveService, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    loop = tmp_path / "loop.toml"
    loop.symlink_to(loop)  # stat fails with ELOOP, not "no such file"
    service._settings = loop
    with caplog.at_level(logging.WARNING, logger="cco.service"):
        for _ in range(3):  # logged once, not raised: on the ingest thread it would end the thread
            service._check_settings()
    assert service.config.cost_mode == "auto"
    assert len([r for r in caplog.records if "keeping cost mode auto" in r.getMessage()]) == 1


def test_a_status_asked_during_a_big_catch_up_is_answered_before_it_ends(
    tree: Path, tmp_path: Path, parser_gate: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job that reads no transcript (status) runs between a writer process's messages, at least
    every RESULT_POLL_S, here while the writer's parsers wait and send nothing."""
    big_tree(tree, 24)
    monkeypatch.setattr(service_module, "PLAN_HERE_FILES", 2)  # the writer plans the catch-up too
    svc = LiveService(make_config(tree, tmp_path / "index.duckdb"))
    svc.open()
    svc.start()
    try:
        wait_for(lambda: len(svc._helpers) == 1 + (os.cpu_count() or 2), timeout=60)  # parsers at the gate
        status = asyncio.run(asyncio.wait_for(svc.call_writer(svc.status_json, anytime=True), 10))
        assert status["calls"] == 0 and not svc.catch_up.done  # nothing is committed yet
    finally:
        parser_gate.touch()
        svc.close()


def test_writer_jobs_run_on_the_ingest_thread(service: LiveService) -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        status = await service.call_writer(service.status_json, anytime=True)
        report = await service.call_writer(service.sync_now)
        return status, report

    status, report = asyncio.run(main())
    assert status["calls"] == 3
    assert report["files_seen"] == 1 and report["files_read"] == 0
    with pytest.raises(ServiceError, match="only used on the ingest thread"):
        service.status_json()


def test_close_releases_everything(tree: Path, tmp_path: Path) -> None:
    db = tmp_path / "index.duckdb"
    svc = LiveService(make_config(tree, db))
    svc.open()
    svc.write_run_file()
    info = read_run_file(db)
    assert info is not None and info.port == 0 and info.db == str(db.resolve())
    svc.start()
    wait_for(lambda: svc.catch_up.done)
    svc.close()
    svc.close()  # idempotent
    assert not run_file(db).exists()
    assert not svc.watcher.alive
    with Index(db) as index:
        row = index.con.execute("SELECT count(*) FROM calls").fetchone()
        assert row is not None and row[0] == 3

    async def after() -> None:
        await svc.call_writer(lambda: 1)

    with pytest.raises(ServiceError, match="shutting down"):
        asyncio.run(after())


def test_lag_counts_unread_bytes(tree: Path, tmp_path: Path) -> None:
    db = tmp_path / "index.duckdb"
    roots = resolve_sources([tree])
    with Index(db) as index:
        sync(index, roots)
        assert lag(index.file_states(), roots) == (0, 0)
        append(tree / "projects" / TRANSCRIPT, calls(1))
        size = len(calls(1))
        assert lag(index.file_states(), roots) == (1, size)


def test_ring_is_bounded_and_sliced_by_time() -> None:
    ring = Ring(3)
    assert ring.latest() is None and ring.latest_time() is None
    for i in range(5):
        ring.push(float(i), str(i).encode())
    assert len(ring) == 3
    assert ring.latest() == b"4" and ring.latest_time() == 4.0
    assert ring.between(3.0, 10.0) == [b"3", b"4"]
    assert ring.between(0.0, 1.0) == []


def test_stream_hub_bounds_clients_and_drops_oldest_for_slow_ones() -> None:
    async def main() -> None:
        hub = StreamHub(max_clients=2)
        a, b = hub.subscribe(), hub.subscribe()
        assert a is not None and b is not None and hub.full() and hub.subscribe() is None
        for i in range(70):
            hub.publish(str(i).encode())
        assert hub.latest == b"69"
        assert a.qsize() == 64 and a.get_nowait() == b"6"  # the oldest were dropped
        hub.unsubscribe(b)
        assert hub.clients == 1
        hub.close()
        items = [a.get_nowait() for _ in range(a.qsize())]
        assert items[-1] is None  # the end-of-stream marker always fits
        assert hub.subscribe() is None

    asyncio.run(main())


def test_stream_hub_does_not_repeat_a_message() -> None:
    """A commit that changes nothing newer (a fork's copy of old lines) sends no second copy."""

    async def main() -> None:
        hub = StreamHub()
        q = hub.subscribe()
        assert q is not None
        for data in (b"a", b"a", b"b", b"b", b"a"):
            hub.publish(data)
        assert [q.get_nowait() for _ in range(q.qsize())] == [b"a", b"b", b"a"]

    asyncio.run(main())


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="no SCHED_IDLE here")
def test_the_services_parsers_run_only_on_idle_cores() -> None:
    """A catch-up's parser processes are scheduled behind everything, the event loop first."""
    pool = ParserPool(1, idle=True)
    try:
        assert list(pool.imap_unordered(os.sched_getscheduler, [0])) == [os.SCHED_IDLE]
    finally:
        pool.close()
        pool.join()


def test_shutdown_answers_the_writer_jobs_still_queued_at_once(tree: Path, tmp_path: Path) -> None:
    """A sync asked for during a catch-up waits for its end; at shutdown it is told 'shutting down'
    at once (a marked 503: the command then waits for the handover), not when the ingest thread
    has stopped, which uvicorn's graceful timeout may not wait for."""
    import concurrent.futures

    from api.service import _Job

    svc = LiveService(make_config(tree, tmp_path / "index.duckdb"))
    svc.open()  # no ingest thread: nothing would take the job
    try:
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        svc._jobs.put(_Job(lambda: 1, future, False))
        svc.begin_shutdown()
        with pytest.raises(ServiceError, match="shutting down"):
            future.result(timeout=1)
    finally:
        svc.close()


def test_catch_up_progress_is_nothing_until_the_pass_is_planned() -> None:
    """A writer process plans a big catch-up: until it says how much there is, health shows 0%, not 100%."""
    assert CatchUp(running=True).as_json()["fraction"] == 0.0
    assert CatchUp(running=True, bytes_total=400, bytes_done=100).as_json()["fraction"] == 0.25
    assert CatchUp(done=True).as_json()["fraction"] == 1.0
