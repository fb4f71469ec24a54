"""How long the linearizability check takes on a 4-thread, 200-call history.

Run with: pytest tests/benchmarks/bench_linearizability.py

Timings are reported by pytest-benchmark, never asserted; each benchmark
asserts the verdict instead.
"""

from __future__ import annotations

import random
from types import MappingProxyType

import pytest

import fixed
from sessionlab.api import Session
from sessionlab.engines.linearizability.checker import check
from sessionlab.engines.linearizability.history import Operation
from sessionlab.engines.linearizability.model import SessionState, step
from sessionlab.engines.stress import record_mixed_run

THREADS = 4
CALLS_EACH = 50
SESSIONS = 5


def generate_history(seed: int, threads: int = THREADS, calls_each: int = CALLS_EACH,
                     sessions: int = SESSIONS) -> list[Operation]:
    """A linearizable history of overlapping calls, built around chosen linearization points.

    Each call takes effect at its point, in the order of the points, and is given
    an invocation before and a return after it, so up to ``threads`` calls overlap.
    """
    rng = random.Random(seed)
    states: dict[str, SessionState | None] = {}
    history: list[Operation] = []
    ids = [f"s{n}" for n in range(sessions)]

    def run(thread: str, name: str, args: tuple, session_id: str, invoked: int, returned: int) -> None:
        model_args = (session_id, *args) if name == "create_session" else args
        states[session_id], outcome = step(states.get(session_id), name, model_args)
        result = session_id if name == "create_session" else outcome.value
        if name == "get_session" and outcome.error is None:
            result = _as_session(session_id, outcome.value)
        history.append(Operation(thread, name, args, result, outcome.error, invoked, returned))

    for n, session_id in enumerate(ids):
        run("MainThread", "create_session", (f"u-{n}", f"user {n}"), session_id, 2 * n, 2 * n + 1)
    free = [2 * sessions] * threads  # when each thread may invoke its next call
    left = [calls_each] * threads
    point = 2 * sessions
    while any(left):
        point += rng.randint(1, 4)
        ready = [i for i in range(threads) if left[i] and free[i] <= point]
        if not ready:
            continue
        index = rng.choice(ready)
        left[index] -= 1
        invoked, returned = rng.randint(free[index], point), point + rng.randint(0, 20)
        free[index] = returned + 1
        session_id, roll, n = rng.choice(ids), rng.random(), left[index]
        if roll < 0.4:
            name, args = "increment_access", (session_id,)
        elif roll < 0.7:
            name, args = "update_session", (session_id, f"key-{rng.randrange(4)}", n)
        elif roll < 0.98:
            name, args = "get_session", (session_id,)
        else:
            name, args = "delete_session", (session_id,)
        run(f"worker-{index}", name, args, session_id, invoked, returned)
    return history


def _as_session(session_id: str, state: SessionState) -> Session:
    return Session(session_id, state.user_id, state.username, state.is_authenticated,
                   state.access_count, MappingProxyType(state.metadata_dict()), 0.0, 0.0)


def lose_one_increment(history: list[Operation]) -> tuple[list[Operation], Operation]:
    """The history with one increment made to return the count the one before it returned."""
    counts = [i for i, op in enumerate(history) if op.name == "increment_access" and op.error is None
              and op.result > 1]
    index = counts[len(counts) // 2]
    op = history[index]
    broken = Operation(op.thread, op.name, op.args, op.result - 1, None, op.invoked_ns, op.returned_ns)
    return history[:index] + [broken] + history[index + 1:], broken


def record_fixed_run(seed: int) -> list[Operation]:
    return record_mixed_run(fixed.SessionManager, THREADS, CALLS_EACH, SESSIONS, seed).operations


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_check_generated_linearizable_history(benchmark, seed):
    history = generate_history(seed)
    assert len(history) == SESSIONS + THREADS * CALLS_EACH
    verdict = benchmark(check, history)
    assert verdict.ok, verdict.explain()
    assert verdict.operations == len(history)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_check_generated_history_with_a_lost_increment(benchmark, seed):
    history, broken = lose_one_increment(generate_history(seed))
    verdict = benchmark(check, history)
    assert not verdict.ok
    assert verdict.session_id == broken.session_id
    assert "one increment was lost" in verdict.reason


def test_check_recorded_fixed_history(benchmark):
    history = record_fixed_run(seed=1)
    assert len(history) == SESSIONS + THREADS * CALLS_EACH
    verdict = benchmark(check, history)
    assert verdict.ok, verdict.explain()
