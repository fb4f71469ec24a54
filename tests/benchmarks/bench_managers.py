"""What each fix costs: single-threaded throughput of buggy/ against fixed/.

Opt-in: the default pytest run does not collect this file. Run it by name:

    python3 -m pytest -p no:cacheprovider tests/benchmarks/bench_managers.py

Each operation is its own benchmark group, so the table pytest-benchmark prints
puts buggy and fixed side by side. These are timings, never checks: a benchmark
asserts what the operation returned or left behind, never how long it took.

The operations, and the fixes they show the cost of:

    update_session       lost-updates: one critical section instead of two
    increment_access     lost-increments: the clock call and the write move inside the lock
    get_session          shared-snapshot: each snapshot copies the metadata (0, 10 and 64 keys)
    create_session       id-collision: random ids from the operating system instead of a counter
    delete_session       stats-drift: one critical section instead of two (the session
                         stored a key, so buggy/ releases it and its cleanup queue stays empty)
    create + delete      cleanup-leak: a session that stored nothing; on buggy/ every one of
                         them stays queued, and every logout walks the whole queue again

When a working copy exists (workspace/, made by ``sessionlab start``), it is
benchmarked too, so the cost of your own fixes can be read off the same table.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import buggy
import fixed
from sessionlab import implementations

IMPLEMENTATIONS = [pytest.param(buggy, id="buggy"), pytest.param(fixed, id="fixed")]

WORKSPACE = Path(__file__).resolve().parents[2] / "workspace"
if (WORKSPACE / "__init__.py").exists():
    IMPLEMENTATIONS.append(pytest.param(implementations.load(str(WORKSPACE)).module, id="workspace"))

# Calls of a microsecond or two: time rounds of at least 100 microseconds, so the
# timer's own overhead is spread over many calls, the same for buggy and fixed.
pytestmark = pytest.mark.benchmark(min_time=0.0001)

# Metadata a typical session holds while it is updated and incremented.
STORED_KEYS = 10

# Rounds for the benchmarks whose state grows with every call (one session per call).
GROWING_ROUNDS = 2_000


@pytest.fixture(params=IMPLEMENTATIONS)
def manager(request):
    with request.param.SessionManager() as manager:
        yield manager


def session_with(manager, keys: int) -> str:
    session_id = manager.create_session("user-1", "Ada")
    for n in range(keys):
        manager.update_session(session_id, f"item-{n}", f"product {n}")
    return session_id


def test_update_session(benchmark, manager):
    benchmark.group = "update_session"
    session_id = session_with(manager, STORED_KEYS)
    benchmark(manager.update_session, session_id, "theme", "dark")
    metadata = manager.get_session(session_id).metadata
    assert metadata["theme"] == "dark"
    assert len(metadata) == STORED_KEYS + 1


def test_increment_access(benchmark, manager):
    benchmark.group = "increment_access"
    session_id = session_with(manager, STORED_KEYS)
    last = benchmark(manager.increment_access, session_id)
    # One thread: every call counted, so the stored count is the last one returned.
    assert last >= 1
    assert manager.get_session(session_id).access_count == last


@pytest.mark.parametrize("keys", [0, STORED_KEYS, 64], ids=lambda keys: f"{keys}-keys")
def test_get_session(benchmark, manager, keys):
    benchmark.group = f"get_session, {keys} keys"
    session_id = session_with(manager, keys)
    snapshot = benchmark(manager.get_session, session_id)
    assert snapshot.session_id == session_id
    assert len(snapshot.metadata) == keys


def test_create_session(benchmark, manager):
    benchmark.group = "create_session"
    users = (f"user-{n}" for n in itertools.count())

    def login() -> str:
        return manager.create_session(next(users), "visitor")

    # A fixed number of rounds: every call adds a session to the store.
    session_id = benchmark.pedantic(login, rounds=GROWING_ROUNDS, iterations=10)
    # One thread: every login got an id of its own, so the store holds them all.
    stats = manager.get_stats()
    assert stats.total_sessions == stats.active_sessions == manager.get_active_count()
    assert manager.get_session(session_id).user_id.startswith("user-")


def test_delete_session(benchmark, manager):
    benchmark.group = "delete_session"
    users = (f"user-{n}" for n in itertools.count())

    def logged_in() -> tuple[tuple[str], dict]:
        # Not timed: a session that stored one key, so buggy/ releases it too.
        session_id = manager.create_session(next(users), "visitor")
        manager.update_session(session_id, "theme", "dark")
        return (session_id,), {}

    benchmark.pedantic(manager.delete_session, setup=logged_in, rounds=GROWING_ROUNDS)
    assert manager.get_active_count() == 0
    assert manager.get_stats().active_sessions == 0
    assert manager.get_cleanup_queue_size() == 0


def test_create_then_delete(benchmark, manager):
    benchmark.group = "create + delete, nothing stored"

    def login_logout() -> str:
        session_id = manager.create_session("user-1", "visitor")
        manager.delete_session(session_id)
        return session_id

    # A fixed number of cycles: on buggy/ each one leaves its session in the cleanup
    # queue, so a cycle costs more the more cycles ran before it.
    benchmark.pedantic(login_logout, rounds=GROWING_ROUNDS // 10, iterations=10)
    benchmark.extra_info["cleanup_queue_after"] = manager.get_cleanup_queue_size()
    assert manager.get_active_count() == 0
    assert manager.get_stats().active_sessions == 0
