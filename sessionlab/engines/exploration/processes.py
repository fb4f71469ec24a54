"""Workers that are real processes, scheduled by the lab at statement boundaries.

Each worker is an OS process of its own (forked, so the implementation is
already loaded), with its own manager and its own connection to the shared
file. The lab follows every statement the worker's connections run: SQLite's
trace callback, called as each statement starts, tells the lab which statement
comes next and then blocks until the lab lets that process go on. So at every
statement boundary the lab chooses which process runs next, and a process
that waits for another (a lock file, SQLite's write lock, a retry with backoff)
waits for real while the other runs.

The lab knows one kind of waiting without waiting: a statement that needs
SQLite's write lock (BEGIN IMMEDIATE, or a write outside a write transaction)
cannot start while another connection holds it, so that process is not offered
a turn until the holder commits or rolls back. Any other wait shows as a
process that was let go and did not reach its next statement within a bound
derived from the measured length of a step; the lab then offers the turn to
another process.

The search runs every schedule with at most ``preemptions`` switches away from a
process that could have gone on (switches forced by a wait are free), up to a
budget of executions, each on a fresh file. An execution is replayable from its
schedule. Timing can make a wait show later than the lab expected; such an
execution is still a real one, and is counted as one that left its schedule.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sessionlab.engines.bounded import Hang
from sessionlab.engines.exploration.search import Inconclusive
from sessionlab.engines.exploration.statements import Raised, connection_of, interleaving
from sessionlab.engines.exploration.worker_process import WorkerProcess, named
from sessionlab.figure import Figure

__all__ = ["Execution", "ProcessExploration", "ProcessScenario", "Raised", "connection_of", "explore",
           "interleaving"]

# How long a process may take to reach its next statement before the lab counts it as
# waiting for something: this many times the longest step measured in the first execution,
# and never less than MIN_STEP_SECONDS.
STEP_FACTOR = 30
MIN_STEP_SECONDS = 0.05
MAX_STEP_SECONDS = 0.5
# With a process waiting, how long the lab gives it to go on after each step of the others.
SETTLE_SECONDS = 0.02
# No process may wait longer than this for another; past it, the execution has hung.
HANG_SECONDS = 5.0
# How long a process may take to open its manager, or to read and close after the calls.
OPEN_SECONDS = 10.0
MAX_EXECUTIONS = 400
SEARCH_SECONDS = 20.0



@dataclass(frozen=True)
class ProcessScenario:
    """Some calls, each in a process of its own, on one file that setup prepares afresh.

    setup runs in the lab's process before each execution and returns what every
    process is handed (the session ids, say). In each process, open_manager opens its
    own manager; warm, if given, runs before the calls (a read that fills its cache);
    observe, after every process's call has returned, one process after another (what
    each one's manager now answers). None of these is scheduled: only the calls are.
    """

    labels: tuple[str, ...]
    setup: Callable[[], Any]
    open_manager: Callable[[Any], Any]
    calls: tuple[Callable[[Any, Any], Any], ...]
    check: Callable[[Execution], Figure]
    warm: Callable[[Any, Any], Any] | None = None
    observe: Callable[[Any, Any], Any] | None = None
    teardown: Callable[[Any], None] | None = None
    files: frozenset[str] = frozenset()  # the implementation's files, for the lines a wait names


@dataclass
class Execution:
    """One execution: the statements in the order they ran, and what each process's call gave."""

    context: Any = None
    statements: list[tuple[int, str]] = field(default_factory=list)  # (process, sql)
    returned: dict[int, Any] = field(default_factory=dict)  # a value, or Raised
    observed: dict[int, Any] = field(default_factory=dict)
    schedule: list[int] = field(default_factory=list)  # who was let go at each decision
    waited: list[int] = field(default_factory=list)  # processes seen waiting, in order
    left_schedule: bool = False

    def __post_init__(self) -> None:
        self.decisions: list[tuple[tuple[int, ...], int, int | None]] = []  # (could go, chosen, last)


@dataclass(frozen=True)
class ProcessExploration:
    """What a search over processes found: the first execution that broke, or that all held."""

    figure: Figure
    explored: int
    complete: bool  # every schedule within the bound was run
    preemptions: int
    processes: int
    statements: int  # the most statements one execution ran
    left_schedule: int  # executions whose waits showed later than expected
    seconds: float
    execution: Execution | None = None  # the one that broke

    @property
    def held(self) -> bool:
        return self.figure.held

    def scope(self) -> str:
        extent = "every schedule" if self.complete else f"the first {self.explored} schedules"
        left = f"; {self.left_schedule} of them ran another schedule than planned" if self.left_schedule else ""
        return (f"{extent} of {self.processes} processes with up to {self.preemptions} preemptions at statement "
                f"boundaries ({self.explored} executions, up to {self.statements} statements each{left})")


# -- One execution -------------------------------------------------------------------------


class _Run:
    """One execution of a scenario, following a planned schedule as far as it can."""

    def __init__(self, scenario: ProcessScenario, plan: list[int], step_seconds: float):
        self.scenario, self.plan, self.step_seconds = scenario, plan, step_seconds
        self.execution = Execution()
        self.longest_step = 0.0

    def run(self) -> Execution:
        scenario, execution = self.scenario, self.execution
        execution.context = scenario.setup()
        mp = multiprocessing.get_context("fork")
        workers = [WorkerProcess(i, scenario, execution.context, mp) for i in range(len(scenario.calls))]
        try:
            for worker in workers:
                self._opened(worker, worker.receive(OPEN_SECONDS))
            current: int | None = None
            while any(w.state != "done" for w in workers):
                ready = [w for w in workers if w.state == "paused"]
                able = [w.index for w in ready if not (w.needs_write_lock() and self._held_by_other(w, workers))]
                if not able and ready and not any(w.state in ("running", "waiting") for w in workers):
                    able = [w.index for w in ready]  # the lab's model of the lock is wrong here: let them try
                if not able:
                    self._await_any(workers, HANG_SECONDS, hang=True)
                    continue
                chosen = self._choose(able, current)
                execution.decisions.append((tuple(able), chosen, current))
                execution.schedule.append(chosen)
                current = chosen
                self._step(workers[chosen], workers)
            for worker in workers:
                worker.pipe.send("observe")
                reply = worker.receive(OPEN_SECONDS)
                if reply is None:
                    raise Hang(OPEN_SECONDS, f"process {worker.index + 1} reading after the calls",
                               named(worker, worker.where()))
                execution.observed[worker.index] = reply[1]
        finally:
            for worker in workers:
                worker.stop()
        return execution

    def _opened(self, worker: WorkerProcess, reply: Any) -> None:
        if reply is None:
            raise Hang(OPEN_SECONDS, f"process {worker.index + 1} opening its manager", named(worker, worker.where()))
        if reply[0] == "failed":
            raise reply[1].as_error()
        worker.state = "paused"
        worker.next = None  # paused before its call starts

    def _choose(self, able: list[int], current: int | None) -> int:
        step = len(self.execution.schedule)
        if step < len(self.plan):
            if self.plan[step] in able:
                return self.plan[step]
            self.execution.left_schedule = True
        return current if current in able else able[0]

    def _held_by_other(self, worker: WorkerProcess, workers: list[WorkerProcess]) -> bool:
        return any(other.holding for other in workers if other is not worker)

    def _step(self, worker: WorkerProcess, workers: list[WorkerProcess]) -> None:
        """Let worker go on to its next statement (or the end of its call)."""
        started = time.perf_counter()
        worker.pipe.send("go")
        if worker.next is not None:
            self.execution.statements.append((worker.index, worker.next[1]))
        worker.ran(worker.next)
        worker.state, worker.next = "running", None
        reply = worker.receive(self.step_seconds)
        if reply is None:
            worker.state = "waiting"
            self.execution.waited.append(worker.index)
        else:
            self.longest_step = max(self.longest_step, time.perf_counter() - started)
            self._note(worker, reply)
        if any(w.state == "waiting" for w in workers):
            while self._await_any(workers, SETTLE_SECONDS):
                pass

    def _await_any(self, workers: list[WorkerProcess], seconds: float, hang: bool = False) -> bool:
        """Wait for a running or waiting process to reach its next statement; False if none did."""
        moving = [w for w in workers if w.state in ("running", "waiting")]
        if not moving:
            return False
        ready = multiprocessing.connection.wait([w.pipe for w in moving], seconds)
        if not ready:
            if hang:
                waits = tuple(wait for w in moving for wait in named(w, w.where()))
                raise Hang(seconds, f"{len(moving)} of {len(workers)} processes", waits,
                           deadlock=len(moving) > 1 and all(w.state == "waiting" for w in moving))
            return False
        for worker in moving:
            if worker.pipe in ready:
                self._note(worker, worker.pipe.recv())
        return True

    def _note(self, worker: WorkerProcess, reply: Any) -> None:
        if reply[0] == "at":
            worker.state, worker.next = "paused", (reply[1], reply[2])
        elif reply[0] == "done":
            worker.state = "done"
            self.execution.returned[worker.index] = reply[1]


# -- The search ----------------------------------------------------------------------------


def _preemptions(decisions: list[tuple[tuple[int, ...], int, int | None]]) -> int:
    return sum(1 for able, chosen, last in decisions if last is not None and last in able and chosen != last)


def explore(scenario: ProcessScenario, *, preemptions: int = 2, max_executions: int = MAX_EXECUTIONS,
            seconds: float = SEARCH_SECONDS) -> ProcessExploration:
    """Run the scenario under every schedule with at most `preemptions` preemptions; check each.

    Stops at the first execution whose check breaks. Raises Hang if an execution hangs,
    naming where each process waits, and Inconclusive if no execution could run at all.
    """
    started = time.perf_counter()
    step_seconds = MAX_STEP_SECONDS
    plans: list[tuple[list[int], int]] = [([], 0)]  # (planned schedule, where its own choices start)
    explored = left = longest = 0
    figure = Figure(True, "holds", "holds", "no execution ran")
    while plans:
        if explored >= max_executions or time.perf_counter() - started > seconds:
            break
        plan, fixed_up_to = plans.pop()
        run = _Run(scenario, plan, step_seconds)
        try:
            execution = run.run()
            figure = scenario.check(execution)
        finally:
            if scenario.teardown is not None and run.execution.context is not None:
                scenario.teardown(run.execution.context)
        if explored == 0:  # the first execution measures how long a step takes
            step_seconds = min(MAX_STEP_SECONDS, max(MIN_STEP_SECONDS, STEP_FACTOR * run.longest_step))
        explored += 1
        left += execution.left_schedule
        longest = max(longest, len(execution.statements))
        if not figure.held:
            return ProcessExploration(figure, explored, False, preemptions, len(scenario.calls), longest, left,
                                      time.perf_counter() - started, execution)
        decisions = execution.decisions
        for step in range(len(decisions) - 1, fixed_up_to - 1, -1):
            able, chosen, _ = decisions[step]
            for other in able:
                if other == chosen:
                    continue
                prefix = [*execution.schedule[:step], other]
                trial = [*decisions[:step], (able, other, decisions[step][2])]
                if _preemptions(trial) <= preemptions:
                    plans.append((prefix, step + 1))
    if explored == 0:
        raise Inconclusive("no execution of the processes could run within the time allowed")
    return ProcessExploration(figure, explored, not plans, preemptions, len(scenario.calls), longest, left,
                              time.perf_counter() - started)
