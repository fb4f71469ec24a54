"""Hold a background thread at one line of the implementation's code, whichever line is asked.

A manager's own thread (a sweeper) runs on its own schedule: no scenario can
call it at the moment that matters. ``LineHolder`` traces the threads started
inside its block and counts the lines of the implementation's files they run;
armed at line n, the thread that reaches its n-th line from then on stops there
until ``release``. Holding it at each line in turn, and doing something else
meanwhile (closing the manager), runs every schedule of that thread against it.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sessionlab.engines.bounded import Files, matcher
from sessionlab.engines.untraced import untraced


MAX_RECORDED = 2000


class LineHolder:
    """Counts the lines threads started in ``tracing()`` run in the files, and holds one of them."""

    def __init__(self, files: Files):
        self._mine = matcher(files)
        self._lock = threading.Lock()  # guards the fields below
        self._count = 0
        self._target: int | None = None
        self.held = threading.Event()  # a thread is stopped at the target line
        self._release = threading.Event()
        self.where: tuple[str, int, str] | None = None  # the line it is held at
        self.threads: list[threading.Thread] = []
        self.lines: list[tuple[str, int]] = []  # the first lines run, in order (up to MAX_RECORDED)

    @untraced
    def _on_line(self, frame: types.FrameType) -> None:
        with self._lock:
            self._count += 1
            if len(self.lines) < MAX_RECORDED:
                self.lines.append((frame.f_code.co_filename, frame.f_lineno))
            hit = self._target is not None and self._count == self._target
            if hit:
                self._target = None
                self.where = (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
        if hit:
            self.held.set()
            self._release.wait()

    def _trace(self, frame: types.FrameType, event: str, arg: Any) -> Callable | None:
        if event != "call" or not self._mine(frame.f_code.co_filename):
            return None

        def local(frame: types.FrameType, event: str, arg: Any) -> Callable | None:
            if event == "line":
                self._on_line(frame)
            return local

        return local

    @contextmanager
    def tracing(self) -> Iterator[None]:
        """Trace the threads started in the block (and only those)."""
        before = set(threading.enumerate())
        previous = threading.gettrace() if hasattr(threading, "gettrace") else None
        threading.settrace(self._trace)
        try:
            yield
        finally:
            threading.settrace(previous)  # type: ignore[arg-type]
            self.threads = [t for t in threading.enumerate() if t not in before]

    def arm(self, lines_from_now: int) -> None:
        """Hold the thread that runs the lines_from_now-th line from now."""
        with self._lock:
            self._target = self._count + lines_from_now
        self.held.clear()
        self._release.clear()

    def count(self) -> int:
        with self._lock:
            return self._count

    def release(self) -> None:
        with self._lock:
            self._target = None
        self._release.set()


def waits_without_end(thread: threading.Thread, files: Files) -> bool:
    """Whether a thread is blocked in a wait with no timeout: a join or a wait on an event or
    condition with timeout None, or a `with` on a lock in the implementation's code."""
    frame = sys._current_frames().get(thread.ident)
    mine = matcher(files)
    innermost_mine = None
    while frame is not None:
        name = frame.f_code.co_name
        if frame.f_code.co_filename == threading.__file__ and name in ("join", "wait", "_wait_for_tstate_lock"):
            timeout = frame.f_locals.get("timeout", 0)
            if timeout is None or (name == "_wait_for_tstate_lock" and timeout == -1):
                return True
        if innermost_mine is None and mine(frame.f_code.co_filename):
            innermost_mine = frame
        frame = frame.f_back
    if innermost_mine is not None:
        import linecache
        text = linecache.getline(innermost_mine.f_code.co_filename, innermost_mine.f_lineno).strip()
        return text.startswith("with ") and "lock" in text.lower()
    return False


def _timed_wait(thread: threading.Thread) -> float | None:
    """The timeout of the join or wait the thread is blocked in, if it has one."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_filename == threading.__file__ and frame.f_code.co_name in ("join", "wait"):
            timeout = frame.f_locals.get("timeout")
            if isinstance(timeout, (int, float)) and timeout >= 0:
                return float(timeout)
        frame = frame.f_back
    return None


class WaitsForOthers:
    """Whether a thread waits for other threads without end, judged as it is sampled over time: a
    wait with no timeout (``waits_without_end``), or joins or waits with a timeout called again and
    again, the way a loop polls until another thread has ended. One short join followed by other
    work is not such a wait: the thread stays in it no longer than its timeout."""

    # Out of a timed wait for this long, the thread is doing something else: the polling is over.
    OUT_OF_IT = 0.02

    def __init__(self, thread: threading.Thread, files: Files):
        self._thread, self._files = thread, files
        self._since: float | None = None  # when it was first seen in a timed wait, this run of them
        self._last_seen = 0.0
        self._longest = 0.0  # the longest timeout among them

    def __call__(self) -> bool:
        if waits_without_end(self._thread, self._files):
            return True
        now, timeout = time.monotonic(), _timed_wait(self._thread)
        if timeout is None:
            if self._since is not None and now - self._last_seen > self.OUT_OF_IT:
                self._since = None
            return False
        if self._since is None:
            self._since, self._longest = now, 0.0
        self._last_seen, self._longest = now, max(self._longest, timeout)
        return now - self._since > 2 * self._longest + self.OUT_OF_IT


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.002)
    return condition()
