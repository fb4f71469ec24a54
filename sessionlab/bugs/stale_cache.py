"""Bug 7, stale cache: the database is written under its lock, the cache after releasing it."""

from __future__ import annotations

import logging
import threading

from sessionlab.bug import ATOMICITY_VIOLATION, Bug
from sessionlab.bugs.persistent import MANAGER, QUIET, finish, logging_to_a_file, new_state, stored
from sessionlab.engines.exploration.threads import RaceScenario, State, Worker
from sessionlab.engines.stress import NewManager, Scenario, run_threads
from sessionlab.figure import Figure
from sessionlab.implementations import Implementation

BUG = Bug(
    number=7,
    slug="stale-cache",
    title="Stale cache",
    bug_class=ATOMICITY_VIOLATION,
    track=2,
    mistake=(
        "update_session writes the database under the database lock and the cache after releasing "
        "it, so two updates can reach the cache in the opposite order from the database"
    ),
    symptom="a user saves a new value and keeps seeing the old one, until the process restarts",
    scenario=(
        "4 threads save their own value of one key, 50 times, stepping together, logging at debug "
        "level to a file; after each step the cached session must equal the stored one"
    ),
    functions=("PersistentSessionManager.update_session",),
    module="persistent.py",
    manager=MANAGER,
)


# -- Stress: 4 tabs save the same setting at once ---------------------------------------

UPDATE_THREADS = 4
UPDATE_STEPS = 50


def stress_round(new_manager: NewManager) -> Figure:
    stale: list[tuple[int, object, object]] = []
    with logging_to_a_file(logging.DEBUG), new_manager(sweep_interval=QUIET) as manager, \
            new_manager(path=manager.path, sweep_interval=QUIET) as other:
        session_id = manager.create_session("user-1", "Ada")
        barrier = threading.Barrier(UPDATE_THREADS + 1)

        def worker(index: int) -> None:
            for step in range(UPDATE_STEPS):
                barrier.wait()
                manager.update_session(session_id, "theme", f"theme {index} of step {step}")
                barrier.wait()

        def check(index: int) -> None:
            if index < UPDATE_THREADS:
                return worker(index)
            for step in range(UPDATE_STEPS):
                barrier.wait()
                barrier.wait()  # every update of this step has returned
                cached = manager.get_session(session_id).metadata["theme"]
                in_database = other.get_session(session_id).metadata["theme"]
                if cached != in_database:
                    stale.append((step, cached, in_database))

        run_threads(UPDATE_THREADS + 1, check, barriers=[barrier])
    if not stale:
        return Figure(True, "cache = database", "cache = database",
                      f"after each of {UPDATE_STEPS} steps of {UPDATE_THREADS} updates, the cache served what "
                      f"the database held")
    step, cached, in_database = stale[0]
    return Figure(False, "cache = database", f"{len(stale)} stale",
                  f"after {len(stale)} of {UPDATE_STEPS} steps the cache served a value the database no longer "
                  f"held (step {step}: cached {cached!r}, stored {in_database!r})")


STRESS = Scenario(BUG, stress_round, round_rate=0.3, check_history=False)


# -- Race: two requests save the same key -----------------------------------------------


def _prepare(implementation: Implementation) -> State:
    state = new_state(implementation)
    state.seen["stored"] = lambda: stored(implementation, state.manager, state.session_id)  # a closure: not walked
    state.manager.update_session(state.session_id, "cart", "empty")
    return state


def _save(value: str) -> Worker:
    def save(state: State) -> None:
        state.manager.update_session(state.session_id, "cart", value)

    return Worker(f"update_session(s, 'cart', {value!r})", save)


def _cache_agrees(state: State) -> Figure:
    try:
        cached = state.manager.get_session(state.session_id).metadata.get("cart")
        in_database = state.seen["stored"]().metadata.get("cart")
    finally:
        finish(state)
    if cached == in_database:
        return Figure(True, f"cart = {in_database!r}", f"cart = {cached!r}",
                      f"the cache and the database both hold cart = {cached!r}")
    return Figure(False, f"cart = {in_database!r}", f"cart = {cached!r}",
                  f"the cache serves cart = {cached!r} while the database holds {in_database!r}: the two "
                  f"updates reached the cache in the other order, and it stays stale until a restart")


RACE = RaceScenario(
    BUG,
    "two requests save a different cart in the same session",
    (_save("1 book"), _save("2 books")),
    _cache_agrees,
    prepare=_prepare,
    why=("each update wrote the database under the database lock, then the cache after releasing it: the "
         "update that reached the database first reached the cache last"),
)

CHECKS = ()
