"""The persistent store when the world around it fails: a file locked by another process, a full
disk, a damaged row, a file that is not the store's, a setting of the wrong type.

Each fault is made for real (another SQLite connection holding the write lock, a disk whose
page limit is reached, bytes written into a row), and the store must say what happened with a
typed error, change nothing it should not, and keep its background sweeper alive.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from sessionlab.api import InvalidInput, SessionExpired, health_check

# A lock on the file held past the store's lock timeout, then let go; the sweeper sweeps every SWEEP s.
LOCK_TIMEOUT = 0.05
SWEEP = 0.02
WAIT = 5.0  # seconds a condition the sweeper brings about may take, at most


@pytest.fixture(params=["fixed", "buggy"])
def Manager(request):
    return __import__(request.param).PersistentSessionManager


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def until(condition, seconds: float = WAIT) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def write_lock(path: Path) -> sqlite3.Connection:
    """Another process's connection, holding the file's write lock until it is closed."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_the_sweeper_survives_a_locked_file_says_so_and_sweeps_once_it_is_free(Manager, tmp_path, caplog):
    clock = Clock()
    path = tmp_path / "sessions.sqlite3"
    with Manager(path, ttl=60, sweep_interval=SWEEP, clock=clock, lock_timeout=LOCK_TIMEOUT) as manager:
        session = manager.create_session("user-1", "Ada")
        assert health_check(manager).healthy
        caplog.set_level(logging.DEBUG)
        other = write_lock(path)
        clock.now += 120  # the session is due to expire, and the sweeper cannot write
        try:
            assert until(lambda: not health_check(manager).healthy), "health stayed healthy under a locked file"
            problems = health_check(manager).problems
            assert len(problems) == 1 and "database is locked" in problems[0], problems
            assert manager._sweeper.is_alive()
        finally:
            other.close()
        assert until(lambda: health_check(manager).healthy), health_check(manager)
        with pytest.raises(SessionExpired):
            manager.get_session(session)
    failures = [record for record in caplog.records if "failed (" in record.getMessage()]
    assert len(failures) == 1, [record.getMessage() for record in failures]  # logged once, not every retry
    assert all(session not in record.getMessage() for record in caplog.records)


def test_a_sweeper_that_died_is_unhealthy(Manager, tmp_path):
    def broken_clock() -> float:
        raise OSError("the clock is gone")

    with Manager(tmp_path / "s.sqlite3", sweep_interval=SWEEP) as manager:
        manager._clock = broken_clock  # every sweep fails, for a reason the store knows nothing of
        assert until(lambda: not health_check(manager).healthy)
        (problem,) = health_check(manager).problems
        assert problem.startswith("the session sweeper failed its last ") and problem.endswith(" sweeps: OSError")
        manager._stop.set()  # the thread ends as if it had died
        manager._sweeper.join()
        manager._stop.clear()
        assert health_check(manager).problems == ("the session sweeper has stopped: sessions no longer expire",)
        manager._stop.set()
    assert health_check(manager).healthy  # a closed manager's sweeper is meant to be stopped


@pytest.mark.parametrize("setting", [{"ttl": "5"}, {"ttl": float("nan")}, {"sweep_interval": float("inf")},
                                     {"sweep_interval": 0}, {"ttl": True}, {"lock_timeout": -1},
                                     {"lock_timeout": 10**12}, {"clock": 5}])
def test_a_setting_of_the_wrong_type_or_range_is_invalid_input(Manager, tmp_path, setting):
    with pytest.raises(InvalidInput):
        Manager(tmp_path / "s.sqlite3", **setting)
    assert not (tmp_path / "s.sqlite3").exists()


class SlowSweeps:
    """buggy/, its sweeps slowed by a clock that takes 20 ms on any thread but the test's: a close()
    then most often comes in the middle of a sweep."""

    def __init__(self):
        from sessionlab import implementations

        self.implementation, self.test = implementations.load("buggy"), threading.current_thread()
        self.files = self.implementation.files

    def clock(self) -> float:
        if threading.current_thread() is not self.test:
            time.sleep(0.02)
        return time.time()

    def new(self, name, **options):
        return self.implementation.new(name, clock=self.clock, **options)


def test_the_close_order_checks_leave_no_thread_failing_unseen():
    """Counting the lines of a sweep closes buggy/'s manager under its sweeper: what that thread
    raises is the check's to report, never an exception loose in whatever test runs next."""
    from sessionlab.bugs import close_order

    loose: list[str] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: loose.append(f"{args.thread.name}: {args.exc_type.__name__}")
    try:
        figures = [close_order.closed_at_every_line_of_a_sweep(SlowSweeps()) for _ in range(4)]
    finally:
        threading.excepthook = previous
    assert all(not figure.held and "session-sweeper raised SessionError" in figure.summary for figure in figures)
    assert loose == []
