"""Bug 2, lost increments: the count is read under the lock and written back after it."""

from __future__ import annotations

import threading
from collections import Counter

from sessionlab.bug import ATOMICITY_VIOLATION, Bug
from sessionlab.engines.exploration.threads import RaceScenario, State, Worker
from sessionlab.engines.stress import NOISE, NewManager, Scenario, run_threads
from sessionlab.figure import Figure

BUG = Bug(
    number=2,
    slug="lost-increments",
    title="Lost increments",
    bug_class=ATOMICITY_VIOLATION,
    track=1,
    mistake=(
        "increment_access reads the count under the lock, then computes and writes "
        "count + 1 after releasing it"
    ),
    symptom="the access counter falls behind the number of requests served",
    scenario="20 threads x 50 increments of one session, stepping together; the count must reach 1000",
    functions=("SessionManager.increment_access",),
)


# -- Stress: 20 threads count accesses to one session, stepping together ---------------

INCREMENT_THREADS = 20
INCREMENTS_EACH = 50


def stress_round(new_manager: NewManager) -> Figure:
    expected = INCREMENT_THREADS * INCREMENTS_EACH
    returned: list[int] = []
    with new_manager() as manager:
        session_id = manager.create_session("user-1", "reader")
        barrier = threading.Barrier(INCREMENT_THREADS)

        def worker(index: int) -> None:
            counts = []
            for _ in range(INCREMENTS_EACH):
                barrier.wait()
                counts.append(manager.increment_access(session_id))
            returned.extend(counts)

        run_threads(INCREMENT_THREADS, worker, barriers=[barrier])
        counted = manager.get_session(session_id).access_count
    if counted == expected:
        return Figure(True, str(expected), str(counted), f"expected {expected}, counted {counted}")
    repeated = sum(n - 1 for n in Counter(returned).values() if n > 1)
    return Figure(
        False, str(expected), str(counted),
        f"{expected} increments, counted {counted}: {lost_or_extra(expected, counted)}; "
        f"{repeated} increments returned a count another increment had already returned",
    )


def lost_or_extra(expected: int, counted: int) -> str:
    """Say what a wrong count means: increments lost, or counted that never happened."""
    if counted < expected:
        return f"{expected - counted} of {expected} lost"
    return f"{counted - expected} counted that never happened"


STRESS = Scenario(BUG, stress_round, round_rate=0.7, noise=NOISE)


# -- Race: two requests count one access each ------------------------------------------


def _increment(state: State) -> None:
    state.seen.setdefault("returned", []).append(state.manager.increment_access(state.session_id))


def _both_counted(state: State) -> Figure:
    count = state.manager.get_session(state.session_id).access_count
    returned = sorted(state.seen.get("returned", []))
    if count == 2 and returned == [1, 2]:
        return Figure(True, "2", str(count), "2 increments, counted 2; the calls returned 1 and 2")
    if count == 2:
        return Figure(False, "calls return 1 and 2", f"calls return {returned}",
                      f"the count reached 2, but the two calls returned {returned}: each caller "
                      f"must be told the count its own increment made")
    return Figure(False, "2", str(count),
                  f"2 increments, counted {count}: {lost_or_extra(2, count)}; the two calls returned {returned}")


RACE = RaceScenario(
    BUG,
    "two requests each count one access to the same session",
    (Worker("increment_access(s)", _increment), Worker("increment_access(s)", _increment)),
    _both_counted,
)

CHECKS = ()
