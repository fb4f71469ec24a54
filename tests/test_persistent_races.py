"""The persistent track's bugs under deterministic exploration: buggy/ breaks, fixed/ holds.

stale-cache, expiry-race and lock-order-deadlock are races between the threads
of one process: frontrun explores every interleaving of two calls, with the SQL
running for real. cross-process-increment is a race between processes: the
lab runs one process's whole increment at each statement boundary of the
other's (``sessionlab.engines.exploration.processes``). close-order is shown by closing a manager
whose sweeper runs every 10 ms while close() is slow to log.
"""

from __future__ import annotations

import pytest

from sessionlab import catalogue, implementations
from sessionlab.bugs import close_order, cross_process_increment
from sessionlab.engines import exploration
from sessionlab.engines.bounded import Hang
from sessionlab.engines.exploration import threads

AVAILABLE, WHY = exploration.frontrun_available()
needs_frontrun = pytest.mark.skipif(not AVAILABLE, reason=WHY)


def explored(slug: str, impl) -> None:
    try:
        report = threads.explore(catalogue.home(slug).race, impl)
    except Hang as hang:  # the deadlock is the bug: the check failed, and says where each thread waits
        raise AssertionError(f"lock-order-deadlock: {hang.text().removeprefix('HANGS: ')}") from None
    assert report.held, f"{report.message}\n\n{report.text(width=110)}"
    assert report.complete, f"{slug}: the search stopped at its budget after {report.explored} interleavings"


def holds(function, impl) -> None:
    figure = function(impl)
    assert figure.held, f"{function.__doc__.split(':')[0]}: {figure.summary}\n\n{figure.history}"


@needs_frontrun
@pytest.mark.stale_cache
def test_every_interleaving_of_two_saves_leaves_the_cache_as_the_database(impl):
    explored("stale-cache", impl)


@needs_frontrun
@pytest.mark.expiry_race
def test_every_interleaving_of_a_sweep_and_a_touch_keeps_the_touched_session(impl):
    explored("expiry-race", impl)


@needs_frontrun
@pytest.mark.lock_order_deadlock
def test_every_interleaving_of_a_read_and_a_count_returns(impl):
    explored("lock-order-deadlock", impl)


@pytest.mark.cross_process_increment
def test_two_processes_count_both_increments_at_every_statement_boundary(impl):
    holds(cross_process_increment.no_increment_lost_between_processes, impl)


@pytest.mark.close_order
def test_close_stops_the_sweeper_before_the_database(impl):
    holds(close_order.closed_under_its_sweeper, impl)


# -- The figures on the pristine buggy/ ---------------------------------------------------


@pytest.fixture(scope="module")
def buggy():
    return implementations.load("buggy")


@needs_frontrun
def test_buggy_caches_the_older_of_two_saves(buggy):
    report = threads.explore(catalogue.home("stale-cache").race, buggy)
    assert not report.held and report.explored <= 10, report.explored
    assert report.figure.summary.startswith("the cache serves cart = '1 book' while the database holds '2 books'"), \
        report.figure.summary
    assert "then the cache after releasing it" in report.why


@needs_frontrun
def test_buggy_expires_a_session_a_request_has_just_touched(buggy):
    report = threads.explore(catalogue.home("expiry-race").race, buggy)
    assert not report.held and report.explored <= 10, report.explored
    assert report.figure.summary.startswith("the request counted access 1 (the session was live), and then the "
                                            "sweep expired it anyway"), report.figure.summary


@needs_frontrun
def test_buggy_deadlocks_and_says_which_lines_hold_and_wait(buggy):
    with pytest.raises(Hang) as hang:
        threads.explore(catalogue.home("lock-order-deadlock").race, buggy)
    said = hang.value.text()
    assert hang.value.deadlock and said.startswith("HANGS: your code deadlocks"), said
    assert "holds self._cache_lock, taken at persistent.py" in said and "waits for self._db_lock" in said, said
    assert "holds self._db_lock, taken at persistent.py" in said and "waits for self._cache_lock" in said, said
    assert "in get_session" in said and "in increment_access" in said, said


def test_buggy_loses_one_of_two_processes_increments(buggy):
    figure = cross_process_increment.no_increment_lost_between_processes(buggy)
    assert figure.summary.startswith("2 increments from 2 processes, counted 1: 1 of 2 lost; the calls returned "
                                     "[1, 1]"), figure.summary
    statements = [line.split()[:2] for line in figure.history.splitlines() if line.startswith("  process")]
    # process 2's whole increment runs between process 1's read and its write
    assert statements[0] == ["process", "1"] and statements[1] == ["process", "2"], figure.history
    assert "UPDATE sessions SET access_count = 1" in figure.history and "'s'" in figure.history


def test_the_interleaving_never_shows_a_session_id(buggy):
    outcome, hide = cross_process_increment.statement_race(buggy)
    shown = cross_process_increment.processes.interleaving(outcome.execution.statements)
    (session_id,) = [secret for secret in hide if secret in shown]  # the id of the execution that broke
    figure = cross_process_increment.no_increment_lost_between_processes(buggy)
    assert len(session_id) > 20 and not any(secret in figure.history for secret in hide), figure.history


def test_fixed_counts_both_increments_under_every_schedule_of_two_processes():
    outcome, _ = cross_process_increment.statement_race(implementations.load("fixed"))
    assert outcome.held and outcome.complete and outcome.preemptions == 2, outcome.scope()
    assert outcome.explored >= 20 and outcome.statements >= 8, outcome.scope()


def test_buggy_closes_the_database_under_its_running_sweeper(buggy):
    figure = close_order.closed_under_its_sweeper(buggy)
    assert figure.got == "1 failed", figure.summary
    assert "the session-sweeper raised SessionError: the session manager is closed" in figure.summary
