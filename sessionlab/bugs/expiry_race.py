"""Bug 8, expiry race: the sweeper selects the idle sessions, then expires them, in two steps."""

from __future__ import annotations

import logging
import threading

from sessionlab.api import SessionExpired
from sessionlab.bug import ATOMICITY_VIOLATION, Bug
from sessionlab.bugs.persistent import MANAGER, QUIET, Clock, finish, logging_to_a_file, new_state
from sessionlab.engines.exploration.threads import RaceScenario, State, Worker
from sessionlab.engines.stress import NewManager, Scenario, run_threads
from sessionlab.figure import Figure

BUG = Bug(
    number=8,
    slug="expiry-race",
    title="Expiry race",
    bug_class=ATOMICITY_VIOLATION,
    track=2,
    mistake=(
        "expire_sessions selects the sessions idle past their time to live in one critical section "
        "and marks them expired in another, by id, without looking at them again"
    ),
    symptom="a user who is active right now is logged out: their request is counted, then the session expires",
    scenario=(
        "50 times, 4 sessions idle past their time to live: one thread sweeps while another touches "
        "them, logging to a file; no session a touch succeeded on may end expired"
    ),
    functions=("PersistentSessionManager.expire_sessions",),
    module="persistent.py",
    manager=MANAGER,
)

TTL = 60.0


# -- Stress: a sweep while users come back, step after step ------------------------------

STEPS = 50
SESSIONS_EACH_STEP = 4


def stress_round(new_manager: NewManager) -> Figure:
    clock = Clock()
    lost: list[tuple[int, int]] = []  # (step, sessions touched and then expired)
    touched_in_all = 0
    with logging_to_a_file(logging.INFO), new_manager(ttl=TTL, sweep_interval=QUIET, clock=clock) as manager:
        barrier = threading.Barrier(3)
        batch: list[str] = []
        touched: list[str] = []

        def worker(index: int) -> None:
            nonlocal touched_in_all
            for step in range(STEPS):
                if index == 2:  # the scenario: idle sessions for this step, then the outcome of the last
                    batch[:] = [manager.create_session(f"user-{step}-{n}", "visitor")
                                for n in range(SESSIONS_EACH_STEP)]
                    touched.clear()
                    clock.now += TTL + 10  # the batch is idle past its time to live
                barrier.wait()
                if index == 0:
                    manager.expire_sessions()
                elif index == 1:
                    for session_id in batch:
                        try:
                            manager.increment_access(session_id)
                        except SessionExpired:
                            continue
                        touched.append(session_id)
                barrier.wait()
                if index == 2:
                    touched_in_all += len(touched)
                    expired = sum(manager.get_status(session_id) == "expired" for session_id in touched)
                    if expired:
                        lost.append((step, expired))

        run_threads(3, worker, barriers=[barrier])
    if not lost:
        return Figure(True, "0 expired after a touch", "0",
                      f"{STEPS} sweeps while users came back: {touched_in_all} sessions were touched before the "
                      f"sweep reached them, and none of those expired")
    total = sum(expired for _, expired in lost)
    step, expired = lost[0]
    return Figure(False, "0 expired after a touch", f"{total} expired",
                  f"in {len(lost)} of {STEPS} sweeps, a session a request had just touched was expired anyway: "
                  f"{total} active users logged out (sweep {step + 1}: {expired} of the "
                  f"{SESSIONS_EACH_STEP} sessions it found idle)")


STRESS = Scenario(BUG, stress_round, round_rate=0.7, check_history=False)


# -- Race: the sweeper and a returning user -----------------------------------------------


def _prepare(implementation) -> State:
    return new_state(implementation, ttl=TTL, idle=TTL + 10)  # idle past its ttl: it may expire


def _sweep(state: State) -> None:
    state.seen["expired"] = state.manager.expire_sessions()


def _touch(state: State) -> None:
    try:
        state.seen["count"] = state.manager.increment_access(state.session_id)
    except SessionExpired:
        state.seen["count"] = None


def _touched_stays(state: State) -> Figure:
    try:
        status = state.manager.get_status(state.session_id)
    finally:
        finish(state)
    count = state.seen.get("count")
    if count is None:
        return Figure(True, "expired, touch refused", status,
                      "the sweep came first: the session expired and the request was told so")
    if status != "expired":
        return Figure(True, "touched, not expired", status,
                      f"the request came first: it counted access {count} and the session stays {status}")
    return Figure(False, "touched, not expired", "expired",
                  f"the request counted access {count} (the session was live), and then the sweep expired it "
                  f"anyway: the sweep decided on what it had selected before the touch")


RACE = RaceScenario(
    BUG,
    "the sweeper runs while the user of an idle session comes back",
    (Worker("expire_sessions()", _sweep), Worker("increment_access(s)", _touch)),
    _touched_stays,
    prepare=_prepare,
    why=("the sweep selected the idle session, the request touched it in between, and the sweep then expired "
         "the id it had selected without looking at the session again"),
)

CHECKS = ()
