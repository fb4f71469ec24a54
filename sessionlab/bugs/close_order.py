"""Bug 11, close order: close() closes the database, then stops the sweeper that still uses it."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sessionlab.bug import ORDER_VIOLATION, Bug
from sessionlab.bugs.persistent import MANAGER
from sessionlab.engines.exploration.processes import connection_of
from sessionlab.engines.exploration.search import Inconclusive
from sessionlab.engines.stress import NewManager, Scenario
from sessionlab.figure import Figure
from sessionlab.implementations import Implementation

BUG = Bug(
    number=11,
    slug="close-order",
    title="Close order",
    bug_class=ORDER_VIOLATION,
    track=2,
    mistake=(
        "close() closes the database first and stops the background sweeper after, so a sweep "
        "that starts in between runs against a closed database"
    ),
    symptom="every deploy or restart logs a crash of the sweeper thread, and sometimes a half-done sweep",
    scenario=(
        "a manager sweeping every 10 ms is closed in the middle of a sweep, with a slow log (as a "
        "remote log is); no background thread may fail"
    ),
    functions=("PersistentSessionManager.close",),
    module="persistent.py",
    manager=MANAGER,
)

SWEEP_INTERVAL = 0.01
# A sweep that has started is held this long at most, waiting for close() to close the database.
HOLD_SECONDS = 0.2
# How long the check waits for the sweeper to start a sweep (it does every SWEEP_INTERVAL).
WAIT_FOR_A_SWEEP = 1.0
# How long each log line is held up while close() runs: 50 sweeps, if the sweeper still runs.
SLOW_LOG_SECONDS = 0.5


class _SlowWhileClosing(logging.Handler):
    """Holds up the log lines close() writes while the manager's own threads still run, until one
    of them has failed or time is up."""

    def __init__(self, closer: threading.Thread, failed: threading.Event):
        super().__init__()
        self.closer, self.failed, self.closing = closer, failed, False
        self.threads: list[threading.Thread] = []  # the threads the manager started

    def emit(self, record: logging.LogRecord) -> None:
        if not self.closing or threading.current_thread() is not self.closer:
            return
        deadline = time.monotonic() + SLOW_LOG_SECONDS
        while any(thread.is_alive() for thread in self.threads) and time.monotonic() < deadline:
            if self.failed.wait(0.005):
                return


@contextmanager
def _background_failures() -> Iterator[tuple[list[str], _SlowWhileClosing]]:
    """What threads other than this one raise, and a slow log handler on the root logger, for the block."""
    failed, raised = threading.Event(), []
    previous, root = threading.excepthook, logging.getLogger()
    me = threading.current_thread()

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.thread is me:
            previous(args)
            return
        name = args.thread.name if args.thread is not None else "a thread"
        raised.append(f"{name} raised {args.exc_type.__name__}: {args.exc_value}")
        failed.set()

    handler, level = _SlowWhileClosing(me, failed), root.level
    threading.excepthook = hook
    root.addHandler(handler)
    root.setLevel(min(level, logging.DEBUG) if level else logging.DEBUG)
    try:
        yield raised, handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        threading.excepthook = previous


class _SweepHeldOpen:
    """The manager's clock. Once armed, the first call from another thread (the sweeper, as a sweep
    starts) is held until the database is closed or HOLD_SECONDS pass: close() then runs while a
    sweep is under way, and a sweep that outlives the database shows."""

    def __init__(self, closer: threading.Thread):
        self.closer, self.armed, self.held = closer, threading.Event(), threading.Event()
        self.connection: sqlite3.Connection | None = None

    def __call__(self) -> float:
        if self.armed.is_set() and not self.held.is_set() and threading.current_thread() is not self.closer:
            self.held.set()
            deadline = time.monotonic() + HOLD_SECONDS
            while time.monotonic() < deadline and _is_open(self.connection):
                time.sleep(0.001)
        return time.time()


def _is_open(connection: sqlite3.Connection | None) -> bool:
    try:
        return connection is not None and connection.total_changes >= 0
    except sqlite3.ProgrammingError:  # "Cannot operate on a closed database."
        return False


def close_while_sweeping(new_manager: NewManager) -> Figure:
    """Close a manager in the middle of a sweep (its sweeper runs every 10 ms), with a slow log."""
    with _background_failures() as (raised, handler):
        clock = _SweepHeldOpen(threading.current_thread())
        before = set(threading.enumerate())
        manager = new_manager(sweep_interval=SWEEP_INTERVAL, clock=clock)
        handler.threads = [thread for thread in threading.enumerate() if thread not in before]
        try:
            clock.connection = connection_of(manager)
        except Inconclusive:
            clock.connection = None  # nothing to hold the sweep open for: the slow log alone
        manager.delete_session(manager.create_session("user-1", "Ada"))  # a row for the sweeper to purge
        clock.armed.set()
        clock.held.wait(WAIT_FOR_A_SWEEP)  # a sweep has started, and waits for close()
        handler.closing = True
        try:
            manager.close()
        finally:
            handler.closing = False
    if not raised:
        return Figure(True, "no thread fails", "none failed",
                      "the manager was closed in the middle of a sweep; no background thread failed")
    return Figure(False, "no thread fails", f"{len(raised)} failed",
                  f"closing the manager in the middle of a sweep: the {raised[0]} (the database was closed "
                  f"under a sweeper that was still running)")


STRESS = Scenario(BUG, close_while_sweeping, round_rate=0.9, check_history=False)
RACE = None


def closed_under_its_sweeper(implementation: Implementation) -> Figure:
    """close-order: close() stops the sweeper before it closes the database."""
    return close_while_sweeping(lambda **options: implementation.new(MANAGER, **options))


CHECKS = (("close while the sweeper runs, with a slow log", closed_under_its_sweeper),)
