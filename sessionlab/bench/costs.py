"""The costs ``sessionlab bench --full`` adds to operations per second.

Memory retained per deleted session (tracemalloc, after many login and logout
cycles), the time deterministic exploration takes per bug, the time the
linearizability check takes per 1,000 recorded calls, and requests per second
over HTTP for a served manager and, for comparison, a plain Flask app that
keeps its session in Flask's own signed cookie. Each time is the median of
repeated runs; none is asserted by a test.
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

MEMORY_CYCLES = 100_000


def memory_per_deleted_session(new_manager: Callable[[], Any], cycles: int = MEMORY_CYCLES) -> float:
    """Bytes still held per session after cycles logins and logouts (each session stored a key)."""
    manager = new_manager()
    try:
        def run(count: int, first: int) -> None:
            for n in range(first, first + count):
                session_id = manager.create_session(f"u-{n}", "visitor")
                manager.update_session(session_id, "theme", "dark")
                manager.delete_session(session_id)

        run(1_000, 0)  # warm-up: containers grow to their working size
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            run(cycles, 1_000)
            gc.collect()
            retained = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        return max(0.0, retained / cycles)
    finally:
        manager.close()


def exploration_seconds(implementation: Any, repeats: int = 3) -> dict[str, float]:
    """For each race bug: the median time of a complete search of its scenario on implementation
    (track 4's too, where a Redis can run)."""
    from sessionlab import catalogue
    from sessionlab.engines.bounded import Hang
    from sessionlab.engines.exploration import threads
    from sessionlab.servers import redis_server

    found: dict[str, float] = {}
    redis_here = redis_server.ready() == ""  # starts the throwaway server now, outside the timings
    for home in catalogue.races():
        if home.bug.track == 4 and not redis_here:
            continue
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            try:
                threads.explore(home.race, implementation)
            except Hang:
                pass  # a deadlock found is a search that ended too
            times.append(time.perf_counter() - started)
        found[home.bug.slug] = statistics.median(times)
    return found


def linearizability_seconds_per_1000_calls(new_manager: Callable[[], Any], repeats: int = 5) -> float:
    """The median time the checker takes per 1,000 calls of a recorded 4-thread history."""
    from sessionlab.engines.stress import record_mixed_run

    per_thousand = []
    for seed in range(repeats):
        recorder = record_mixed_run(new_manager, threads=4, calls_each=250, seed=seed)
        started = time.perf_counter()
        verdict = recorder.check()
        elapsed = time.perf_counter() - started
        if not verdict.ok:
            raise ValueError(f"the recorded history is not linearizable: {verdict.reason}")
        per_thousand.append(elapsed / len(recorder) * 1000)
    return statistics.median(per_thousand)


def http_requests_per_second(apps: list[tuple[str, list[str]]], users: int = 20, requests: int = 40,
                             repeats: int = 3) -> dict[str, float]:
    """Requests per second of each served app (name, the command that serves it on {port}), under
    the same load, taking turns, median of repeats. The servers run with CPython's own switch
    interval and no noise: this is throughput, not a bug hunt."""
    from sessionlab.web import load, server

    running = []
    try:
        for name, argv in apps:
            port = server.free_port()
            child = subprocess.Popen([sys.executable, *[part.format(port=port) for part in argv]],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            running.append((name, port, child))
        for name, port, child in running:
            if not load.wait_until_up(port, child):
                raise RuntimeError(f"{name} did not start")
        runs: dict[str, list[float]] = {name: [] for name, _, _ in running}
        for _ in range(repeats):
            for name, port, _ in running:
                report = load.run(f"http://127.0.0.1:{port}", users=users, requests=requests, tabs=2)
                runs[name].append(report.figures()["requests_per_second"])
        return {name: statistics.median(values) for name, values in runs.items()}
    finally:
        for _, _, child in running:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()


def served(spec: str) -> list[str]:
    """The command that serves an implementation's in-memory manager on {port}, for throughput."""
    return ["-m", "sessionlab", "serve", "--impl", spec, "--port", "{port}", "--noise", "0",
            "--switch-interval", "0.005"]


PLAIN_FLASK = ["-m", "sessionlab.web.plain", "{port}"]
