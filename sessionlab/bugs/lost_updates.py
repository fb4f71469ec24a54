"""Bug 1, lost updates: an update edits a copy outside the lock and stores the whole copy back."""

from __future__ import annotations

import threading

from sessionlab.bug import ATOMICITY_VIOLATION, Bug
from sessionlab.engines.exploration.threads import RaceScenario, State, Worker
from sessionlab.engines.stress import NOISE, NewManager, Scenario, run_threads
from sessionlab.figure import Figure, plural

BUG = Bug(
    number=1,
    slug="lost-updates",
    title="Lost updates",
    bug_class=ATOMICITY_VIOLATION,
    track=1,
    mistake=(
        "update_session copies the session's metadata under the lock, edits and validates "
        "the copy outside it, then stores the whole copy back"
    ),
    symptom="two requests save different keys at once and one of the keys disappears",
    scenario=(
        "100 steps; in each, 10 threads set 10 different keys of a fresh session at once; "
        "every step must end with all 10 keys"
    ),
    functions=("SessionManager.update_session",),
)


# -- Stress: 10 threads set 10 keys of one session at once, step after step ------------

UPDATE_THREADS = 10
UPDATE_STEPS = 100


def stress_round(new_manager: NewManager) -> Figure:
    keys = [f"key-{i}" for i in range(UPDATE_THREADS)]
    short_steps: list[tuple[int, list[str]]] = []  # (step, keys that survived)
    step = {"number": -1, "session": ""}

    with new_manager() as manager:

        def next_step() -> None:
            # Runs in one thread while every worker waits at the barrier.
            if step["session"]:
                kept = sorted(manager.get_session(step["session"]).metadata)
                if len(kept) < UPDATE_THREADS:
                    short_steps.append((step["number"], kept))
            step["number"] += 1
            step["session"] = manager.create_session(f"user-{step['number']}", "shopper")

        barrier = threading.Barrier(UPDATE_THREADS, action=next_step)

        def worker(index: int) -> None:
            for value in range(UPDATE_STEPS):
                barrier.wait()
                manager.update_session(step["session"], keys[index], value)
            barrier.wait()

        run_threads(UPDATE_THREADS, worker, barriers=[barrier])

    total = UPDATE_THREADS * UPDATE_STEPS
    lost = sum(UPDATE_THREADS - len(kept) for _, kept in short_steps)
    if not short_steps:
        return Figure(True, str(total), str(total),
                      f"all {UPDATE_STEPS} steps kept all {UPDATE_THREADS} keys ({total} updates)")
    number, kept = short_steps[0]
    missing = ", ".join(key for key in keys if key not in kept)
    return Figure(
        False, f"{UPDATE_THREADS} keys after every step", f"{lost} keys missing",
        f"{len(short_steps)} of {UPDATE_STEPS} steps lost keys: {lost} of {total} updates lost "
        f"(step {number}: {UPDATE_THREADS} threads each set their own key, {plural(len(kept), 'key')} survived; "
        f"missing {missing})",
    )


STRESS = Scenario(BUG, stress_round, round_rate=0.7, noise=NOISE)


# -- Race: two requests change different keys of one session -------------------------


def _update(key: str, value: str) -> Worker:
    def update(state: State) -> None:
        state.manager.update_session(state.session_id, key, value)

    return Worker(f"update_session(s, {key!r}, {value!r})", update)


def _both_kept(state: State) -> Figure:
    now = dict(state.manager.get_session(state.session_id).metadata)
    wanted = {"cart": "3 books", "theme": "dark"}
    shown = ", ".join(f"{key}={now.get(key)!r}" for key in wanted)
    lost = [key for key, value in wanted.items() if now.get(key) != value]
    if not lost:
        return Figure(True, "cart='3 books', theme='dark'", shown, "both updates were kept")
    return Figure(False, "cart='3 books', theme='dark'", shown,
                  f"one request set cart to '3 books', the other set theme to 'dark'; the session holds "
                  f"{shown}: the update of {' and '.join(lost)} was lost")


RACE = RaceScenario(
    BUG,
    "two requests each change a different key of the same session",
    (_update("cart", "3 books"), _update("theme", "dark")),
    _both_kept,
    metadata=(("cart", "empty"), ("theme", "light")),
)

CHECKS = ()
