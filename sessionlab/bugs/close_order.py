"""Bug 11, close order: close() closes the database, then stops the sweeper that still uses it."""

from __future__ import annotations

import linecache
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sessionlab.bug import ORDER_VIOLATION, Bug
from sessionlab.bugs.persistent import MANAGER
from sessionlab.engines.exploration.processes import connection_of
from sessionlab.engines.exploration.search import Inconclusive
from sessionlab.engines.line_holds import LineHolder, WaitsForOthers, wait_until
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

    def __init__(self, closer: threading.Thread):
        super().__init__()
        self.closer, self.failed, self.closing = closer, threading.Event(), False
        self.threads: list[threading.Thread] = []  # the threads the manager started

    def emit(self, record: logging.LogRecord) -> None:
        if not self.closing or threading.current_thread() is not self.closer:
            return
        deadline = time.monotonic() + SLOW_LOG_SECONDS
        while any(thread.is_alive() for thread in self.threads) and time.monotonic() < deadline:
            if self.failed.wait(0.005):
                return


class _Failures(list):
    """What the threads started inside a block raised, one line each; ``failed`` is set at the first."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = threading.Event()


@contextmanager
def _own_threads_failing() -> Iterator[_Failures]:
    """Collect what the threads started inside the block raise. Threads that were already running
    (another check's leftovers) report where they reported before: they are not this manager's."""
    failures, previous, before = _Failures(), threading.excepthook, set(threading.enumerate())

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.thread is None or args.thread in before:
            previous(args)
            return
        failures.append(f"the {args.thread.name} raised {args.exc_type.__name__}: {args.exc_value}")
        failures.failed.set()

    threading.excepthook = hook
    try:
        yield failures
    finally:
        threading.excepthook = previous


@contextmanager
def _logging_to(handler: logging.Handler) -> Iterator[None]:
    """The handler on the root logger, which lets every record through, for the block."""
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.DEBUG) if level else logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


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
    handler = _SlowWhileClosing(threading.current_thread())
    with _own_threads_failing() as raised, _logging_to(handler):
        handler.failed = raised.failed
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
                  f"closing the manager in the middle of a sweep: {raised[0]} (the database was closed "
                  f"under a sweeper that was still running)")


STRESS = Scenario(BUG, close_while_sweeping, round_rate=0.9, check_history=False)
RACE = None


def closed_under_its_sweeper(implementation: Implementation) -> Figure:
    """close-order: close() stops the sweeper before it closes the database."""
    return close_while_sweeping(lambda **options: implementation.new(MANAGER, **options))




# -- Close at every line of a sweep ---------------------------------------------------------

# How often the sweeper runs in the check, and how long a held sweep waits for close() to
# return or to wait for it: longer than any timeout a close() may give the sweeper.
EVERY_LINE_INTERVAL = 0.01
HOLD_FOR_CLOSE = 1.0
# How long the sweeper may take to end once released, and to reach the line it is held at.
SWEEPER_ENDS_WITHIN = 2.0


def _cycle_end(lines: list[tuple[str, int]]) -> int | None:
    """Where the sweeper is back at its loop: the second run of the first line it runs twice (the
    lines before the loop, a `try:` say, run once), counted from 1."""
    for i, line in enumerate(lines):
        if line in lines[i + 1:]:
            return lines.index(line, i + 1) + 1
    return None


def _one_cycle(implementation: Implementation) -> tuple[int, list[str]]:
    """How many lines of the implementation the sweeper runs from its start through one sweep and
    back to where it waits (the lines the check holds it at, one after another), and what the
    manager's own threads raised when it was closed after that."""
    holder = LineHolder(implementation.files)
    with _own_threads_failing() as failures:
        with holder.tracing():
            manager = implementation.new(MANAGER, sweep_interval=EVERY_LINE_INTERVAL)

        def two_cycles_seen() -> bool:  # then the loop's own line has come round again too
            lines = list(holder.lines)
            end = _cycle_end(lines)
            return end is not None and len(lines) >= 2 * end

        try:
            wait_until(two_cycles_seen, SWEEPER_ENDS_WITHIN)
        finally:
            manager.close()
            for thread in holder.threads:
                thread.join(SWEEPER_ENDS_WITHIN)
    lines = list(holder.lines)
    return _cycle_end(lines) or len(lines), list(failures)


def _close_with_the_sweeper_held_at(implementation: Implementation, line: int) -> str | None:
    """Hold the sweeper at its line-th line, close the manager, let the sweeper go: what failed."""
    holder = LineHolder(implementation.files)
    holder.arm(line)
    with _own_threads_failing() as failures, _released(holder):
        with holder.tracing():
            manager = implementation.new(MANAGER, sweep_interval=EVERY_LINE_INTERVAL)
        if not holder.held.wait(SWEEPER_ENDS_WITHIN):
            holder.release()
            manager.close()
            return None  # the sweeper never ran this many lines: nothing to hold
        closer = threading.Thread(target=lambda: _close(manager, failures), name="close", daemon=True)
        closer.start()
        waiting = WaitsForOthers(closer, implementation.files)
        wait_until(lambda: not closer.is_alive() or waiting(), HOLD_FOR_CLOSE)
        where = holder.where
        holder.release()
        closer.join(SWEEPER_ENDS_WITHIN)
        if closer.is_alive():
            return f"close() did not return once the sweep held at {_line(where)} went on"
        for thread in holder.threads:
            thread.join(SWEEPER_ENDS_WITHIN)
        alive = [thread.name for thread in holder.threads if thread.is_alive()]
    if failures:
        return f"{failures[0]} (close() ran while the sweeper was at {_line(where)})"
    if alive:
        return f"the {alive[0]} still runs after close() returned (close() ran while it was at {_line(where)})"
    return None


@contextmanager
def _released(holder: LineHolder) -> Iterator[None]:
    try:
        yield
    finally:
        holder.release()


def _close(manager: object, failures: list[str]) -> None:
    try:
        manager.close()  # type: ignore[attr-defined]
    except Exception as exc:
        failures.append(f"close() raised {type(exc).__name__}: {exc}")


def _line(where: tuple[str, int, str] | None) -> str:
    if where is None:
        return "a line that could not be found"
    text = linecache.getline(where[0], where[1]).strip()
    return f"{os.path.basename(where[0])}:{where[1]} `{text}` in {where[2]}"


def closed_at_every_line_of_a_sweep(implementation: Implementation) -> Figure:
    """close-order: close() while the sweeper is held at each line of a sweep in turn; nothing fails."""
    lines, failed = _one_cycle(implementation)
    if failed:
        return Figure(False, "no thread fails", "failed",
                      f"closing the manager while its sweeper ran every {EVERY_LINE_INTERVAL:g} s: {failed[0]}")
    if not lines:
        raise Inconclusive("close-order: the manager's own threads ran none of its code, so no line of a sweep "
                           "could be held")
    for line in range(1, lines + 1):
        failed = _close_with_the_sweeper_held_at(implementation, line)
        if failed:
            return Figure(False, "no thread fails", "failed",
                          f"closing the manager while the sweeper was held at line {line} of a sweep: {failed}")
    return Figure(True, "no thread fails", "none failed",
                  f"close() ran while the sweeper was held at each of the {lines} lines of a sweep in turn (held "
                  f"until close() returned or waited for it, up to {HOLD_FOR_CLOSE:g} s); every close returned "
                  f"and no thread failed")


class _CloseWhenTheSweeperLogs(logging.Handler):
    """Calls close() from the manager's own thread, the first time that thread logs."""

    def __init__(self, threads: list[threading.Thread]):
        super().__init__()
        self.threads, self.manager, self.failures = threads, None, []
        self.called = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.manager is None or self.called.is_set() or threading.current_thread() not in self.threads:
            return
        self.called.set()
        _close(self.manager, self.failures)


def closed_from_the_sweepers_own_thread(implementation: Implementation) -> Figure:
    """close-order: close() called on the sweeper's own thread (by a log handler) returns and ends it."""
    clock = [1_700_000_000.0]
    before = set(threading.enumerate())
    threads: list[threading.Thread] = []
    handler = _CloseWhenTheSweeperLogs(threads)
    with _own_threads_failing() as failures, _logging_to(handler):
        handler.failures = failures
        manager = implementation.new(MANAGER, ttl=60.0, sweep_interval=EVERY_LINE_INTERVAL, clock=lambda: clock[0])
        threads.extend(t for t in threading.enumerate() if t not in before)
        manager.create_session("user-1", "Ada")
        handler.manager = manager
        clock[0] += 3600  # the session is idle: the next sweep expires it, and says so
        handler.called.wait(SWEEPER_ENDS_WITHIN)
        for thread in threads:
            thread.join(SWEEPER_ENDS_WITHIN)
    if not handler.called.is_set():
        manager.close()
        return Figure(True, "close() returns", "not run",
                      "not checked: the manager's own thread logged nothing, so close() could not be called from it")
    alive = [t.name for t in threads if t.is_alive()]
    if handler.failures or alive:
        what = handler.failures[0] if handler.failures else f"the {alive[0]} still runs after it returned"
        return Figure(False, "close() returns", "failed",
                      f"close() called on the sweeper's own thread (from a log handler, as an alert hook does): {what}")
    return Figure(True, "close() returns", "returned",
                  "close() called on the sweeper's own thread returned, and the sweeper ended")


CHECKS = (("close while the sweeper runs, with a slow log", closed_under_its_sweeper),
          ("close with the sweeper held at each line of a sweep", closed_at_every_line_of_a_sweep),
          ("close from the sweeper's own thread", closed_from_the_sweepers_own_thread))
