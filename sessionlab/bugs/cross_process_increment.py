"""Bug 10, cross-process increment: the count is read into Python and written back, not counted in SQL."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sessionlab.bug import ATOMICITY_VIOLATION, Bug
from sessionlab.bugs.persistent import MANAGER, QUIET
from sessionlab.engines.bounded import Hang
from sessionlab.engines.exploration import processes
from sessionlab.engines.exploration.search import Inconclusive
from sessionlab.engines.stress import NewManager, Scenario
from sessionlab.figure import Figure, plural
from sessionlab.implementations import Implementation

BUG = Bug(
    number=10,
    slug="cross-process-increment",
    title="Cross-process lost increments",
    bug_class=ATOMICITY_VIOLATION,
    track=2,
    mistake=(
        "increment_access reads the count with a SELECT and writes count + 1 with an UPDATE: its "
        "lock keeps out the threads of its own process, not the other processes sharing the file"
    ),
    symptom="behind several web workers, page views and rate-limit counters fall behind the requests served",
    scenario="4 processes x 250 increments of one session in one file; the count must reach 1000",
    functions=("PersistentSessionManager.increment_access",),
    module="persistent.py",
    manager=MANAGER,
)


# -- Stress: 4 worker processes count accesses to one session ----------------------------

PROCESSES = 4
INCREMENTS_EACH = 250
# A round whose processes have not all finished by then has hung.
PROCESS_DEADLINE = 30.0


def _count_in_a_process(new_manager: NewManager, path: str, session_id: str, start: Any, done: Any) -> None:
    with new_manager(path=path, sweep_interval=QUIET) as manager:
        start.wait()
        returned = [manager.increment_access(session_id) for _ in range(INCREMENTS_EACH)]
    done.put(returned)


def stress_round(new_manager: NewManager) -> Figure:
    # fork: each process starts from this one, with the implementation already loaded.
    context = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="sessionlab-") as folder:
        path = str(Path(folder) / "sessions.sqlite3")
        with new_manager(path=path, sweep_interval=QUIET) as manager:
            session_id = manager.create_session("user-1", "Ada")
        start, done = context.Barrier(PROCESSES), context.SimpleQueue()
        processes = [context.Process(target=_count_in_a_process, args=(new_manager, path, session_id, start, done),
                                     daemon=True) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(PROCESS_DEADLINE)
        stuck = [process for process in processes if process.is_alive()]
        for process in stuck:
            process.kill()
        if stuck:
            raise Hang(PROCESS_DEADLINE, f"{len(stuck)} of {PROCESSES} processes counting accesses", ())
        failed = [process.exitcode for process in processes if process.exitcode != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} of {PROCESSES} processes failed (exit status {failed[0]})")
        returned = [count for _ in processes for count in done.get()]
        with new_manager(path=path, sweep_interval=QUIET) as manager:
            counted = manager.get_session(session_id).access_count
    expected = PROCESSES * INCREMENTS_EACH
    if counted == expected:
        return Figure(True, str(expected), str(counted), f"{PROCESSES} processes counted {expected}, as expected")
    repeated = len(returned) - len(set(returned))
    return Figure(False, str(expected), str(counted),
                  f"{PROCESSES} processes x {INCREMENTS_EACH} increments, counted {counted}: {expected - counted} "
                  f"of {expected} lost; {repeated} increments returned a count another process had also returned")


STRESS = Scenario(BUG, stress_round, round_rate=0.9, check_history=False)
RACE = None


# -- Exploration: two processes, scheduled at every statement boundary ------------------------


def statement_race(implementation: Implementation) -> tuple[processes.ProcessExploration, dict[str, str]]:
    """Two processes count one access each, under every schedule of their statements."""
    hide: dict[str, str] = {}

    def setup() -> dict[str, str]:
        folder = tempfile.mkdtemp(prefix="sessionlab-")
        path = os.path.join(folder, "sessions.sqlite3")
        with implementation.new(MANAGER, path=path, sweep_interval=QUIET) as manager:
            session_id = manager.create_session("user-1", "Ada")
        hide[session_id] = "s"
        return {"folder": folder, "path": path, "session_id": session_id}

    def check(execution: processes.Execution) -> Figure:
        context = execution.context
        with implementation.new(MANAGER, path=context["path"], sweep_interval=QUIET) as manager:
            counted = manager.get_session(context["session_id"]).access_count
        failed = {who: value for who, value in execution.returned.items() if isinstance(value, processes.Raised)}
        if failed:
            who, error = next(iter(failed.items()))
            return Figure(False, "2", str(counted),
                          f"2 increments from 2 processes, counted {counted}: process {who + 1}'s increment failed "
                          f"with {error}")
        returned = sorted(execution.returned.values())
        if counted == 2 and returned == [1, 2]:
            return Figure(True, "2", "2", "2 increments from 2 processes, counted 2; the calls returned 1 and 2")
        return Figure(False, "2", str(counted),
                      f"2 increments from 2 processes, counted {counted}: {2 - counted} of 2 lost; the calls "
                      f"returned {returned}" if counted < 2 else
                      f"2 increments, counted {counted}, and the calls returned {returned}")

    def increment(manager: Any, context: dict[str, str]) -> int:
        return manager.increment_access(context["session_id"])

    scenario = processes.ProcessScenario(
        labels=("increment_access(s)", "increment_access(s)"), setup=setup,
        open_manager=lambda context: implementation.new(MANAGER, path=context["path"], sweep_interval=QUIET),
        calls=(increment, increment), check=check,
        teardown=lambda context: shutil.rmtree(context["folder"], ignore_errors=True), files=implementation.files)
    return processes.explore(scenario, preemptions=PREEMPTIONS), hide


# Every schedule with up to two preemptions: one is what a lost increment needs (both read
# before either writes); two also cover a read, a write and a read back, interleaved.
PREEMPTIONS = 2


def no_increment_lost_between_processes(implementation: Implementation) -> Figure:
    """cross-process-increment: under every schedule of their statements, two processes' increments both count."""
    outcome, hide = statement_race(implementation)
    if outcome.held:
        if not outcome.complete:
            raise Inconclusive(f"cross-process-increment: the search stopped at its budget after {outcome.scope()}")
        return Figure(True, "2", "2", f"2 processes' increments both counted in {outcome.scope()}")
    execution = outcome.execution
    return Figure(False, outcome.figure.expected, outcome.figure.got,
                  f"{outcome.figure.summary} (found after {plural(outcome.explored, 'schedule')})",
                  history="Why: both processes read the count before either wrote it back; each then wrote back a "
                          "count computed from what it had read. Each process's threading lock keeps out its own "
                          "threads only.\n\n"
                          "The statements, in the order SQLite ran them (s is the session id):\n"
                          + processes.interleaving(execution.statements, width=output_width(), hide=hide)
                  if execution else "")


def output_width() -> int:
    return max(80, shutil.get_terminal_size((80, 24)).columns)


CHECKS = (("every schedule of 2 processes at statement boundaries", no_increment_lost_between_processes),)
EXPLORE = no_increment_lost_between_processes  # what `sessionlab race` shows
