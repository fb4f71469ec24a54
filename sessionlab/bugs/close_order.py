"""Bug 11, close order: close() closes the database, then stops the sweeper that still uses it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sessionlab.bugs import ORDER_VIOLATION, Bug
from sessionlab.bugs.persistent import MANAGER
from sessionlab.figure import Figure
from sessionlab.impls import Implementation
from sessionlab.stress import NewManager, Scenario

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
        "a manager sweeping every 10 ms is closed while its log is slow to write (as a remote log "
        "is); no background thread may fail"
    ),
    functions=("PersistentSessionManager.close",),
    module="persistent.py",
    manager=MANAGER,
)

SWEEP_INTERVAL = 0.01
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


def close_while_sweeping(new_manager: NewManager) -> Figure:
    """Close a manager whose sweeper runs every 10 ms while every log line close() writes is slow."""
    with _background_failures() as (raised, handler):
        before = set(threading.enumerate())
        manager = new_manager(sweep_interval=SWEEP_INTERVAL)
        handler.threads = [thread for thread in threading.enumerate() if thread not in before]
        manager.delete_session(manager.create_session("user-1", "Ada"))  # a row for the sweeper to purge
        handler.closing = True
        try:
            manager.close()
        finally:
            handler.closing = False
    if not raised:
        return Figure(True, "no thread fails", "none failed",
                      "the manager was closed while its sweeper ran every 10 ms; no background thread failed")
    return Figure(False, "no thread fails", f"{len(raised)} failed",
                  f"closing the manager while its sweeper ran: the {raised[0]} (the database was closed "
                  f"under a sweeper that was still running)")


STRESS = Scenario(BUG, close_while_sweeping, round_rate=0.9, check_history=False)
RACE = None


def closed_under_its_sweeper(implementation: Implementation) -> Figure:
    """close-order: close() stops the sweeper before it closes the database."""
    return close_while_sweeping(lambda **options: implementation.new(MANAGER, **options))


CHECKS = (("close while the sweeper runs, with a slow log", closed_under_its_sweeper),)
