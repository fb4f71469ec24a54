"""Bug 9, lock-order deadlock: a read takes the cache lock then the database lock; writes the reverse."""

from __future__ import annotations

import threading

from sessionlab.bug import DEADLOCK, Bug
from sessionlab.bugs.persistent import MANAGER, QUIET, finish, new_state
from sessionlab.engines.exploration.threads import RaceScenario, State, Worker
from sessionlab.engines.stress import NewManager, Scenario, run_threads
from sessionlab.figure import Figure

BUG = Bug(
    number=9,
    slug="lock-order-deadlock",
    title="Lock-order deadlock",
    bug_class=DEADLOCK,
    track=2,
    mistake=(
        "get_session takes the cache lock and then the database lock, while every write takes the "
        "database lock and then the cache lock"
    ),
    symptom="under load the server stops answering: every request waits, CPU at zero, until it is restarted",
    scenario="2 threads read and count one session 500 times each; every call must return",
    functions=("PersistentSessionManager.get_session",),
    module="persistent.py",
    manager=MANAGER,
)


# -- Stress: page views that read and count the same session ------------------------------

THREADS = 2
CALLS_EACH = 500
# A round takes about 30 ms; one still running after this long has hung.
DEADLINE = 2.0


def stress_round(new_manager: NewManager) -> Figure:
    manager = new_manager(sweep_interval=QUIET)
    session_id = manager.create_session("user-1", "Ada")
    barrier = threading.Barrier(THREADS)

    def worker(index: int) -> None:
        barrier.wait()
        for _ in range(CALLS_EACH):
            if index % 2:
                manager.increment_access(session_id)
            else:
                manager.get_session(session_id)

    # A deadlock raises Hang, saying where each thread waits. The manager is left as it is
    # then: closing it would wait for the locks its deadlocked threads hold.
    run_threads(THREADS, worker, barriers=[barrier], deadline=DEADLINE)
    with manager:
        count = manager.get_session(session_id).access_count
    expected = CALLS_EACH * (THREADS // 2)
    return Figure(count == expected, str(expected), str(count),
                  f"{THREADS * CALLS_EACH} reads and counts returned; counted {count} of {expected}")


STRESS = Scenario(BUG, stress_round, round_rate=0.5, check_history=False)


# -- Race: a read and a count of one session ----------------------------------------------


def _read(state: State) -> None:
    state.seen["read"] = state.manager.get_session(state.session_id).access_count


def _count(state: State) -> None:
    state.seen["count"] = state.manager.increment_access(state.session_id)


def _both_returned(state: State) -> Figure:
    try:
        count = state.manager.get_session(state.session_id).access_count
    finally:
        finish(state)
    read = state.seen.get("read")
    if count == 1 and read in (0, 1):
        return Figure(True, "both return", "both return",
                      f"the read saw {read} accesses, the count made it 1; neither waited for the other forever")
    return Figure(False, "1 access", f"{count} accesses",
                  f"the read and the count returned, but the session counts {count} accesses (the read saw {read})")


RACE = RaceScenario(
    BUG,
    "one request reads the session while another counts an access to it",
    (Worker("get_session(s)", _read), Worker("increment_access(s)", _count)),
    _both_returned,
    prepare=lambda implementation: new_state(implementation, cold=True),  # the read misses the cache
)

CHECKS = ()
