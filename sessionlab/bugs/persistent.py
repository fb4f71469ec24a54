"""What the bugs of the persistent track share: a clock the scenario moves, and a second look at the file.

A persistent manager's cache can disagree with its database, so the scenarios
never trust one manager's answer alone: ``stored`` opens a second manager on the
same file, whose cache starts empty, and reads what the database holds.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sessionlab.engines.exploration.threads import State
from sessionlab.implementations import Implementation

MANAGER = "PersistentSessionManager"
START = 1_700_000_000.0  # where every scenario's clock starts
QUIET = 3600.0  # a sweep interval long enough that the background sweeper never runs in a scenario


class Clock:
    """A clock the scenario moves by hand."""

    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now


def new_state(implementation: Implementation, *, ttl: float = 1800.0, idle: float = 0.0,
              cold: bool = False) -> State:
    """A fresh persistent manager with one session, its clock moved on by idle seconds.

    cold: the session was created by an earlier manager on the same file, so this one's cache
    starts without it (the first read is a miss).
    """
    clock = Clock()
    folder = tempfile.mkdtemp(prefix="sessionlab-")
    path = os.path.join(folder, "sessions.sqlite3")
    open_manager = lambda: implementation.new(MANAGER, path=path, ttl=ttl, sweep_interval=QUIET,  # noqa: E731
                                              clock=clock)
    try:
        manager = open_manager()
        session_id = manager.create_session("user-1", "Ada")
        if cold:
            manager.close()
            manager = open_manager()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    clock.now += idle
    return State(manager, session_id, {"clock": clock, "folder": folder})


def finish(state: State) -> None:
    """Close the scenario's manager and remove its file."""
    try:
        state.manager.close()
    finally:
        shutil.rmtree(state.seen["folder"], ignore_errors=True)


def stored(implementation: Implementation, manager: Any, session_id: str) -> Any:
    """The session as the database holds it, read by a second manager whose cache is empty."""
    with implementation.new(MANAGER, path=manager.path, sweep_interval=QUIET) as fresh:
        return fresh.get_session(session_id)


@contextmanager
def logging_to_a_file(level: int) -> Iterator[None]:
    """Log everything from level up to a file for the block, as a server in production does.

    Writing a log line is I/O: the thread releases the interpreter while the line goes
    out, and another thread runs. A window that holds a log call is as wide as a write.
    """
    root = logging.getLogger()
    previous = root.level
    with tempfile.TemporaryDirectory(prefix="sessionlab-log-") as folder:
        handler = logging.FileHandler(os.path.join(folder, "server.log"), encoding="utf-8")
        handler.setLevel(level)
        root.addHandler(handler)
        root.setLevel(min(previous, level) if previous else level)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(previous)
            handler.close()
