"""The persistent manager's races, under every interleaving: buggy/ breaks, fixed/ holds.

Each scenario runs two calls on one manager under deterministic exploration
(frontrun): two updates of one key (stale-cache), the sweeper against a request
that touches an idle session (expiry-race), and a read that misses the cache
against an increment (lock-order-deadlock). The SQL runs for real; the locks
and the cache are what the search interleaves.

close-order is shown without the search: a log handler that is slow over the
message close() logs (as a remote handler is) gives a sweeper still running the
time to sweep a database that is already closed.
"""

from __future__ import annotations

import json
import logging
import threading

import pytest

from sessionlab import exploration, impls
from sessionlab.api import SessionExpired
from sessionlab.bounded import Hang

AVAILABLE, WHY = exploration.frontrun_available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=WHY)

START = 1_700_000_000.0


class Run:
    """What the two threads of one execution share."""

    def __init__(self, package: str, *, ttl: float = 1800.0):
        self.now = START
        self.manager = impls.load(package).module.PersistentSessionManager(
            ttl=ttl, sweep_interval=3600, clock=lambda: self.now)
        self.session_id = self.manager.create_session("user-1", "Ada")
        self.touched: bool | None = None


def explore(package: str, setup, workers, invariant):
    return exploration.explore_workers(impls.load(package), setup, workers, invariant, replays=0)


def stale_cache(package: str):
    def setup() -> Run:
        run = Run(package)
        run.manager.update_session(run.session_id, "cart", "empty")
        run.manager.get_session(run.session_id)  # cached
        return run

    def cache_agrees_with_the_database(run: Run) -> bool:
        cached = run.manager.get_session(run.session_id).metadata["cart"]
        stored = json.loads(run.manager._db.execute(
            "SELECT metadata FROM sessions WHERE session_id = ?", (run.session_id,)).fetchone()[0])["cart"]
        run.manager.close()
        return cached == stored

    workers = [lambda run, n=n: run.manager.update_session(run.session_id, "cart", f"{n + 1} books") for n in (0, 1)]
    return explore(package, setup, workers, cache_agrees_with_the_database)


def expiry_race(package: str):
    def setup() -> Run:
        run = Run(package, ttl=60)
        run.now += 70  # idle past its ttl: the sweeper may expire it, unless the request comes first
        return run

    def sweep(run: Run) -> None:
        run.manager.expire_sessions()

    def touch(run: Run) -> None:
        try:
            run.manager.increment_access(run.session_id)
            run.touched = True
        except SessionExpired:
            run.touched = False

    def a_touched_session_is_not_expired(run: Run) -> bool:
        status = run.manager.get_status(run.session_id)
        run.manager.close()
        return not (run.touched and status == "expired")

    return explore(package, setup, [sweep, touch], a_touched_session_is_not_expired)


def lock_order(package: str):
    def read(run: Run) -> None:
        run.manager.get_session(run.session_id)  # not cached yet

    def count(run: Run) -> None:
        run.manager.increment_access(run.session_id)

    def closes(run: Run) -> bool:
        run.manager.close()
        return True

    return explore(package, lambda: Run(package), [read, count], closes)


@pytest.mark.parametrize("scenario", [stale_cache, expiry_race, lock_order], ids=lambda s: s.__name__)
def test_fixed_holds_under_every_interleaving(scenario):
    found = scenario("fixed")
    assert found.held and found.complete, found.explanation


def test_buggy_caches_the_older_of_two_updates():
    found = stale_cache("buggy")
    assert not found.held and found.explored <= 10, found.explored


def test_buggy_expires_a_session_a_request_has_just_touched():
    found = expiry_race("buggy")
    assert not found.held and found.explored <= 10, found.explored


def test_buggy_deadlocks_and_says_which_lines_hold_and_wait():
    with pytest.raises(Hang) as hang:
        lock_order("buggy")
    said = str(hang.value)
    assert hang.value.deadlock and said.startswith("your code deadlocks"), said
    assert "holds self._cache_lock" in said and "waits for self._db_lock" in said, said
    assert "holds self._db_lock" in said and "waits for self._cache_lock" in said, said
    assert "in get_session" in said and "in increment_access" in said, said


class SlowLogHandler(logging.Handler):
    """A log handler that takes its time over the message close() logs, as a remote one does."""

    def __init__(self, sweeper_died: threading.Event):
        super().__init__()
        self.sweeper_died = sweeper_died

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("closed the session store"):
            self.sweeper_died.wait(0.5)  # 50 sweeps, if the sweeper still runs


def close_while_the_log_is_slow(package: str) -> list[str]:
    """Close a manager whose sweeper runs every 10 ms; what the sweeper thread raised, if anything."""
    died, raised = threading.Event(), []
    previous = threading.excepthook

    def hook(args) -> None:
        if args.thread is not None and args.thread.name == "session-sweeper":
            raised.append(f"{args.exc_type.__name__}: {args.exc_value}")
            died.set()
        else:
            previous(args)

    log = logging.getLogger(f"{package}.persistent")
    handler, level = SlowLogHandler(died), log.level
    threading.excepthook = hook
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        manager = impls.load(package).module.PersistentSessionManager(sweep_interval=0.01)
        manager.create_session("user-1", "Ada")
        manager.close()
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        threading.excepthook = previous
    return raised


def test_fixed_stops_the_sweeper_before_it_closes_the_database():
    assert close_while_the_log_is_slow("fixed") == []


def test_buggy_closes_the_database_under_its_running_sweeper():
    raised = close_while_the_log_is_slow("buggy")
    assert raised == ["SessionError: the session manager is closed"], raised
