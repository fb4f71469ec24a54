"""Every pair of operations of the persistent manager, in two threads and in two processes.

The persistent track's version of ``pairs``: two calls at once on a session
idle past its time to live, explored under every interleaving of two threads
sharing one manager (frontrun), and under every schedule of two processes,
each with its own manager on the same file, at statement boundaries
(``engines.exploration.processes``). After the calls, each manager and a fresh
one on the file are asked what they now hold: the session (through the
cache), its status, progress and files, and the counts.

An execution holds when one order of the two calls, run one after the other
by the sequential specification (``engines.linearizability.lifecycle``), gives
what each call returned and what every manager now answers. So a lost write,
a stale cache, a touched session expired by a sweep, a count another process
lost and a refused call that changed something all break it. A lock cycle is a
Hang that names the lines where each thread holds and waits.

The pairs searched for a bug are those with one of its operations. Its other
bugs of the same file that the learner has not touched are taken as solved
(``graft``), so a pair breaks for this exercise's code only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from sessionlab.bug import Bug
from sessionlab.engines.bounded import Hang
from sessionlab.engines.exploration import processes
from sessionlab.engines.exploration.search import explore_workers
from sessionlab.engines.exploration.threads import PERSISTENT_CLOCK
from sessionlab.engines.linearizability import lifecycle
from sessionlab.figure import Figure, plural
from sessionlab.implementations import Implementation
from sessionlab.judge.graft import others_solved
from sessionlab.judge.persistent_execution import (
    KEYS, NOW, START, TTL, VALUES, Failure, answer, answers, judge_execution, label)

MANAGER = "PersistentSessionManager"
QUIET = 3600.0

OPERATIONS = ("create", "get", "update", "increment", "delete", "stats", "status", "progress", "files", "sweep",
              "close")
OWNERS = {"update": "stale-cache", "sweep": "expiry-race", "get": "lock-order-deadlock",
          "increment": "cross-process-increment", "close": "close-order"}
IN_PROCESSES = tuple(op for op in OPERATIONS if op != "close")  # a close ends its own process's manager only


def operations_of(bug: Bug) -> tuple[str, ...]:
    return tuple(op for op, owner in OWNERS.items() if owner == bug.slug)


def pairs_for(bug: Bug, among: tuple[str, ...]) -> list[tuple[str, str]]:
    own = [op for op in operations_of(bug) if op in among]
    return [(a, b) for a in own for b in among if b not in own or among.index(b) >= among.index(a)]



# -- The calls ---------------------------------------------------------------------------------


def _call(manager: Any, operation: str, session_id: str, k: int) -> Any:
    if operation == "create":
        return manager.create_session(f"user-{k}", f"user {k}")
    if operation == "stats":
        stats = manager.get_stats()
        return stats.total_sessions, stats.active_sessions
    if operation == "sweep":
        return manager.expire_sessions()
    if operation == "close":
        return manager.close()
    method = {"get": "get_session", "update": "update_session", "increment": "increment_access",
              "delete": "delete_session", "status": "set_status", "progress": "record_progress",
              "files": "record_files"}[operation]
    args: tuple = {"update": (KEYS[k], VALUES[k]), "status": ("in_progress",),
                   "files": (f"capture-{k}.pcap", f"keys-{k}.log")}.get(operation, ())
    if operation == "progress":
        return manager.record_progress(session_id, processed=1, current_file=f"file-{k}")
    return getattr(manager, method)(session_id, *args)


# -- The file each execution starts from -------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _prepare(implementation: Implementation) -> dict[str, Any]:
    """A fresh file holding one session that stored cart='empty' and has been idle past its ttl."""
    folder = tempfile.mkdtemp(prefix="sessionlab-")
    path = os.path.join(folder, "sessions.sqlite3")
    clock = _Clock()
    with implementation.new(MANAGER, path=path, ttl=TTL, sweep_interval=QUIET, clock=clock) as manager:
        session_id = manager.create_session("user-0", "Ada")
        manager.update_session(session_id, "cart", "empty")
    return {"folder": folder, "path": path, "session_id": session_id}


def _copier(template: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Each execution's start: a copy of the folder _prepare made (the file and whatever else the
    implementation keeps beside it), cheaper than making it again."""
    def copy() -> dict[str, Any]:
        folder = tempfile.mkdtemp(prefix="sessionlab-")
        for name in os.listdir(template["folder"]):
            shutil.copy2(os.path.join(template["folder"], name), os.path.join(folder, name))
        return {"folder": folder, "path": os.path.join(folder, os.path.basename(template["path"])),
                "session_id": template["session_id"]}
    return copy


def _initial(session_id: str) -> lifecycle.Store:
    return ((session_id, lifecycle.Record("user-0", "Ada", metadata=(("cart", "empty"),), last_update=START)),)


def _open(implementation: Implementation, path: str) -> Any:
    return implementation.new(MANAGER, path=path, ttl=TTL, sweep_interval=QUIET, clock=lambda: NOW)


def _fresh_answers(implementation: Implementation, path: str, session_id: str) -> dict[str, Any]:
    with _open(implementation, path) as fresh:
        return answers(fresh, session_id)


# -- Two threads, one manager -------------------------------------------------------------------


def _in_threads(implementation: Implementation, pair: tuple[str, str],
                prepare: Callable[[], dict[str, Any]]) -> tuple[Failure | None, int]:
    failures: list[Failure] = []
    folders: list[str] = []
    states: list[dict[str, Any]] = []

    def setup() -> dict[str, Any]:
        state = prepare()
        folders.append(state["folder"])
        state["manager"] = _open(implementation, state["path"])
        state["returned"] = {}
        states.append(state)
        return state

    def worker(k: int) -> Callable[[dict[str, Any]], None]:
        def run(state: dict[str, Any]) -> None:
            state["returned"][k] = answer(lambda: _call(state["manager"], pair[k], state["session_id"], k))
        return run

    def invariant(state: dict[str, Any]) -> bool:
        manager, session_id = state["manager"], state["session_id"]
        closed = {"the manager"} if "close" in pair else set()
        seen = {"the manager": answers(manager, session_id) if not closed else {},
                "the database": _fresh_answers(implementation, state["path"], session_id)}
        failure = judge_execution(pair, session_id, _initial(session_id), state["returned"], seen, closed)
        if failure is not None:
            failures.append(failure)
        return failure is None

    names = [f"thread {k} ({label(pair[k], k)})" for k in (0, 1)]
    try:
        found = explore_workers(implementation, setup, [worker(0), worker(1)], invariant, replays=0, names=names,
                                clock=PERSISTENT_CLOCK, io=False)
    finally:
        for state in states:
            _close_in_the_background(state["manager"])
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    if failures:
        return failures[0], found.explored
    if not found.held:
        return Failure(found.explanation.splitlines()[0] if found.explanation else "broke"), found.explored
    return None, found.explored


def _close_in_the_background(manager: Any) -> None:
    """Close a manager an execution left open, unless it is stuck on a lock its threads hold."""
    def close() -> None:
        try:
            manager.close()
        except Exception:
            pass

    closer = threading.Thread(target=close, name="lab-close", daemon=True)
    closer.start()
    closer.join(0.5)


# -- Two processes, one file --------------------------------------------------------------------


def _in_processes(implementation: Implementation, pair: tuple[str, str],
                  prepare: Callable[[], dict[str, Any]]) -> tuple[Failure | None, int, str]:
    def call(k: int) -> Callable[[Any, dict[str, Any]], Any]:
        return lambda manager, context: _call(manager, pair[k], context["session_id"], k)

    def check(execution: processes.Execution) -> Figure:
        context = execution.context
        seen = {f"process {k + 1}'s manager": execution.observed[k] for k in (0, 1)}
        seen["the database"] = _fresh_answers(implementation, context["path"], context["session_id"])
        failure = judge_execution(pair, context["session_id"], _initial(context["session_id"]),
                                  execution.returned, seen)
        return Figure(failure is None, "holds", "holds" if failure is None else "broke",
                      failure.summary if failure else "")

    scenario = processes.ProcessScenario(
        labels=tuple(label(pair[k], k) for k in (0, 1)), setup=prepare,
        open_manager=lambda context: _open(implementation, context["path"]), calls=(call(0), call(1)),
        check=check, warm=lambda manager, context: answer(lambda: manager.get_session(context["session_id"])),
        observe=lambda manager, context: answers(manager, context["session_id"]),
        teardown=lambda context: shutil.rmtree(context["folder"], ignore_errors=True), files=implementation.files)
    found = processes.explore(scenario, preemptions=1)
    if found.held:
        return None, found.explored, ""
    execution = found.execution
    hide = {execution.context["session_id"]: "s"} if execution else {}
    shown = processes.interleaving(execution.statements, hide=hide) if execution else ""
    return Failure(found.figure.summary), found.explored, shown


# -- The search ----------------------------------------------------------------------------------


def search(bug: Bug, implementation: Implementation) -> Figure:
    """Every pair with one of the bug's operations, in threads and in processes; the first that breaks."""
    judged, replaced = others_solved(bug, implementation)
    runs = [("threads", pair) for pair in pairs_for(bug, OPERATIONS)]
    runs_in_processes = pairs_for(bug, IN_PROCESSES)
    runs += [("processes", pair) for pair in runs_in_processes]
    template = _prepare(judged)
    try:
        return _search(bug, judged, replaced, runs, runs_in_processes, _copier(template))
    finally:
        shutil.rmtree(template["folder"], ignore_errors=True)


def _search(bug: Bug, judged: Implementation, replaced: list[str], runs: list, runs_in_processes: list,
            prepare: Callable[[], dict[str, Any]]) -> Figure:
    explored = 0
    stalled: list[str] = []
    for mode, pair in runs:
        story = f"{label(pair[0], 0)} and {label(pair[1], 1)} at once in two {mode}"
        try:
            if mode == "threads":
                failure, count = _in_threads(judged, pair, prepare)
                shown = ""
            else:
                failure, count, shown = _in_processes(judged, pair, prepare)
        except Hang as hang:
            if mode == "threads" and not hang.deadlock and pair in runs_in_processes:
                # A thread waits where the search cannot schedule it (a lock file, a sleep between
                # retries): no lock cycle, and the same pair runs in real processes next.
                stalled.append(f"{pair[0]} + {pair[1]} ({'; '.join(w.describe() for w in hang.waits)})")
                continue
            raise Hang(hang.seconds, f"{story}: {hang.label}" if hang.label else story, hang.waits,
                       hang.deadlock) from None
        explored += count
        if failure is not None:
            return Figure(False, "every pair holds", f"{pair[0]} + {pair[1]} broke",
                          f"{story}, on a session idle past its time to live: {failure.summary} (after "
                          f"{plural(count, 'execution')})",
                          history=("The statements, in the order SQLite ran them (s is the session id):\n" + shown)
                          if shown else "")
    solved = f"; {', '.join(replaced)} taken from the reference while this exercise is judged" if replaced else ""
    if stalled:
        solved += (f"; {plural(len(stalled), 'pair')} could not be searched in threads, where a thread waits on "
                   f"something the search cannot schedule, and held in processes: {', '.join(stalled)}")
    threads = len(pairs_for(bug, OPERATIONS))
    in_processes = len(pairs_for(bug, IN_PROCESSES))
    return Figure(True, "every pair holds", "every pair holds",
                  f"{plural(threads, 'pair')} of operations in two threads and {in_processes} in two processes, "
                  f"{explored} executions, all held{solved}")
