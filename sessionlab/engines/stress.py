"""The stress harness: real OS threads, free-running, one scenario per bug.

Each scenario runs rounds against fresh managers and measures one figure: keys
kept, increments counted, sessions still queued, stats against the truth, ids
shared, snapshots that changed. A round either holds or breaks; ``observe`` runs
rounds until one breaks or a bounded number have held.

Every call a round makes is also recorded and the history checked for
linearizability (``sessionlab.engines.linearizability``), so a round can break even when
its totals happen to look right. Only the cleanup-leak scenario is not checked
that way: the leak is bookkeeping, not a history, and that scenario's
concurrent logins would blame another bug (id-collision) for what it found.

Races are a matter of luck for threads that run free, so the bound is set from
the rate at which one round breaks on ``buggy``: enough rounds that a bug
present in the code is missed less than once in a million runs at that rate.
The built-in rates were measured on a 2-core machine with CPython 3.11 and a 1
microsecond switch interval, each lowered for a margin. A machine can be slower
to break: ``sessionlab observe BUG --impl buggy --rate 100 --calibrate`` measures the
rate here and keeps it (``.sessionlab/rates.json``); from then on the bound counts
on the lower end of its 99% confidence interval when that is lower. The
deterministic checks decide a verdict; stress confirms it. Each bug's scenario, and
the rate it counts on, lives in its module under ``sessionlab/bugs/``.
"""

from __future__ import annotations

import json
import math
import platform
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessionlab.api import SessionManager, SessionNotFound
from sessionlab.bug import Bug
from sessionlab.engines.linearizability import kinds
from sessionlab.engines.linearizability.recording import HistoryRecorder
from sessionlab.figure import Figure, plural
from sessionlab.implementations import state_folder

NewManager = Callable[[], SessionManager]

# Rounds are added until a bug the scenario detects is missed less than this often.
MISS_PROBABILITY = 1e-6

# The GIL is handed to a waiting thread after this long (the default is 5 ms).
SWITCH_INTERVAL = 1e-6


# Which exercises a kind of broken history is about (kinds.py), whichever scenario's round
# recorded it: in Flask a read saves the whole session too, so a read beside a logout undoes it
# and a read beside an update loses it, and those are the exercises that fix the saves.
KIND_OWNERS = {kinds.UNDONE_LOGOUT: frozenset({"stats-drift", "lost-updates"}),
               kinds.LOST_UPDATE: frozenset({"lost-updates"}),
               kinds.LOST_INCREMENT: frozenset({"lost-increments"})}


def owners_of(verdict: Any) -> frozenset[str]:
    """The exercises a broken history of a store without a cache is about; empty: any."""
    return KIND_OWNERS.get(kinds.kind_of(verdict), frozenset())


def _belongs_elsewhere(verdict: Any, bug: Bug) -> bool:
    """Whether a history that broke in a round of this bug's scenario broke the way another
    exercise is about (track 1's stores only: where there is a cache, a stale read is its own bug)."""
    owners = owners_of(verdict)
    return bug.track != 2 and bool(owners) and bug.slug not in owners


@dataclass(frozen=True)
class Observation:
    """The outcome of observing one bug's scenario on one implementation."""

    bug: Bug
    implementation: str
    figure: Figure  # from the first round that broke, or else from the last round
    rounds: int
    max_rounds: int

    @property
    def detected(self) -> bool:
        return not self.figure.held

    @property
    def message(self) -> str:
        if self.detected:
            where = f"in round {self.rounds} of at most {self.max_rounds}"
            return f"{self.bug.slug}: {self.figure.summary} ({where}, {self.implementation})"
        return f"{self.bug.slug}: held in {plural(self.rounds, 'round')}: {self.figure.summary} ({self.implementation})"


@dataclass(frozen=True)
class Scenario:
    bug: Bug
    run_round: Callable[[NewManager], Figure]
    # The lowest rate at which one round breaks on buggy that we count on (see module docstring).
    round_rate: float
    check_history: bool = True
    # Switches asked for at random lines of the code under test (see fast_switching): for windows
    # so short that how often the scheduler lands in them depends on the machine.
    noise: float = 0.0

    def run(self, new_manager: NewManager) -> Figure:
        """One round; with check_history, its recorded history must be linearizable too."""
        if not self.check_history:
            return self.run_round(new_manager)
        recorder = HistoryRecorder()
        figure = self.run_round(lambda: recorder.wrap(new_manager()))
        if not figure.held:
            return figure
        verdict = recorder.check()
        if verdict.ok or _belongs_elsewhere(verdict, self.bug):
            return figure
        return Figure(False, figure.expected, figure.got,
                      f"the totals held ({figure.summary}), but the recorded history of "
                      f"{verdict.operations} calls is not linearizable: {verdict.reason}",
                      history=verdict.explain())

    @property
    def counted_rate(self) -> float:
        """The rate the bound counts on: the built-in one, or less if this machine measured less."""
        measured = calibration(self.bug.slug)
        return self.round_rate if measured is None else min(self.round_rate, measured.lower)

    @property
    def max_rounds(self) -> int:
        return rounds_for(self.counted_rate)


def rounds_for(rate: float) -> int:
    """Rounds after which a bug that breaks a round at this rate is missed less than MISS_PROBABILITY."""
    if rate >= 1:
        return 1
    if rate <= 0:
        raise ValueError("a scenario that never breaks on buggy bounds nothing")
    return math.ceil(math.log(MISS_PROBABILITY) / math.log(1 - rate))


# -- Calibration: the rates measured on the machine that runs the checks -----------------

# The lower end of a 99% confidence interval is the rate a bound may count on.
CONFIDENCE_Z = 2.576


@dataclass(frozen=True)
class Rate:
    """How often single rounds broke on buggy, and what that justifies."""

    broke: int
    runs: int

    @property
    def observed(self) -> float:
        return self.broke / self.runs

    @property
    def lower(self) -> float:
        return wilson(self.broke, self.runs)[0]

    @property
    def upper(self) -> float:
        return wilson(self.broke, self.runs)[1]


def wilson(broke: int, runs: int, z: float = CONFIDENCE_Z) -> tuple[float, float]:
    """The Wilson score interval of a rate of broke in runs."""
    if runs <= 0:
        return 0.0, 1.0
    p = broke / runs
    centre = (p + z * z / (2 * runs)) / (1 + z * z / runs)
    spread = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / (1 + z * z / runs)
    return max(0.0, centre - spread), min(1.0, centre + spread)


def _calibration_file() -> Path:
    return state_folder() / "rates.json"


def calibration(slug: str) -> Rate | None:
    """The rate measured on this machine with `sessionlab observe BUG --rate N --impl buggy`, if any."""
    try:
        entry = json.loads(_calibration_file().read_text(encoding="utf-8"))[slug]
        if entry.get("python") != platform.python_version():
            return None
        return Rate(int(entry["broke"]), int(entry["runs"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def calibrate(slug: str, rate: Rate) -> None:
    """Keep a rate measured on buggy for later bounds on this machine."""
    path = _calibration_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data[slug] = {"broke": rate.broke, "runs": rate.runs, "python": platform.python_version()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# The probability of a switch before each line of the code under test, in the stress threads of
# a scenario that asks for noise.
NOISE = 0.1


@contextmanager
def fast_switching(interval: float = SWITCH_INTERVAL, noise: float = 0.0) -> Iterator[None]:
    """Make the interpreter hand the GIL between threads far more often, then restore it.

    Threads started inside the block also get noise: before a line of the code under test
    (any file outside the standard library, site-packages and the lab), a thread gives the
    interpreter away with probability `noise`. How often a scheduler switches threads inside a
    short window depends on the machine (a fast CPU leaves the window before the switch
    interval is up); a switch that the code itself asks for does not.
    """
    previous, tracer = sys.getswitchinterval(), threading.gettrace()
    sys.setswitchinterval(interval)
    if noise > 0:
        threading.settrace(_noise_maker(noise))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
        threading.settrace(tracer)


def _noise_maker(probability: float) -> Callable[..., Any]:
    """A trace function (for threading.settrace) that yields at random lines of the code under test."""
    from sessionlab.engines.bounded import matcher

    mine = matcher(None)
    chances = threading.local()  # each thread's own generator: never the global one

    def line(frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and chances.random() < probability:
            time.sleep(0)  # gives up the interpreter: another thread runs
        return line

    def call(frame: Any, event: str, arg: Any) -> Any:
        if not mine(frame.f_code.co_filename):
            return None
        if not hasattr(chances, "random"):
            chances.random = random.Random(threading.get_ident()).random
        return line

    return call


# A round whose threads have not all finished after this long is a hang, not a slow round.
ROUND_DEADLINE = 10.0


def run_threads(count: int, worker: Callable[[int], Any], *, barriers: Sequence[threading.Barrier] = (),
                deadline: float = ROUND_DEADLINE) -> None:
    """Run worker(0) ... worker(count - 1) on their own threads; re-raise the first error.

    A worker that fails breaks the barriers its siblings wait at, so they stop too
    instead of waiting for it forever. Threads are daemonic and joined against one
    deadline: a round that deadlocks raises Hang, naming where each thread waits.
    """
    from sessionlab.engines.bounded import join_all

    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            worker(index)
        except threading.BrokenBarrierError:
            if not errors:
                errors.append(RuntimeError("a barrier was broken"))
        except BaseException as exc:  # handed to the caller below
            errors.insert(0, exc)
            for barrier in barriers:
                barrier.abort()

    threads = [threading.Thread(target=run, args=(i,), name=f"worker-{i}", daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    try:
        join_all(threads, deadline, label=f"a stress round of {count} threads")
    except BaseException:
        for barrier in barriers:
            barrier.abort()
        raise
    if errors:
        raise errors[0]


def observe(
    scenario: Scenario,
    new_manager: NewManager,
    *,
    implementation: str = "",
    max_rounds: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Observation:
    """Run a bug's scenario until a round breaks or max_rounds rounds have held."""
    limit = scenario.max_rounds if max_rounds is None else max_rounds
    with fast_switching(noise=scenario.noise):
        for round_number in range(1, limit + 1):
            figure = scenario.run(new_manager)
            if progress is not None:
                progress(round_number, limit)
            if not figure.held:
                break
    return Observation(scenario.bug, implementation, figure, round_number, limit)


def round_rate(scenario: Scenario, new_manager: NewManager, runs: int,
               progress: Callable[[int, int], None] | None = None) -> tuple[int, Figure | None]:
    """Run single rounds; return how many of them broke, and the first figure that did."""
    broke, example = 0, None
    with fast_switching(noise=scenario.noise):
        for run in range(1, runs + 1):
            figure = scenario.run(new_manager)
            if not figure.held:
                broke += 1
                example = example or figure
            if progress is not None:
                progress(run, runs)
    return broke, example


def record_mixed_run(new_manager: NewManager, threads: int = 4, calls_each: int = 50, sessions: int = 3,
                     seed: int = 0) -> HistoryRecorder:
    """Record threads x calls_each increments, updates, reads and (rare) logouts over a few sessions."""
    recorder = HistoryRecorder()
    with recorder.wrap(new_manager()) as manager:
        ids = [manager.create_session(f"u-{n}", f"user {n}") for n in range(sessions)]
        barrier = threading.Barrier(threads)

        def worker(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            barrier.wait()
            for n in range(calls_each):
                session_id = rng.choice(ids)
                roll = rng.random()
                try:
                    if roll < 0.4:
                        manager.increment_access(session_id)
                    elif roll < 0.7:
                        manager.update_session(session_id, f"key-{rng.randrange(4)}", n)
                    elif roll < 0.97:
                        manager.get_session(session_id)
                    else:
                        manager.delete_session(session_id)
                except SessionNotFound:
                    pass  # logged out by another thread: part of the history too

        with fast_switching():
            run_threads(threads, worker)
    return recorder


