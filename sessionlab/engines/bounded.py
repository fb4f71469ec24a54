"""Bounded checks: code that never finishes becomes a ``Hang`` verdict, not a hung lab.

``run_bounded`` runs a function on a daemon thread and gives up after a bound;
``join_all`` joins started threads against one deadline. Bounds are counted on
a ``FairClock`` (fair_time.py), so a busy machine does not turn slow into stuck. Both raise ``Hang``,
naming each stuck thread and the learner's own line where it waits.

Python cannot kill a thread: a stuck thread is abandoned, and still holds what it
held, so after a ``Hang`` the process is fit to report and exit, not to check the
same code again. Create worker threads with ``daemon=True``; ``abandon`` (which
both helpers call) lets the interpreter exit past non-daemon ones (CPython 3.11, 3.12).

Under frontrun, ``explore_bounded`` bounds a whole exploration and, with a
``Witness``, turns a lock cycle frontrun found (``thread 0 -> lock 2 -> thread 1 ->
lock 1 -> thread 0``) or a run past its ``timeout_per_run`` into a ``Hang`` that
says which thread holds which lock, taken at which line, and where each waits.
"""

from __future__ import annotations

import ast
import functools
import inspect
import linecache
import os
import sys
import sysconfig
import threading
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from sessionlab.engines.fair_time import FairClock
from sessionlab.engines.fair_time import join as fair_join
from sessionlab.engines.untraced import untraced

T = TypeVar("T")
Files = Iterable[str | os.PathLike[str]] | None
Raw = tuple[str, int, str]  # file, line number, function


@dataclass(frozen=True)
class Held:
    """A lock a stuck thread holds, and the line where it took it."""

    lock: str
    file: str = ""
    line: int = 0
    function: str = ""
    text: str = ""


@dataclass(frozen=True)
class Wait:
    """One stuck thread: the line where it waits, and in a lock cycle what it holds and waits for."""

    thread: str
    file: str = ""  # empty: no line of this thread is known
    line: int = 0
    function: str = ""
    text: str = ""
    waits_for: str = ""
    holds: tuple[Held, ...] = ()

    def describe(self) -> str:
        where = _where(self)
        if not self.waits_for:
            return f"{self.who} waits at {where}"
        held = " and ".join(f"{h.lock} (taken at {_where(h)})" if h.file else h.lock for h in self.holds)
        if not held:
            return f"{self.who} waits for {self.waits_for} at {where}"
        return f"{self.who} holds {held} and waits for {self.waits_for} at {where}"

    @property
    def who(self) -> str:
        return self.thread if self.thread.startswith("thread ") else f"thread {self.thread}"


def _where(line: Held | Wait) -> str:
    if not line.file:
        return "a line that could not be found"
    return f"{os.path.basename(line.file)}:{line.line} `{line.text}` in {line.function}"


class Hang(Exception):
    """A check did not finish: every stuck thread, and where it waits."""

    def __init__(self, seconds: float | None, label: str, waits: Iterable[Wait], deadlock: bool = False):
        self.seconds = seconds  # the bound that ran out; None when a lock cycle was proven
        self.label = label  # what was running
        self.waits = tuple(waits)
        self.deadlock = deadlock
        super().__init__(self.summary)

    def __reduce__(self) -> tuple[Any, ...]:  # so a Hang can cross a process boundary
        return Hang, (self.seconds, self.label, self.waits, self.deadlock)

    @property
    def summary(self) -> str:
        if self.deadlock:
            head = "your code deadlocks"
        elif self.seconds is None:
            head = "your code did not finish"
        else:
            head = f"your code did not finish within {self.seconds:g} s"
        body = "; ".join(wait.describe() for wait in self.waits) or "no thread was found waiting"
        return f"{head}: {body}"

    def text(self) -> str:
        head = self.summary.split(":", 1)[0]
        lines = [f"HANGS: {head} ({self.label})" if self.label else f"HANGS: {head}"]
        for wait in self.waits:
            lines.append(f"  {wait.who}")
            lines.extend(f"    holds {h.lock}, taken at {_where(h)}" for h in wait.holds)
            what = f"for {wait.waits_for} " if wait.waits_for else ""
            lines.append(f"    waits {what}at {_where(wait)}")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "seconds": self.seconds, "deadlock": self.deadlock,
                "message": self.summary, "waits": [asdict(wait) for wait in self.waits]}


# -- Stacks ---------------------------------------------------------------------------

_LIBRARY = tuple(sorted({os.path.realpath(p) + os.sep for p in [
    *(sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")),
    *(p for p in sys.path if p.endswith(("site-packages", "dist-packages"))),
    os.path.dirname(os.path.abspath(__file__)),  # sessionlab itself
]}))


@untraced
def matcher(files: Files) -> Callable[[str], bool]:
    """Whether a code file is the learner's: one of files (or under one of them, for a
    folder); with files None, any file outside the standard library, site-packages and sessionlab."""
    paths = None if files is None else [os.path.realpath(os.fspath(f)) for f in files]
    exact = set(paths or ())
    folders = tuple(p + os.sep for p in paths or () if os.path.isdir(p))
    seen: dict[str, bool] = {}

    def mine(filename: str) -> bool:
        hit = seen.get(filename)
        if hit is None:
            path = filename if filename.startswith("<") else os.path.realpath(filename)
            if paths is None:
                hit = not filename.startswith("<") and not path.startswith(_LIBRARY)
            else:
                hit = path in exact or path.startswith(folders)
            seen[filename] = hit
        return hit

    return mine


@untraced
def innermost(frame: types.FrameType | None, mine: Callable[[str], bool]) -> Raw | None:
    while frame is not None:
        if mine(frame.f_code.co_filename):
            return frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name
        frame = frame.f_back
    return None


def source_of(raw: Raw | None) -> str:
    return linecache.getline(raw[0], raw[1]).strip() if raw else ""


def wait_of(thread: str, raw: Raw | None, **more: Any) -> Wait:
    if raw is None:
        return Wait(thread, **more)
    return Wait(thread, raw[0], raw[1], raw[2], source_of(raw), **more)


def held_of(lock: str, raw: Raw | None) -> Held:
    return Held(lock, raw[0], raw[1], raw[2], source_of(raw)) if raw else Held(lock)


def thread_waits(threads: Iterable[threading.Thread], files: Files = None) -> tuple[Wait, ...]:
    """Where each live thread is now: its innermost line of the learner's, and the locks
    its frames hold by `with` blocks they are inside. Threads with no such line are left
    out, unless no thread has one."""
    frames = sys._current_frames()
    mine, outside = matcher(files), matcher(None)
    found = [(t.name, frames[t.ident]) for t in threads if t.ident in frames]
    own = [_holding(name, frame, mine, where) for name, frame in found if (where := innermost(frame, mine))]
    return tuple(own) or tuple(wait_of(name, innermost(frame, outside) or innermost(frame, lambda _: True))
                               for name, frame in found)


def _at_locks(threads: Iterable[threading.Thread], files: Files) -> bool:
    """Whether any of the threads stands at a line of the implementation that takes a lock (`with X:`,
    `X.acquire(`): the cheap look before thread_waits, which reads their code."""
    frames, mine = sys._current_frames(), matcher(files)
    for thread in threads:
        where = innermost(frames.get(thread.ident or -1), mine)
        text = source_of(where).lstrip() if where else ""
        if text.startswith("with ") or ".acquire(" in text:
            return True
    return False


def _holding(thread: str, frame: types.FrameType, mine: Callable[[str], bool], where: Raw) -> Wait:
    """A stuck thread's Wait, with the locks it holds when its code shows them: each of its
    frames that is inside `with X:` holds X, and a thread stuck at `with X:` waits for X."""
    waits_for = ""
    holds: list[Held] = []
    innermost = True
    while frame is not None:
        if mine(frame.f_code.co_filename):
            if innermost:
                lock = _lock_at(where[0], where[1])
                waits_for = lock if lock and _is_lock(lock, frame) else ""
            for lock, line in _enclosing_locks(frame.f_code.co_filename, frame.f_lineno, skip_own=innermost):
                if _is_lock(lock, frame):
                    holds.append(held_of(lock, (frame.f_code.co_filename, line, frame.f_code.co_name)))
            innermost = False
        frame = frame.f_back
    if not waits_for:
        return wait_of(thread, where)
    return wait_of(thread, where, waits_for=waits_for, holds=tuple(holds))


def _is_lock(expression: str, frame: types.FrameType) -> bool:
    """Whether a plain name or attribute chain (self._lock) names a lock in that frame.

    Only names and attributes are looked up, never calls, so nothing of the
    learner's runs; a name that cannot be looked up counts as no lock."""
    try:
        node = ast.parse(expression, mode="eval").body
    except SyntaxError:
        return False
    path = []
    while isinstance(node, ast.Attribute):
        path.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return False
    scope = {**frame.f_globals, **frame.f_locals}
    if node.id not in scope:
        return False
    value = scope[node.id]
    for name in reversed(path):
        try:
            value = inspect.getattr_static(value, name)
        except AttributeError:
            return False
    return callable(getattr(type(value), "acquire", None)) and callable(getattr(type(value), "release", None))


def _tree(filename: str) -> ast.AST | None:
    source = "".join(linecache.getlines(filename))
    return _parsed(source) if source else None


@functools.lru_cache(maxsize=64)
def _parsed(source: str) -> ast.AST | None:
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _lock_at(filename: str, line: int) -> str:
    """The lock a line takes: X in `with X:` or `X.acquire()`, as written; else ""."""
    tree = _tree(filename)
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.With) and node.lineno == line and node.items:
            return ast.unparse(node.items[0].context_expr)
        if (isinstance(node, ast.Call) and node.lineno == line and isinstance(node.func, ast.Attribute)
                and node.func.attr == "acquire"):
            return ast.unparse(node.func.value)
    return ""


def _enclosing_locks(filename: str, line: int, *, skip_own: bool) -> list[tuple[str, int]]:
    """The `with X:` blocks whose body holds line: (X as written, the with's line)."""
    tree = _tree(filename)
    found = []
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.With) and node.items and node.body:
            first, last = node.body[0].lineno, node.end_lineno or node.lineno
            if first <= line <= last and not (skip_own and node.lineno == line):
                found.append((ast.unparse(node.items[0].context_expr), node.lineno))
    return found


def _cycle(waits: Sequence[Wait]) -> bool:
    """Whether the stuck threads wait for locks held among themselves, as their code shows."""
    holders = {h.lock: wait.thread for wait in waits for h in wait.holds}
    for wait in waits:
        seen, thread = set(), wait.thread
        current = wait
        while current is not None and current.waits_for in holders and thread not in seen:
            seen.add(thread)
            thread = holders[current.waits_for]
            if thread == wait.thread:
                return True
            current = next((w for w in waits if w.thread == thread), None)
    return False


def abandon(threads: Iterable[threading.Thread]) -> bool:
    """Stop the interpreter from waiting for these threads at exit, as if they were
    daemons. Returns False when this Python offers no way to (3.13 and later)."""
    done = True
    for thread in threads:
        if thread.daemon or not thread.is_alive():
            continue
        locks, guard = getattr(threading, "_shutdown_locks", None), getattr(threading, "_shutdown_locks_lock", None)
        tstate = getattr(thread, "_tstate_lock", None)
        if locks is None or guard is None or tstate is None:
            done = False
            continue
        with guard:
            locks.discard(tstate)
        thread._daemonic = True  # type: ignore[attr-defined]
    return done


# Sampled this often, a lock cycle among the threads that stays the same for CYCLE_SECONDS is a
# deadlock: none of its threads can move again, so the bound need not run out first.
POLL_SECONDS, CYCLE_SECONDS = 0.05, 0.3


class OutOfTime(Exception):
    """A bounded function was still making progress when its longest bound ran out: slow, not stuck."""

    def __init__(self, seconds: float, progress: int):
        self.seconds, self.progress = seconds, progress
        super().__init__(f"still making progress after {seconds:g} s ({progress} steps)")


def run_bounded(function: Callable[[], T], *, seconds: float, label: str, files: Files = None,
                cycles: bool = False, progress: Callable[[], int] | None = None, most: float = 0.0) -> T:
    """function() on a daemon thread: its result, or its exception; Hang after seconds. With cycles,
    Hang as soon as its threads are seen in the same lock cycle for CYCLE_SECONDS: for the innermost
    bound of plain calls only (a bound around another bound would say it first, and a scheduler
    that pauses threads at their locks, as frontrun does, makes cycles of its own).

    With progress (a count that grows while function gets on, such as runs of a search), the
    bound is seconds without progress, and OutOfTime after most seconds in all."""
    before = set(threading.enumerate())
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, function()))
        except BaseException as error:  # re-raised on the caller's thread
            outcome.append((False, error))

    runner = threading.Thread(target=run, name="main", daemon=True)
    runner.start()
    clock, whole = FairClock(), FairClock()
    cycle, since = None, 0.0  # the lock cycle last seen, and since when
    steps = progress() if progress is not None else 0
    while True:
        runner.join(min(clock.left(seconds), POLL_SECONDS))
        if not runner.is_alive():
            ok, value = outcome[0]
            if ok:
                return value
            raise value
        if progress is not None and progress() != steps:
            steps, clock = progress(), FairClock()
            if whole.past(most):
                abandon(t for t in threading.enumerate() if t not in before)
                raise OutOfTime(most, steps)
        if clock.past(seconds):
            started = [t for t in threading.enumerate() if t not in before and t is not runner]
            break
        if not cycles:
            continue
        started = [t for t in threading.enumerate() if t not in before and t is not runner]
        now = clock.wall()
        waits = thread_waits([runner, *started], files) if _at_locks([runner, *started], files) else ()
        if not _cycle(waits):
            cycle = None
        elif waits != cycle:
            cycle, since = waits, now
        elif now - since >= CYCLE_SECONDS:
            abandon(started)
            raise Hang(None, label, waits, deadlock=True)
    waits = thread_waits([runner, *started], files)
    abandon(started)
    raise Hang(seconds, label, waits, deadlock=_cycle(waits))


def join_all(threads: Iterable[threading.Thread], seconds: float, label: str, files: Files = None) -> None:
    """Join started threads against one deadline; Hang naming those still running."""
    alive = fair_join(list(threads), seconds)
    if alive:
        waits = thread_waits(alive, files)
        abandon(alive)
        raise Hang(seconds, label, waits, deadlock=_cycle(waits))
