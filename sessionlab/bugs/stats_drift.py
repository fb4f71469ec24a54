"""Bug 4, stats drift: logout checks, removes and counts in separate steps; two tabs count twice."""

from __future__ import annotations

import threading

from sessionlab.api import SessionNotFound, health_check
from sessionlab.bug import ATOMICITY_VIOLATION, Bug
from sessionlab.engines.exploration.threads import RaceScenario, State, Worker
from sessionlab.engines.stress import NewManager, Scenario, run_threads
from sessionlab.figure import Figure

BUG = Bug(
    number=4,
    slug="stats-drift",
    title="Stats drift",
    bug_class=ATOMICITY_VIOLATION,
    track=1,
    mistake=(
        "delete_session checks that the session exists in one critical section and removes "
        "it in another, and decrements the active count outside both"
    ),
    symptom="the dashboard's active-session count drifts from the truth; health reports a discrepancy",
    scenario=(
        "4 threads log out the same 500 sessions (a logout clicked in several tabs); "
        "get_stats().active_sessions must equal get_active_count()"
    ),
    functions=("SessionManager.delete_session",),
)


# -- Stress: 4 tabs log out the same 500 sessions ---------------------------------------

LOGOUT_THREADS = 4
LOGOUT_SESSIONS = 500


def stress_round(new_manager: NewManager) -> Figure:
    logouts = [0] * LOGOUT_THREADS
    with new_manager() as manager:
        sessions = [manager.create_session(f"user-{n}", f"user {n}") for n in range(LOGOUT_SESSIONS)]
        barrier = threading.Barrier(LOGOUT_THREADS)

        def worker(index: int) -> None:
            barrier.wait()
            for session_id in sessions:
                try:
                    manager.delete_session(session_id)
                except SessionNotFound:
                    continue  # another tab logged it out first
                logouts[index] += 1

        run_threads(LOGOUT_THREADS, worker, barriers=[barrier])
        health = health_check(manager)
    succeeded = sum(logouts)
    if health.discrepancy == 0 and succeeded == LOGOUT_SESSIONS:
        return Figure(True, "0", "0",
                      f"{LOGOUT_SESSIONS} sessions, {succeeded} logouts; stats and store agree")
    return Figure(
        False, f"{health.active_sessions_actual} active", f"{health.active_sessions_reported} active",
        f"get_stats() reports {health.active_sessions_reported} active sessions, the store holds "
        f"{health.active_sessions_actual} (discrepancy {health.discrepancy:+d}); "
        f"{succeeded} logouts succeeded for {LOGOUT_SESSIONS} sessions",
    )


STRESS = Scenario(BUG, stress_round, round_rate=0.7)


# -- Race: the user clicks logout in two tabs at once -----------------------------------


def _logout(tab: int) -> Worker:
    def logout(state: State) -> None:
        try:
            state.manager.delete_session(state.session_id)
        except SessionNotFound:
            state.seen[f"tab {tab}"] = "SessionNotFound"
        else:
            state.seen[f"tab {tab}"] = "logged out"

    return Worker(f"delete_session(s)  [tab {tab}]", logout)


def _counted_once(state: State) -> Figure:
    stats = state.manager.get_stats()
    actual = state.manager.get_active_count()
    succeeded = sum(1 for outcome in state.seen.values() if outcome == "logged out")
    if stats.active_sessions == actual and succeeded == 1:
        return Figure(True, f"{actual} active", f"{stats.active_sessions} active",
                      "one logout succeeded, the other found no session; stats agree with the store")
    if stats.active_sessions == actual:
        return Figure(False, "1 logout succeeds", f"{succeeded} succeeded",
                      f"stats agree with the store, but {succeeded} of the 2 logouts of one session "
                      f"succeeded: the second must find no session and raise SessionNotFound")
    return Figure(False, f"{actual} active", f"{stats.active_sessions} active",
                  f"get_stats() reports {stats.active_sessions} active sessions, the store holds {actual} "
                  f"(discrepancy {stats.active_sessions - actual:+d}); {succeeded} of the 2 logouts "
                  f"of one session succeeded")


RACE = RaceScenario(
    BUG,
    "the user clicks logout in two tabs at once",
    (_logout(1), _logout(2)),
    _counted_once,
    metadata=(("cart", "3 books"),),
)

CHECKS = ()
