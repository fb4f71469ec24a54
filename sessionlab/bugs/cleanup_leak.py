"""Bug 3, cleanup-queue leak: a release that freed nothing is counted as a failure and retried forever."""

from __future__ import annotations

import gc
import threading
import tracemalloc

from sessionlab import api
from sessionlab.api import SessionNotFound
from sessionlab.bug import RESOURCE_LEAK, Bug
from sessionlab.engines.stress import NewManager, Scenario, run_threads
from sessionlab.figure import Figure
from sessionlab.implementations import Implementation

BUG = Bug(
    number=3,
    slug="cleanup-leak",
    title="Cleanup-queue leak",
    bug_class=RESOURCE_LEAK,
    track=1,
    mistake=(
        "cleanup treats a release that freed nothing as a failure and requeues it; a session "
        "with no metadata frees nothing, so it is retried forever"
    ),
    symptom="memory grows with every logout of a session that stored nothing",
    scenario=(
        "10 threads x 100 logins and logouts, every other user storing one preference; "
        "the cleanup queue must end empty"
    ),
    functions=("SessionManager._run_cleanup",),
)


# -- Stress: logins and logouts on 10 threads ------------------------------------------

CLEANUP_THREADS = 10
LOGINS_EACH = 100


def stress_round(new_manager: NewManager) -> Figure:
    deleted = [0] * CLEANUP_THREADS
    with new_manager() as manager:
        barrier = threading.Barrier(CLEANUP_THREADS)

        def worker(index: int) -> None:
            barrier.wait()
            for n in range(LOGINS_EACH):
                session_id = manager.create_session(f"user-{index}-{n}", f"visitor {index}-{n}")
                try:
                    if n % 2 == 0:
                        manager.update_session(session_id, "theme", "dark")
                    manager.delete_session(session_id)
                except SessionNotFound:
                    continue  # another login was handed the same id and already logged it out
                deleted[index] += 1

        run_threads(CLEANUP_THREADS, worker, barriers=[barrier])
        queued = manager.get_cleanup_queue_size()
        failed = manager.get_stats().failed_cleanups
    total = sum(deleted)
    if queued == 0:
        return Figure(True, "0", "0", f"all {total} deleted sessions were released; the cleanup queue is empty")
    return Figure(
        False, "0", str(queued),
        f"{queued} of {total} deleted sessions still wait in the cleanup queue (expected 0); "
        f"{failed} cleanup attempts failed and were retried",
    )


# The leak is bookkeeping, not a history; and this scenario's concurrent logins would
# blame another bug (id-collision) for what a history check found.
STRESS = Scenario(BUG, stress_round, round_rate=1.0, check_history=False)
RACE = None


# -- Single thread: the leak needs no second thread -----------------------------------


def released_after_logout(implementation: Implementation) -> Figure:
    """cleanup-leak: a session that stored nothing is released when it is deleted."""
    with implementation.new_manager() as manager:
        empty = manager.create_session("u-1", "Ada")
        full = manager.create_session("u-2", "Bob")
        manager.update_session(full, "theme", "dark")
        manager.delete_session(empty)
        manager.delete_session(full)
        queued = manager.get_cleanup_queue_size()
        failed = manager.get_stats().failed_cleanups
    if queued == 0:
        return Figure(True, "0 queued", "0 queued", "2 sessions deleted, both released")
    return Figure(False, "0 queued", f"{queued} queued",
                  f"2 sessions deleted one after the other, {queued} still queued for cleanup "
                  f"({failed} failed cleanup attempts): a session that stored nothing is never released")


def no_leak_past_threshold(implementation: Implementation) -> Figure:
    """cleanup-leak: logins and logouts past the leak threshold leave health_check healthy."""
    logins = api.LEAK_THRESHOLD + 1
    with implementation.new_manager() as manager:
        for n in range(logins):
            manager.delete_session(manager.create_session(f"u-{n}", "visitor"))
        health = api.health_check(manager)
    if not health.memory_leak_detected:
        return Figure(True, "no leak", "no leak", f"{logins} logins and logouts; the cleanup queue holds "
                      f"{health.cleanup_queue_size}")
    return Figure(False, "no leak", f"{health.cleanup_queue_size} queued",
                  f"after {logins} logins and logouts, {health.cleanup_queue_size} sessions wait in the "
                  f"cleanup queue; health_check reports a leak")


LEAK_CYCLES = 2000
WARM_UP_CYCLES = 200
# A deleted session that is really released leaves nothing behind; a few bytes per
# session allow for counters that grow and containers that resize.
RETAINED_BYTES_ALLOWED = 16


# One frame per allocation: the line that made it. More frames cost seconds on buggy/'s leak.
TRACEBACK_FRAMES = 1


def _allocated_by(files: frozenset[str]) -> int:
    """Bytes still held that the implementation's code allocated (whatever other threads of the
    process allocate meanwhile, a background sweeper of another test, say, is not counted)."""
    snapshot = tracemalloc.take_snapshot()
    if files:
        snapshot = snapshot.filter_traces([tracemalloc.Filter(True, file) for file in files])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def no_memory_retained(implementation: Implementation) -> Figure:
    """cleanup-leak: a deleted session leaves no memory behind, wherever the code parks it."""
    with implementation.new_manager() as manager:

        def cycles(count: int, first: int) -> None:
            for n in range(first, first + count):
                session_id = manager.create_session(f"u-{n}", "visitor")
                if n % 2:
                    manager.update_session(session_id, "theme", "dark")
                manager.delete_session(session_id)

        cycles(WARM_UP_CYCLES, 0)
        gc.collect()
        tracemalloc.start(TRACEBACK_FRAMES)
        try:
            before = _allocated_by(implementation.files)
            cycles(LEAK_CYCLES, WARM_UP_CYCLES)
            gc.collect()
            retained = _allocated_by(implementation.files) - before
        finally:
            tracemalloc.stop()
        queued = manager.get_cleanup_queue_size()
    per_session = retained / LEAK_CYCLES
    if per_session <= RETAINED_BYTES_ALLOWED:
        return Figure(True, "0 bytes per session", f"{max(per_session, 0):.0f} bytes per session",
                      f"{LEAK_CYCLES} logins and logouts retained {max(per_session, 0):.0f} bytes per deleted session")
    where = ("in the cleanup queue" if queued else
             "although the cleanup queue is empty: the deleted sessions are kept somewhere else")
    return Figure(False, "0 bytes per session", f"{per_session:.0f} bytes per session",
                  f"{LEAK_CYCLES} logins and logouts retained {retained / 1024:.0f} KiB, {per_session:.0f} bytes "
                  f"per deleted session, {where}")


CHECKS = (
    ("single thread: an empty session is released", released_after_logout),
    ("single thread: no leak past the threshold", no_leak_past_threshold),
    ("single thread: no memory kept per deleted session", no_memory_retained),
)
