"""What the bugs of the persistent track share: a clock the scenario moves, and a second look at the file.

A persistent manager's cache can disagree with its database, so the scenarios
never trust one manager's answer alone: ``stored`` opens a second manager on the
same file, whose cache starts empty, and reads what the database holds.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sessionlab.impls import Implementation
from sessionlab.race import State

MANAGER = "PersistentSessionManager"
START = 1_700_000_000.0  # where every scenario's clock starts
QUIET = 3600.0  # a sweep interval long enough that the background sweeper never runs in a scenario


class Clock:
    """A clock the scenario moves by hand."""

    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now


def new_state(implementation: Implementation, *, ttl: float = 1800.0, idle: float = 0.0) -> State:
    """A fresh persistent manager with one session, its clock moved on by idle seconds."""
    clock = Clock()
    manager = implementation.new(MANAGER, ttl=ttl, sweep_interval=QUIET, clock=clock)
    try:
        session_id = manager.create_session("user-1", "Ada")
    except BaseException:
        manager.close()
        raise
    clock.now += idle
    return State(manager, session_id, {"clock": clock})


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
