"""Race scenarios: a bug's threads, explored under every interleaving.

Each bug that is a race has a scenario in its module under ``sessionlab/bugs/``:
a setup (a fresh manager and a session), two or three small workers, and a
check of the final state that returns the scenario's figure. ``explore`` runs
it under deterministic exploration (``sessionlab.engines.exploration``) and returns the
lab's report (``sessionlab.reports.race``): the bug, the interleaving step by step
with one column per thread, the figure that broke, and how many interleavings
were explored.

On ``buggy`` the search finds the bad interleaving on every run: it is
deterministic, so the same command finds the same interleaving again. On
``fixed`` it runs to completion (no preemption bound) and every interleaving
holds.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sessionlab.bug import Bug
from sessionlab.engines.exploration.search import MAX_EXECUTIONS, clock_for, explore_workers
from sessionlab.figure import Figure
from sessionlab.implementations import Implementation
from sessionlab.reports.race import RaceReport
from sessionlab.reports.steps import masked


@dataclass
class State:
    """What the workers of one execution share: a manager, a session, what they saw."""

    manager: Any
    session_id: str
    seen: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Worker:
    label: str  # what this thread does, as the report's column heading
    run: Callable[[State], None]


# The clock the persistent track's searches run on (explore_workers says why).
PERSISTENT_CLOCK = "virtual"


@dataclass(frozen=True)
class RaceScenario:
    bug: Bug
    story: str  # one sentence: what the threads do
    workers: tuple[Worker, ...]
    check: Callable[[State], Figure]
    metadata: tuple[tuple[str, str], ...] = ()  # stored in the session before the workers start
    # A setup of its own (a persistent manager, a clock the scenario moves), instead of the default.
    prepare: Callable[[Implementation], State] | None = None
    # What went wrong between the threads, when the accesses cannot say it (SQL runs in C).
    why: str = ""
    # What the search saw besides the code it traced (a server's commands), for the HOLDS line.
    seen: str = ""

    def setup(self, implementation: Implementation) -> State:
        if self.prepare is not None:
            return self.prepare(implementation)
        manager = implementation.new_manager(clock=lambda: 1_700_000_000.0)
        session_id = manager.create_session("user-1", "Ada")
        for key, value in self.metadata:
            manager.update_session(session_id, key, value)
        return State(manager, session_id)


def explore(scenario: RaceScenario, implementation: Implementation) -> RaceReport:
    """Explore a race scenario on an implementation; report what was found."""
    figures: list[Figure] = []

    def invariant(state: State) -> bool:
        figure = scenario.check(state)
        if not figure.held:
            figures.append(figure)
        return figure.held

    states: list[State] = []

    def setup() -> State:
        states.append(scenario.setup(implementation))
        return states[-1]

    try:
        found = explore_workers(implementation, setup, [worker.run for worker in scenario.workers], invariant,
                                names=[f"thread {n} ({worker.label})" for n, worker in enumerate(scenario.workers)],
                                clock=clock_for(implementation, PERSISTENT_CLOCK if scenario.bug.track == 2 else "real"),
                                io=scenario.bug.track != 2)
    finally:
        for state in states:  # files a scenario made, even of an execution that never ended
            if "folder" in state.seen:
                shutil.rmtree(state.seen["folder"], ignore_errors=True)
    scope = found.scope.sentence(implementation.name) + (f"; {scenario.seen}" if scenario.seen else "")
    if found.held:
        return RaceReport(scenario.bug, implementation.name, scenario, True, found.explored, found.complete,
                          found.seconds, scope=scope,
                          preemptions=found.preemptions, budget=MAX_EXECUTIONS)
    steps = masked(found.steps, {state.session_id for state in states})
    first_line = found.explanation.splitlines()[0] if found.explanation else "broke"
    conflict = next((line.strip() for line in found.explanation.splitlines()[1:] if line.strip()), "")
    return RaceReport(
        scenario.bug, implementation.name, scenario, False, found.explored, False, found.seconds,
        figure=figures[0] if figures else Figure(False, "?", "?", first_line),
        steps=steps, conflict=conflict, reproduced=found.reproduced,
        schedule=found.schedule, explanation=found.explanation, scope=scope,
        budget=MAX_EXECUTIONS,
    )


