"""The judge: is a bug fixed yet? Every check of one bug, run against one implementation.

Checks judge behaviour, not text: a correct fix that differs from the reference
passes, and a fix that only narrows the window fails. The contract runs first
(every operation, one call at a time, bad input included), then the bug's own
deterministic checks (exploration of every interleaving of its scenario, its
single-thread checks), then short concurrent scenarios of every pair of
operations, and stress last, since a stress round can only confirm what the
others already showed.

Every check is bounded in time. A verdict is one of:

FIXED        every check held
STILL BUGGY  a check broke; the figure and the interleaving say how
ERROR        the code did not import, or raised where the contract allows no error
HANGS        a check did not finish within its bound; where each thread waits
UNPROVEN     every check that ran held, but one that could decide was unavailable here
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from sessionlab import catalogue
from sessionlab.api import SessionError
from sessionlab.bug import DEADLOCK, Bug
from sessionlab.catalogue import Home
from sessionlab.engines import exploration, stress
from sessionlab.engines.bounded import Hang, run_bounded
from sessionlab.engines.exploration import Inconclusive, threads
from sessionlab.engines.exploration.threads import RaceScenario
from sessionlab.engines.stress import Scenario
from sessionlab.figure import Figure
from sessionlab.implementations import CodeError, Implementation
from sessionlab.judge import contract, graft, pairs, pairs_stress, persistent_pairs
from sessionlab.servers import redis_server

DETERMINISTIC, STRESS = "deterministic", "stress"

FIXED, STILL_BUGGY, ERROR, HANGS, UNPROVEN = "FIXED", "STILL BUGGY", "ERROR", "HANGS", "UNPROVEN"

# No check may run longer than this; one that does has hung. Single calls get less.
CHECK_SECONDS = 10.0
# A search bounds itself (a run that stalls is a hang, a search still running interleavings when
# its time is up is cut short: search.SEARCH_MOST_SECONDS); this bound is the last resort.
RACE_SECONDS = 60.0
# The contract takes about 10 ms in memory; on SQLite, with the persistent contract, 0.2-0.4 s,
# where one round of calls (a manager opened, a login, a read, an update, a count and a logout)
# takes 7-10 ms. Its bound is derived from the implementation's own pace: PACED_ROUNDS times one
# measured round, and never less than CONTRACT_SECONDS (about 100 times the contract in memory,
# 7-10 times on SQLite), so a few milliseconds of sleep in a call, or a loaded machine, never turn
# a verdict into HANGS.
CONTRACT_SECONDS = 1.0
PACED_ROUNDS = 300
CONTRACT_MOST = 30.0  # however slow the calls: the contract's bound ends there
# Every pair of operations is a search per pair; through a framework's traced code each takes
# up to a few seconds (each pair's own search is bounded by exploration.EXPLORE_SECONDS).
PAIRS_SECONDS = 60.0
STRESS_SECONDS = 120.0

HELD, BROKE, SKIPPED, RAISED, HUNG = "held", "broke", "skipped", "error", "hang"


@dataclass(frozen=True)
class Check:
    bug: Bug
    name: str
    kind: str  # DETERMINISTIC or STRESS
    run: Callable[[Implementation], Figure]
    needs_frontrun: bool = False
    decides: bool = True  # without it (skipped), the verdict cannot be FIXED, only UNPROVEN
    seconds: float = CHECK_SECONDS  # its bound: a check still running after this long has hung
    # Its calls run beside one another: a session error one of them raises, where the contract's
    # one call at a time returned, is a wrong result of the concurrency, not a crash.
    concurrent: bool = True
    # Whether it has anything to find in an implementation (None: always); one that has not is not run.
    applies: Callable[[Implementation], bool] | None = None


@dataclass(frozen=True)
class Result:
    check: Check
    outcome: str  # HELD, BROKE, SKIPPED, RAISED or HUNG
    message: str  # one line: the figure, or why it was skipped, or what was raised
    seconds: float
    detail: str = ""  # more lines: the interleaving, the history, where threads wait
    deadlock: bool = False  # it hung on a cycle of locks (not merely out of time)

    @property
    def held(self) -> bool | None:
        return None if self.outcome == SKIPPED else self.outcome == HELD

    def as_json(self) -> dict:
        return {"check": self.check.name, "kind": self.check.kind, "seconds": round(self.seconds, 3),
                "outcome": "broke" if self.outcome == BROKE else self.outcome,
                "message": self.message, "detail": self.detail}


@dataclass(frozen=True)
class Verdict:
    bug: Bug
    implementation: str
    results: tuple[Result, ...]
    error: str = ""  # the code could not be loaded: where and why

    @property
    def status(self) -> str:
        if self.error or any(result.outcome == RAISED for result in self.results):
            return ERROR
        hung = [result for result in self.results if result.outcome == HUNG]
        if hung and self.bug.bug_class == DEADLOCK and all(result.deadlock for result in hung):
            return STILL_BUGGY  # the deadlock this exercise is about: still there
        if hung:
            return HANGS
        if any(result.outcome == BROKE for result in self.results):
            return STILL_BUGGY
        ran = [result for result in self.results if result.outcome == HELD]
        undecided = [r for r in self.results if r.outcome == SKIPPED and r.check.decides]
        if not ran or undecided:
            return UNPROVEN
        return FIXED

    @property
    def fixed(self) -> bool:
        return self.status == FIXED

    @property
    def evidence(self) -> str:
        """The message that decided the verdict."""
        if self.error:
            return self.error
        for outcome in (RAISED, HUNG, BROKE):
            for result in self.results:
                if result.outcome == outcome:
                    return result.message
        skipped = [r for r in self.results if r.outcome == SKIPPED and r.check.decides]
        if skipped and self.status == UNPROVEN:
            return f"{self.bug.slug}: not proven: {skipped[0].message}"
        return self.results[-1].message if self.results else f"{self.bug.slug}: no check ran"

    def as_json(self) -> dict:
        return {"bug": self.bug.slug, "number": self.bug.number, "implementation": self.implementation,
                "status": self.status, "fixed": self.fixed, "evidence": self.evidence,
                "checks": [result.as_json() for result in self.results]}


# -- The checks of one bug ---------------------------------------------------------------


def _race_check(scenario: RaceScenario) -> Callable[[Implementation], Figure]:
    def run(implementation: Implementation) -> Figure:
        report = threads.explore(scenario, implementation)
        held = report.held and report.complete
        return Figure(held, "holds", "holds" if held else "broke", report.message.split(": ", 1)[-1],
                      history="" if report.held else report.text())

    return run


def _stress_check(scenario: Scenario) -> Callable[[Implementation], Figure]:
    def run(implementation: Implementation) -> Figure:
        observation = stress.observe(scenario, implementation.factory(scenario.bug),
                                     implementation=implementation.name)
        figure = observation.figure
        return Figure(figure.held, figure.expected, figure.got, observation.message.split(": ", 1)[-1],
                      history=figure.history)

    return run


def checks_for(home: Home) -> tuple[Check, ...]:
    """A bug's checks, in the order they run: its own deterministic ones, the shared ones, stress."""
    bug = home.bug
    # The contract comes first: one call at a time, it shows a fix that deadlocks a thread on
    # its own lock within seconds, before any scenario builds on those calls.
    found = [Check(bug, "the contract, one call at a time", DETERMINISTIC,
                   lambda implementation: contract.run_contract(implementation, bug.manager),
                   seconds=CONTRACT_SECONDS, concurrent=False)]
    if home.race is not None:
        found.append(Check(bug, "every interleaving (frontrun)", DETERMINISTIC, _race_check(home.race),
                           needs_frontrun=True, seconds=RACE_SECONDS))
    for name, function in home.checks:
        found.append(Check(bug, name, DETERMINISTIC, function))
    if pairs.operations_of(bug):
        # Without frontrun a race bug is unproven; the others still have checks that decide.
        found.append(Check(bug, "every pair of operations (frontrun)", DETERMINISTIC,
                           lambda implementation: pairs.search(bug, implementation), needs_frontrun=True,
                           decides=home.race is not None, seconds=PAIRS_SECONDS))
    if persistent_pairs.operations_of(bug):
        found.append(Check(bug, "every pair of operations, in threads and in processes", DETERMINISTIC,
                           lambda implementation: persistent_pairs.search(bug, implementation), needs_frontrun=True,
                           seconds=PAIRS_SECONDS))
    if home.stress is not None:
        # Each round has its own deadline (stress.ROUND_DEADLINE); the rounds together get more.
        found.append(Check(bug, "stress on real threads", STRESS, _stress_check(home.stress), decides=False,
                           seconds=STRESS_SECONDS))
    if pairs.operations_of(bug):  # where the search of the pairs was bounded (pairs_stress says why)
        found.append(Check(bug, "every pair of operations on real threads", STRESS,
                           lambda implementation: pairs_stress.stress(bug, implementation), decides=False,
                           seconds=STRESS_SECONDS, applies=pairs_stress.applies))
    return tuple(found)


def _pace(bug: Bug, implementation: Implementation) -> float:
    """Seconds one round of calls takes: a login, a read, an update, a count and a logout."""
    options = {"sweep_interval": 3600.0} if bug.track == 2 else {}
    started = time.perf_counter()
    manager = implementation.new(bug.manager, **options)
    try:
        session_id = manager.create_session("user-1", "Ada")
        manager.get_session(session_id)
        manager.update_session(session_id, "cart", "1 book")
        manager.increment_access(session_id)
        manager.delete_session(session_id)
    finally:
        manager.close()
    return time.perf_counter() - started


def _raise(error: Exception, implementation: Implementation) -> Figure:
    raise error


def paced(check: Check, implementation: Implementation) -> Check:
    """The contract's check with its bound derived from the implementation's measured pace."""
    try:
        pace = run_bounded(lambda: _pace(check.bug, implementation), seconds=CONTRACT_SECONDS,
                           label=f"{check.bug.slug}: one round of calls", files=implementation.files, cycles=True)
    except Hang as hang:  # the contract's own first calls hang: that is its result, found already
        stuck = Hang(hang.seconds, f"{check.bug.slug}: {check.name}", hang.waits, hang.deadlock)
        return replace(check, run=partial(_raise, stuck))
    except Exception:  # it raises: the contract, under its plain bound, says where
        return check
    return replace(check, seconds=max(CONTRACT_SECONDS, min(CONTRACT_MOST, PACED_ROUNDS * pace)))


def run_check(check: Check, implementation: Implementation) -> Result:
    """One check under its bound: its result, with a hang or a raise as a verdict, never an escape."""
    started = time.perf_counter()
    slug = check.bug.slug
    try:
        figure = run_bounded(lambda: check.run(implementation), seconds=check.seconds,
                             label=f"{slug}: {check.name}", files=implementation.files,
                             cycles=not check.concurrent)  # one call at a time: no scheduler, no inner bound
    except Hang as hang:
        return Result(check, HUNG, f"{slug}: {hang}", time.perf_counter() - started, hang.text(),
                      deadlock=hang.deadlock)
    except Inconclusive as why:  # the search stalled where real threads did not: undecided
        return Result(check, SKIPPED, str(why), time.perf_counter() - started)
    except SessionError as exc:
        error = CodeError.of(exc, implementation.files)
        if not (check.concurrent and error.where):
            return _raised(check, exc, implementation, started)
        # The type and the line, not the message: a session error's text may hold the id, a secret.
        shown = CodeError(type(exc).__name__, error.file, error.line, error.function, error.source)
        return Result(check, BROKE, f"{slug}: your code raised {shown.message} ({shown.where}) while "
                      f"another call ran beside it; one call at a time, the contract held: under concurrency "
                      f"a request that should succeed fails", time.perf_counter() - started, shown.text())
    except Exception as exc:  # the learner's code raised where no check expects it
        return _raised(check, exc, implementation, started)
    seconds = time.perf_counter() - started
    outcome = HELD if figure.held else BROKE
    return Result(check, outcome, f"{slug}: {figure.summary}", seconds, figure.history)


def _raised(check: Check, exc: Exception, implementation: Implementation, started: float) -> Result:
    """The learner's code raised where no check expects it: where, or what the lab could not use."""
    slug, error = check.bug.slug, CodeError.of(exc, implementation.files)
    if error.where:
        return Result(check, RAISED, f"{slug}: your code raised {error}", time.perf_counter() - started, error.text())
    # Raised in the lab's own lines: most often on a value the code returned that the
    # contract does not allow (None for a Session, a str for a count).
    lab = CodeError.of(exc)
    return Result(check, RAISED, f"{slug}: the check could not use what your code returned: {lab}",
                  time.perf_counter() - started, lab.text())


def judge(bug: Bug, implementation: Implementation, *, stress_too: bool = True,
          progress: Callable[[Check], None] | None = None) -> Verdict:
    """Run a bug's checks until one breaks; the bug is fixed when all of them hold.

    The bug's home is found here, once; each check is handed what it runs. With
    stress_too=False only the deterministic checks run: a quick status.
    """
    results: list[Result] = []
    available, why = exploration.frontrun_available()
    # The persistent track's bugs share one class, and are exercises of their own: while one is
    # judged, the others the learner has not touched are taken as the reference solves them (see
    # graft). Track 1's pairs say whose a failure is instead (pairs.OWNERS).
    if bug.track == 2:
        implementation, _ = graft.others_solved(bug, implementation)
    # Track 4 runs on a real Redis, started here, outside every check's bound; without one every check
    # is skipped, saying how to install it.
    unavailable = redis_server.ready() if bug.track == 4 else ""
    for check in checks_for(catalogue.home(bug)):
        if unavailable:
            results.append(Result(check, SKIPPED, unavailable, 0.0))
            continue
        if (check.kind == STRESS and not stress_too) or (check.applies and not check.applies(implementation)):
            continue
        if check.needs_frontrun and not available:
            results.append(Result(check, SKIPPED, why, 0.0))
            continue
        if progress is not None:
            progress(check)
        if check.seconds == CONTRACT_SECONDS:
            check = paced(check, implementation)
        result = run_check(check, implementation)
        results.append(result)
        if result.outcome not in (HELD, SKIPPED):
            break
    return Verdict(bug, implementation.name, tuple(results))


def unloadable(bug: Bug, name: str, error: Exception) -> Verdict:
    """The verdict for code that could not even be loaded."""
    return Verdict(bug, name, (), error=f"{bug.slug}: {error}")
