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
from dataclasses import dataclass
from typing import Any

from sessionlab.bug import Bug
from sessionlab.engines.bounded import Hang
from sessionlab.engines.exploration import processes
from sessionlab.engines.exploration.search import explore_workers
from sessionlab.engines.exploration.statements import Raised, encode
from sessionlab.engines.linearizability import lifecycle
from sessionlab.engines.linearizability.lifecycle import Call, Expected
from sessionlab.figure import Figure, plural
from sessionlab.implementations import Implementation
from sessionlab.judge.graft import others_solved

MANAGER = "PersistentSessionManager"
START, TTL = 1_700_000_000.0, 60.0
NOW = START + TTL + 10  # the session is idle past its time to live: a sweep may expire it
QUIET = 3600.0

OPERATIONS = ("create", "get", "update", "increment", "delete", "stats", "status", "progress", "files", "sweep",
              "close")
OWNERS = {"update": "stale-cache", "sweep": "expiry-race", "get": "lock-order-deadlock",
          "increment": "cross-process-increment", "close": "close-order"}
IN_PROCESSES = tuple(op for op in OPERATIONS if op != "close")  # a close ends its own process's manager only

_LABELS = {"create": "create_session('user-{k}', ...)", "get": "get_session(s)",
           "update": "update_session(s, {key!r}, {value!r})", "increment": "increment_access(s)",
           "delete": "delete_session(s)", "stats": "get_stats()", "status": "set_status(s, 'in_progress')",
           "progress": "record_progress(s, current_file='file-{k}')", "files": "record_files(s, ...)",
           "sweep": "expire_sessions()", "close": "close()"}
_KEYS, _VALUES = ("cart", "theme"), ("3 books", "dark")


def label(operation: str, k: int) -> str:
    return _LABELS[operation].format(k=k, key=_KEYS[k], value=_VALUES[k])


def operations_of(bug: Bug) -> tuple[str, ...]:
    return tuple(op for op, owner in OWNERS.items() if owner == bug.slug)


def pairs_for(bug: Bug, among: tuple[str, ...]) -> list[tuple[str, str]]:
    own = [op for op in operations_of(bug) if op in among]
    return [(a, b) for a in own for b in among if b not in own or among.index(b) >= among.index(a)]


# -- The calls, and what a manager answers after them ----------------------------------------


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
    args: tuple = {"update": (_KEYS[k], _VALUES[k]), "status": ("in_progress",),
                   "files": (f"capture-{k}.pcap", f"keys-{k}.log")}.get(operation, ())
    if operation == "progress":
        return manager.record_progress(session_id, processed=1, current_file=f"file-{k}")
    return getattr(manager, method)(session_id, *args)


def _model_call(operation: str, session_id: str, k: int, returned: Any) -> Call:
    args = {"create": (returned, f"user-{k}", f"user {k}"), "update": (_KEYS[k], _VALUES[k]),
            "status": ("in_progress",), "progress": (1, f"file-{k}"),
            "files": (f"capture-{k}.pcap", f"keys-{k}.log")}.get(operation, ())
    return Call(operation, session_id, args)


def _answer(call: Callable[[], Any]) -> Any:
    try:
        return encode(call())
    except Exception as exc:
        return Raised.of(exc)


def _progress(progress: Any) -> tuple:
    return progress.total, progress.processed, progress.current_file, tuple(progress.failed_files)


def answers(manager: Any, session_id: str) -> dict[str, Any]:
    """What a manager answers about the session and the store."""
    return {"session": _answer(lambda: manager.get_session(session_id)),
            "status": _answer(lambda: manager.get_status(session_id)),
            "progress": _answer(lambda: _progress(manager.get_progress(session_id))),
            "files": _answer(lambda: manager.get_files(session_id)),
            "counts": _answer(lambda: (manager.get_stats().active_sessions, manager.get_active_count()))}


def _expected_answers(store: lifecycle.Store, session_id: str) -> dict[str, Any]:
    record = dict(store).get(session_id)
    if record is None or record.deleted:
        session: Any = "SessionNotFound"
    else:
        session = "SessionExpired" if record.status == "expired" else record.view()
    progress = lifecycle.progress_of(store, session_id)
    _, active = lifecycle.stats(store)
    return {"session": session, "status": lifecycle.status_of(store, session_id),
            "progress": progress if isinstance(progress, str) else (0, *progress),
            "files": lifecycle.files_of(store, session_id), "counts": (active, active)}


def _fits(seen: Any, expected: Any) -> bool:
    if isinstance(seen, Raised):
        return isinstance(expected, str) and seen.is_a(expected)
    if isinstance(expected, Expected):
        return False
    if isinstance(seen, list):
        seen = tuple(seen)
    return seen == expected


def _returned_fits(operation: str, seen: Any, expected: Expected, session_id: str) -> bool:
    if expected.error:
        return isinstance(seen, Raised) and seen.is_a(expected.error)
    if isinstance(seen, Raised):
        return False
    if operation == "create":
        return isinstance(seen, str) and seen != session_id
    if operation == "stats" and isinstance(seen, (list, tuple)):
        return tuple(seen) == expected.value[:2]
    return seen == expected.value


# -- Judging one execution ---------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    summary: str


def judge_execution(pair: tuple[str, str], session_id: str, initial: lifecycle.Store, returned: dict[int, Any],
                    seen: dict[str, dict[str, Any]], closed: set[str] = frozenset()) -> Failure | None:
    """None if one order of the pair explains every result and answer; else what broke."""
    for k, value in returned.items():
        if isinstance(value, Raised) and not value.contract:
            return Failure(f"{label(pair[k], k)} raised {value}, an error the contract does not define")
    best: tuple[tuple[int, int], str] | None = None
    for order in ((0, 1), (1, 0)):
        store, wrong, closed_now = initial, [], False
        for k in order:
            op = pair[k]
            if op == "close":
                closed_now = True
                if isinstance(returned[k], Raised):
                    wrong.append(f"close() raised {returned[k].kind}")
                continue
            if closed_now:
                if not (isinstance(returned[k], Raised) and returned[k].contract):
                    wrong.append(f"{label(op, k)} returned after close() had closed the manager")
                continue
            store, expected = lifecycle.apply(store, _model_call(op, session_id, k, returned[k]), NOW, TTL)
            if not _returned_fits(op, returned[k], expected, session_id):
                wrong.append(f"{label(op, k)} {_gave(returned[k])}, where {_would(expected)}")
        returns_wrong = len(wrong)
        expected_answers = _expected_answers(store, session_id)
        database = seen.get("the database", {})
        for who, answered in seen.items():
            if who in closed:
                continue
            for what, value in answered.items():
                if _fits(value, expected_answers[what]):
                    continue
                if who != "the database" and what == "session" and _fits(database.get(what), expected_answers[what]):
                    wrong.append(f"{who} serves {_shown(value)} from its cache while the database holds "
                                 f"{_shown(database[what])}: the cache is stale")
                else:
                    wrong.append(f"{who} answers {what} {_shown(value)}, where {_shown(expected_answers[what])} "
                                 f"was due")
        if not wrong:
            return None
        text = f"run one after the other ({' then '.join(label(pair[k], k) for k in order)}): " + "; ".join(wrong)
        rank = (returns_wrong, len(wrong))
        if best is None or rank < best[0]:
            best = (rank, text)
    return Failure(f"no order of the two calls gives these results; the closest, {best[1]}")


def _gave(value: Any) -> str:
    return f"raised {value.kind}" if isinstance(value, Raised) else f"returned {_shown(value)}"


def _would(expected: Expected) -> str:
    return f"it would raise {expected.error}" if expected.error else f"it would return {_shown(expected.value)}"


def _shown(value: Any) -> str:
    if isinstance(value, Raised):
        return value.kind
    if isinstance(value, dict) and "access_count" in value:
        return f"access_count={value['access_count']}, metadata={value['metadata']}"
    return repr(value) if not isinstance(value, str) else value


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


def _initial(session_id: str) -> lifecycle.Store:
    return ((session_id, lifecycle.Record("user-0", "Ada", metadata=(("cart", "empty"),), last_update=START)),)


def _open(implementation: Implementation, path: str) -> Any:
    return implementation.new(MANAGER, path=path, ttl=TTL, sweep_interval=QUIET, clock=lambda: NOW)


def _fresh_answers(implementation: Implementation, path: str, session_id: str) -> dict[str, Any]:
    with _open(implementation, path) as fresh:
        return answers(fresh, session_id)


# -- Two threads, one manager -------------------------------------------------------------------


def _in_threads(implementation: Implementation, pair: tuple[str, str]) -> tuple[Failure | None, int]:
    failures: list[Failure] = []
    folders: list[str] = []
    states: list[dict[str, Any]] = []

    def setup() -> dict[str, Any]:
        state = _prepare(implementation)
        folders.append(state["folder"])
        state["manager"] = _open(implementation, state["path"])
        state["returned"] = {}
        states.append(state)
        return state

    def worker(k: int) -> Callable[[dict[str, Any]], None]:
        def run(state: dict[str, Any]) -> None:
            state["returned"][k] = _answer(lambda: _call(state["manager"], pair[k], state["session_id"], k))
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
        found = explore_workers(implementation, setup, [worker(0), worker(1)], invariant, replays=0, names=names)
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


def _in_processes(implementation: Implementation, pair: tuple[str, str]) -> tuple[Failure | None, int, str]:
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
        labels=tuple(label(pair[k], k) for k in (0, 1)), setup=lambda: _prepare(implementation),
        open_manager=lambda context: _open(implementation, context["path"]), calls=(call(0), call(1)),
        check=check, warm=lambda manager, context: _answer(lambda: manager.get_session(context["session_id"])),
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
    explored = 0
    runs = [("threads", pair) for pair in pairs_for(bug, OPERATIONS)]
    runs_in_processes = pairs_for(bug, IN_PROCESSES)
    runs += [("processes", pair) for pair in runs_in_processes]
    stalled: list[str] = []
    for mode, pair in runs:
        story = f"{label(pair[0], 0)} and {label(pair[1], 1)} at once in two {mode}"
        try:
            if mode == "threads":
                failure, count = _in_threads(judged, pair)
                shown = ""
            else:
                failure, count, shown = _in_processes(judged, pair)
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
