"""Deterministic exploration of thread interleavings, on the frontrun library.

frontrun runs some workers under a scheduler it controls and explores every
meaningfully different interleaving (dynamic partial order reduction over the
shared reads, writes and lock operations it observes). This module runs one
such search for the lab and keeps the events of the interleaving that broke,
so the report (``sessionlab.reports.race``) can show every line each thread ran.

Stress tests in the same process keep real locks: frontrun's cooperative locks
are patched in only while an exploration runs, and only one exploration runs
at a time.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from sessionlab.engines.bounded import Hang, OutOfTime, run_bounded
from sessionlab.engines.fair_time import FairClock
from sessionlab.engines.exploration.capture import capturing_trace
from sessionlab.engines.exploration.databases import seeing_sqlite
from sessionlab.engines.exploration.files import seeing_files
from sessionlab.engines.exploration.files import unseen as unseen_calls
from sessionlab.engines.exploration.search_state import (
    restore, swap_module_locks, walk_past_objects_that_raise)
from sessionlab.engines.exploration.witness import explore_bounded
from sessionlab.implementations import Implementation
from sessionlab.reports.steps import build_steps
from sessionlab.reports.trace import Step

# Enough for a complete search of every scenario here on fixed; reported if reached.
MAX_EXECUTIONS = 20_000

# Only one exploration may run at a time in a process: the scheduler patches
# process-wide locks while it runs.
_exploring = threading.Lock()
# Which search owns the process's patched locks now: a search abandoned after a hang
# (``_recover``) must not unpatch or release what a later search holds when its stuck
# thread finally ends. Changed only with _exploring held, or by _recover.
_current: dict[str, Any] = {"search": 0, "swapped": []}


class Inconclusive(Exception):
    """The search could not finish, and what it did run shows neither a failure nor a hang."""


class FrontrunUnavailable(RuntimeError):
    """frontrun is not installed, or has no build for this platform."""


def frontrun_available() -> tuple[bool, str]:
    """Whether deterministic exploration can run here, and if not, why not (one line)."""
    try:
        import frontrun  # noqa: F401
    except ImportError as exc:
        return False, (
            f"deterministic exploration needs the frontrun library ({exc}); it ships builds "
            "for Linux and Apple-silicon macOS: pip install -e '.[test]'"
        )
    return True, ""


# -- What the search traces ----------------------------------------------------------


@dataclass(frozen=True)
class Tracing:
    """Which code outside the implementation's own files the search traces.

    frontrun traces only code outside site-packages unless told otherwise, so a
    race inside a library the implementation calls would go unseen. By default
    the lab traces every third-party package the implementation uses.
    """

    dependencies: bool = True  # trace the third-party packages the implementation imports
    extra: tuple[str, ...] = ()  # more package patterns (fnmatch), e.g. "cachelib*"


TRACING = Tracing()


def configure(tracing: Tracing) -> None:
    """Set what every later exploration traces (the command line's --trace and --no-trace-deps)."""
    global TRACING
    TRACING = tracing


@dataclass(frozen=True)
class Scope:
    """What a search could see: the packages it traced, and the code it could not."""

    traced: tuple[str, ...]  # third-party packages traced besides the implementation's own files
    untraced: tuple[str, ...]  # packages the implementation uses whose code was not traced

    @property
    def folders(self) -> tuple[str, ...]:
        """Where the traced packages' files are: the report shows their lines too."""
        found = []
        for name in self.traced:
            location = getattr(sys.modules.get(name), "__file__", None)
            if location and not any(ch in name for ch in "*?["):
                found.append(str(Path(location).parent) if Path(location).name == "__init__.py" else location)
        return tuple(found)

    @property
    def packages(self) -> tuple[str, ...]:
        """The traced packages by module name (patterns left out)."""
        return tuple(name for name in self.traced if not any(ch in name for ch in "*?["))

    def sentence(self, implementation: str) -> str:
        seen = ", ".join((implementation,) + self.traced)
        text = f"complete over the code of {seen}"
        if self.untraced:
            text += f"; not traced: {', '.join(self.untraced)}"
        return text


def dependencies(module: ModuleType) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The third-party packages an implementation uses: (pure Python ones, ones with C code).

    Found from what its modules refer to: modules they imported, and classes and
    functions they imported from other packages. The standard library and the
    lab itself are left out.
    """
    own = module.__name__.split(".")[0]
    names: set[str] = set()
    # A package's own modules, those beside its __init__.py (as Implementation.files has them):
    # not its subpackages, such as fixed.wild, the stores of another track, once they are loaded.
    folder = Path(getattr(module, "__file__", None) or ".").parent
    modules = [module] + [m for name, m in list(sys.modules.items())
                          if name.startswith(module.__name__ + ".") and m is not None
                          and Path(getattr(m, "__file__", None) or "").parent == folder]
    for mod in modules:
        for value in list(vars(mod).values()):
            origin = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
            if isinstance(origin, str) and origin:
                names.add(origin.split(".")[0])
    # redis: frontrun sees every command redis-py sends (key-level detection), its code is not traced
    skip = set(sys.stdlib_module_names) | {own, "sessionlab", "frontrun", "builtins", "__future__", "redis"}
    python, native = [], []
    for name in sorted(names - skip):
        if name.startswith("_sessionlab_impl_") or name.startswith("_"):
            continue
        package = sys.modules.get(name)
        location = getattr(package, "__file__", None) or ""
        if location.endswith((".so", ".pyd")):
            native.append(name)
        elif location:
            python.append(name)
    return tuple(python), tuple(native)


def scope_of(implementation: Implementation) -> tuple[list[str], Scope]:
    """The trace_packages patterns for an implementation, and what they leave out."""
    module = implementation.module.__name__.split(".")[0]
    python, native = dependencies(implementation.module) if TRACING.dependencies else ((), ())
    patterns = [module, f"{module}.*"]
    for name in python:
        patterns += [name, f"{name}.*"]
    patterns += list(TRACING.extra)
    untraced = tuple(f"{name} (C code)" for name in native)
    if not TRACING.dependencies:
        untraced += tuple(dependencies(implementation.module)[0])
    return patterns, Scope(tuple(python) + TRACING.extra, untraced)


@dataclass(frozen=True)
class Exploration:
    """What one exploration of some workers found."""

    held: bool
    explored: int
    complete: bool  # the search ran out of interleavings, not out of budget
    seconds: float
    scope: Scope = Scope((), ())
    steps: tuple[Step, ...] = ()  # the interleaving that broke, line by line
    explanation: str = ""  # frontrun's own account of it
    reproduced: tuple[int, int] = (0, 0)
    schedule: tuple[int, ...] = ()
    preemptions: int | None = None  # the preemption bound the search was complete under (None: no bound)


# One run of the workers that takes longer than this is stuck on something the scheduler
# does not control; an exploration in which no run begins for EXPLORE_SECONDS is stuck outside them.
PER_RUN_SECONDS = 2.0
EXPLORE_SECONDS = 10.0
# A search that keeps running executions is slow, not stuck: the searches of one scenario may go
# on this long in all, then they are cut short (Inconclusive), never called a hang.
SEARCH_MOST_SECONDS = 40.0
# With a framework's code traced: how many executions the complete search may take before the
# search is run under a preemption bound instead, and that bound. A framework's call has
# hundreds of shared accesses; two unsynchronised calls through Django have more than 10,000
# interleavings, and a lost update, a lost increment or a colliding id needs one preemption.
FRAMEWORK_EXECUTIONS = 45
FRAMEWORK_PREEMPTIONS = 1
# How many more times a complete search through a framework that held is run (see explore_workers).
FRAMEWORK_CONFIRMATIONS = 2
# When a systematic run stalls: how many schedules to draw at random, and from which seed.
SAMPLED_SCHEDULES = 200
SAMPLE_SEED = 0


def clock_for(implementation: Implementation, clock: str = "real") -> str:
    """The clock a search of this code runs on: the virtual one where it runs a framework's code,
    else clock. A framework's store waits with sleeps (a fix that spins on the cache's atomic add,
    retrying after a millisecond): on the virtual clock that sleep lets the other thread in,
    on the real one the spinner is always runnable and a bounded search can never end it."""
    return "virtual" if scope_of(implementation)[1].packages else clock


def explore_workers(
    implementation: Implementation,
    setup: Callable[[], Any],
    workers: list[Callable[[Any], None]],
    invariant: Callable[[Any], bool],
    *,
    replays: int = 3,
    names: list[str] | None = None,
    seconds: float = EXPLORE_SECONDS,
    preemption_bound: int | None = None,
    clock: str = "real",
    io: bool = True,
) -> Exploration:
    """Run workers on a fresh setup() under every interleaving, until invariant fails.

    The search has no preemption bound, so when it holds it has run every
    meaningfully different interleaving (up to MAX_EXECUTIONS). It is bounded
    in time: a lock cycle, a run stuck on something the scheduler does not
    control, or a search that outlasts ``seconds`` raises Hang, naming the
    lines where each thread holds and waits (``names`` labels the workers).

    clock="virtual" runs the workers on frontrun's own clock: a sleep or a timed wait is a step
    the scheduler runs out itself, so a retry with backoff lets the other thread in and a lock
    taken with a timeout times out. The persistent track's searches use it; track 1's keep the
    real clock, under which every verdict of its held-out fixes was measured (under the virtual
    one, a per-session lock created check-then-act was accepted).

    io=True (the default) makes files and SQL statements shared state of the search (frontrun's
    I/O and SQL detection, with files.py and databases.py where it falls short), so a race through
    a session's file or row is found like one through a dict. The persistent track's searches
    pass io=False: frontrun's model of SQLite's transactions adds locks of its own to a store that
    guards its one connection with a Python lock (measured: 6 of 43 held-out verdicts wrong,
    false deadlocks among them), and its database is searched across processes, statement by
    statement. What a search did not see is named in its scope.
    """
    ok, why = frontrun_available()
    if not ok:
        raise FrontrunUnavailable(why)
    import frontrun
    from frontrun._cooperative import patch_locks, unpatch_locks

    walk_past_objects_that_raise()
    patterns, scope = scope_of(implementation)
    started = time.perf_counter()
    events: list[Any] = []

    if scope.packages:
        # What a framework makes lazily (a cache connection per thread and its lock, settings it
        # caches on first use) is made now, outside the search, by one run of the workers one
        # after the other: made during the search, a lock of the search's would stay in the
        # framework after it, and the first execution would differ from every later one.
        def first_run() -> None:
            state = setup()
            for worker in workers:
                try:
                    worker(state)
                except Exception:  # the search will meet it again, and report it
                    pass

        run_bounded(first_run, seconds=PER_RUN_SECONDS, label="a first run of the workers, one after the other",
                    files=implementation.files)

    def run(**strategy: Any) -> Any:
        if not _exploring.acquire(timeout=seconds):
            raise RuntimeError("another exploration is still running in this process")
        _current["search"] += 1
        mine = _current["search"]
        try:
            events.clear()
            with capturing_trace(events), seeing_files(io), seeing_sqlite(io):
                patch_locks()  # lets explore() run without the frontrun command-line wrapper
                swapped = _current["swapped"] = swap_module_locks(implementation, scope.packages)
                try:
                    return frontrun.explore(
                        setup=partial(_unless_abandoned, mine, setup),
                        workers=workers,
                        invariant=invariant,
                        detect_io=io,
                        clock=clock,
                        reproduce_on_failure=replays,
                        trace_packages=patterns,
                        timeout_per_run=PER_RUN_SECONDS,
                        **strategy,
                    )
                finally:
                    if _current["search"] == mine:  # else _recover has cleaned up after it
                        restore(swapped)
                        unpatch_locks()
        finally:
            if _current["search"] == mine:
                _exploring.release()

    whole = FairClock()

    def bounded(**strategy: Any) -> Any:
        try:
            return explore_bounded(lambda: run(**strategy), seconds=seconds, label="the exploration",
                                   files=implementation.files, names=names, per_run=PER_RUN_SECONDS,
                                   most=max(1.0, SEARCH_MOST_SECONDS - whole.elapsed()))
        except Hang:
            _recover(unpatch_locks)
            raise
        except OutOfTime as slow:
            _recover(unpatch_locks)
            raise Inconclusive(
                f"the search was cut short: it was still running interleavings ({slow.progress} begun) "
                f"after {slow.seconds:g} s; not every interleaving was run, so nothing is proven") from None

    # With a framework traced, the complete search gets a budget; past it, the search is run
    # again, complete under a preemption bound, and says so.
    searched_whole = scope.packages and preemption_bound is None
    budget = FRAMEWORK_EXECUTIONS if searched_whole else MAX_EXECUTIONS
    try:
        result = bounded(stop_on_first=True, preemption_bound=preemption_bound, max_executions=budget)
        if result.property_holds and result.num_explored >= budget < MAX_EXECUTIONS:
            preemption_bound = FRAMEWORK_PREEMPTIONS
            result = bounded(stop_on_first=True, preemption_bound=preemption_bound, max_executions=MAX_EXECUTIONS)
        if searched_whole and preemption_bound is None and result.property_holds:
            # Objects a framework makes while the workers run get their numbers in the order they
            # are first touched, which the schedule changes; frontrun's search can then prune an
            # interleaving it has not run (a lost update on Flask-Session went unseen in 2
            # searches of 16). A search through a framework that holds is run again, and a
            # failure any of them finds is the answer.
            for _ in range(FRAMEWORK_CONFIRMATIONS):
                again = bounded(stop_on_first=True, preemption_bound=None, max_executions=budget)
                if again.property_holds is False:
                    result = again
                    break
    except Hang as hang:
        if hang.deadlock:
            raise
        # A run stalled with no lock cycle: the code may hang (a wait nobody ends), or the
        # search may have stalled on a primitive it schedules badly (frontrun 0.7 stalls on
        # Condition.wait). Schedules drawn at random, from a fixed seed, tell which, and give
        # the same answer every time.
        stalled = "; ".join(wait.describe() for wait in hang.waits) or "no thread was found waiting"
        result = bounded(strategy="random", seed=SAMPLE_SEED, max_attempts=SAMPLED_SCHEDULES)
        if result.property_holds is None:  # a sampled run never ended either: the code hangs
            raise Hang(hang.seconds, hang.label, hang.waits) from None
        if result.property_holds:
            raise Inconclusive(
                f"the search could not finish: a run stalled ({stalled}), then {SAMPLED_SCHEDULES} "
                f"schedules drawn at random held; not every interleaving was run, so nothing is proven"
            ) from None
    seconds_taken = time.perf_counter() - started
    unseen = [f"{call} (a call on a file descriptor)" for call in unseen_calls()]
    if not io:
        unseen.insert(0, "the database's statements and the files")
    scope = replace(scope, untraced=scope.untraced + tuple(unseen))
    if result.property_holds is None:
        raise RuntimeError(f"the exploration was inconclusive: {result.inconclusive_reason}")
    if result.property_holds:
        complete = result.num_explored < MAX_EXECUTIONS
        return Exploration(True, result.num_explored, complete, seconds_taken, scope, preemptions=preemption_bound)
    return Exploration(
        False, result.num_explored, False, seconds_taken, scope,
        steps=build_steps(events, implementation.module, scope.folders),
        explanation=result.explanation or "",
        reproduced=(result.reproduction_successes, result.reproduction_attempts),
        schedule=tuple(result.counterexample or ()),
    )


def _unless_abandoned(search: int, setup: Callable[[], Any]) -> Any:
    """setup(), in a search still wanted; a search given up on stops at its next execution."""
    if _current["search"] != search:
        raise RuntimeError("this exploration was given up on")
    return setup()


def _recover(unpatch_locks: Callable[[], None]) -> None:
    """After a hang, let later explorations run: the stuck thread may never clean up, and if
    it ends later it leaves what is by then another search's alone."""
    _current["search"] += 1
    restore(_current["swapped"])
    _current["swapped"] = []
    try:
        unpatch_locks()
    except Exception:  # already unpatched
        pass
    if _exploring.locked():
        _exploring.release()
