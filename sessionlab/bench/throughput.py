"""The price of correctness, measured: operations per second of each manager, at 1, 4 and 16 threads.

Each workload (create, get, update, increment, delete, and a mix) runs on a
fresh manager of each implementation, all implementations taking turns within
each repetition (interleaved, so a slow moment of the machine hits them all),
and the figure is the median of the repetitions. The table puts buggy/ and
fixed/ side by side with the ratio fixed / buggy, and two managers a user
might reach for instead: a dict behind one lock, and cachetools' TTLCache
behind one lock (when cachetools is installed).

Timings are reported here and never asserted by a test.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sessionlab.bench import baselines

THREADS = (1, 4, 16)
WORKLOADS = ("create", "get", "update", "increment", "delete", "mixed")
OPERATIONS = 20_000  # per run, shared among the threads
REPEATS = 5
KEYS = 10  # what a session holds while it is read and written


@dataclass(frozen=True)
class Figure:
    workload: str
    threads: int
    implementation: str
    ops_per_second: float  # the median of REPEATS runs
    runs: tuple[float, ...]


def _sessions(manager: Any, count: int) -> list[str]:
    ids = []
    for n in range(count):
        session_id = manager.create_session(f"user-{n}", "visitor")
        for k in range(KEYS):
            manager.update_session(session_id, f"key-{k}", k)
        ids.append(session_id)
    return ids


def _operation(workload: str, manager: Any, ids: list[str]) -> Callable[[int, int], None]:
    """What one thread does for its n-th call (thread, n)."""
    if workload == "create":
        return lambda thread, n: manager.create_session(f"user-{thread}-{n}", "visitor")
    if workload == "get":
        return lambda thread, n: manager.get_session(ids[(thread + n) % len(ids)])
    if workload == "update":
        return lambda thread, n: manager.update_session(ids[(thread + n) % len(ids)], "theme", n)
    if workload == "increment":
        return lambda thread, n: manager.increment_access(ids[(thread + n) % len(ids)])
    if workload == "delete":
        return lambda thread, n: manager.delete_session(ids.pop())
    calls = (lambda t, n: manager.get_session(ids[(t + n) % 64]),
             lambda t, n: manager.increment_access(ids[(t + n) % 64]),
             lambda t, n: manager.get_session(ids[(t + n) % 64]),
             lambda t, n: manager.update_session(ids[(t + n) % 64], "theme", n))
    return lambda thread, n: calls[n % 4](thread, n)


def run_once(new_manager: Callable[[], Any], workload: str, threads: int, operations: int = OPERATIONS) -> float:
    """Operations per second of one run: threads start together and share the operations."""
    each = operations // threads
    manager = new_manager()
    try:
        ids = _sessions(manager, operations if workload == "delete" else 64)
        call = _operation(workload, manager, ids)
        barrier = threading.Barrier(threads + 1)

        def worker(thread: int) -> None:
            barrier.wait()
            for n in range(each):
                call(thread, n)

        workers = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(threads)]
        for thread in workers:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in workers:
            thread.join()
        return each * threads / (time.perf_counter() - started)
    finally:
        manager.close()


def candidates(specs: list[str]) -> list[tuple[str, Callable[[], Any]]]:
    """(name, new manager) for each implementation named, then the baselines available here."""
    from sessionlab import implementations

    found = []
    for spec in specs:
        implementation = implementations.load(spec)
        found.append((spec, implementation.new_manager))
    return found + baselines.available()


def measure(specs: list[str], *, workloads: tuple[str, ...] = WORKLOADS, threads: tuple[int, ...] = THREADS,
            repeats: int = REPEATS, operations: int = OPERATIONS,
            progress: Callable[[int, int], None] | None = None) -> list[Figure]:
    """Every workload at every thread count, each implementation in turn, repeats times; medians."""
    managers = candidates(specs)
    cells = [(w, t) for w in workloads for t in threads]
    figures = []
    for done, (workload, count) in enumerate(cells, 1):
        runs: dict[str, list[float]] = {name: [] for name, _ in managers}
        for _ in range(repeats):
            for name, new_manager in managers:  # interleaved: each repetition runs them all
                runs[name].append(run_once(new_manager, workload, count, operations))
        figures += [Figure(workload, count, name, statistics.median(values), tuple(values))
                    for name, values in runs.items()]
        if progress is not None:
            progress(done, len(cells))
    return figures


def rows(figures: list[Figure], names: list[str]) -> Iterator[tuple[str, ...]]:
    """Table rows: workload, threads, ops/s per implementation, fixed / buggy."""
    by = {(f.workload, f.threads, f.implementation): f.ops_per_second for f in figures}
    for workload, count in dict.fromkeys((f.workload, f.threads) for f in figures):
        cells = [f"{by[(workload, count, name)]:,.0f}" for name in names]
        ratio = ""
        if ("buggy" in names and "fixed" in names):
            ratio = f"{by[(workload, count, 'fixed')] / by[(workload, count, 'buggy')]:.2f}"
        yield (workload, str(count), *cells, ratio)
