"""Bounding frontrun's explorations, and naming the threads of a lock cycle it finds.

``explore_bounded`` runs one exploration within a bound. A ``Witness`` watches the
exploration's lock operations, so that when frontrun reports a lock cycle, or a
run stalls, the lab can say which lines hold each lock and which line waits.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from sessionlab.engines.bounded import (
    Files, Hang, Raw, Wait, held_of, innermost, matcher, run_bounded, source_of, wait_of)
from sessionlab.engines.fair_time import join as fair_join
from sessionlab.engines.untraced import untraced

T = TypeVar("T")

class Witness:
    """While frontrun explores (use as a context manager around the exploration):
    where each lock was taken, and on a lock cycle or a stalled run, where each
    thread waits. Only one exploration runs at a time, so one Witness at a time."""

    def __init__(self, files: Files = None):
        self.cycle = ""  # frontrun's description of the first lock cycle found
        self.waiting: dict[int, Raw | None] = {}  # frontrun thread -> where it waits
        self.taken: dict[tuple[int, str], Raw | None] = {}  # (thread, lock) -> where taken
        self.stalled: list[tuple[str, Raw | None]] = []  # thread name -> where it waits
        self.aliases: dict[str, str] = {}  # a local name for one of the manager's locks -> self.<attribute>
        self.runs = 0  # executions begun: how the search shows it is getting on
        self._mine = matcher(files)
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> Witness:
        try:
            self._install()
        except (ImportError, AttributeError):
            self.__exit__()  # another frontrun: describe_deadlock falls back to its explanation
        return self

    def __exit__(self, *exc_info: object) -> None:
        while self._undo:
            self._undo.pop()()

    @untraced
    def _install(self) -> None:
        from frontrun._cooperative import get_context
        from frontrun._deadlock import WaitForGraph, format_cycle
        from frontrun._dpor_runtime import runner, worker_set

        held: dict[tuple[int, int], Raw | None] = {}  # (thread, id(lock)) -> where taken
        idents: dict[int, int] = {}  # frontrun's thread number -> OS thread
        mine, witness = self._mine, self
        add_holding, add_waiting, clear = WaitForGraph.add_holding, WaitForGraph.add_waiting, WaitForGraph.clear
        on_timeout = runner.notify_scheduler_timeout

        def holding(graph: Any, thread: int, lock: int, kind: str = "lock") -> Any:
            idents[thread] = threading.get_ident()
            held[(thread, lock)] = innermost(sys._getframe(1), mine)  # a re-entered RLock does not come here
            return add_holding(graph, thread, lock, kind)

        def waiting(graph: Any, thread: int, lock: int, kind: str = "lock") -> Any:
            idents[thread] = threading.get_ident()
            cycle = add_waiting(graph, thread, lock, kind)
            if cycle and not witness.cycle:  # thread -> lock it waits for -> thread holding it -> ...
                context = get_context()
                stable = getattr(getattr(context[0], "_stable_ids", None), "_map", None) if context else None
                frames, nodes = sys._current_frames(), cycle[:-1]
                for i, (kind_, ident) in enumerate(nodes):
                    if kind_ == "thread":
                        witness.aliases.update(_aliases(frames.get(idents.get(ident, -1)), mine))
                        witness.waiting[ident] = innermost(frames.get(idents.get(ident, -1)), mine)
                        lock_held = format_cycle([nodes[i - 1]], lock_id_map=stable)
                        witness.taken[(ident, lock_held)] = held.get((ident, nodes[i - 1][1]))
                witness.cycle = format_cycle(cycle, lock_id_map=stable)
            return cycle

        def cleared(graph: Any) -> Any:  # once per execution
            witness.runs += 1
            held.clear()
            return clear(graph)

        def timed_out(scheduler: Any, alive: list[threading.Thread]) -> Any:
            if not witness.stalled:
                frames = sys._current_frames()
                witness.stalled = [(t.name, innermost(frames.get(t.ident or -1), mine)) for t in alive]
            return on_timeout(scheduler, alive)

        # One run's bound (frontrun's timeout_per_run) is counted in fair seconds too.
        join = worker_set.ThreadWorkerSet.join
        worker_set.ThreadWorkerSet.join = lambda _self, handles, timeout: fair_join(list(handles), timeout)
        self._undo.append(lambda: setattr(worker_set.ThreadWorkerSet, "join", join))
        WaitForGraph.add_holding, WaitForGraph.add_waiting, WaitForGraph.clear = holding, waiting, cleared
        runner.notify_scheduler_timeout = timed_out
        self._undo.append(lambda: setattr(runner, "notify_scheduler_timeout", on_timeout))
        for name, original in (("add_holding", add_holding), ("add_waiting", add_waiting), ("clear", clear)):
            self._undo.append(lambda name=name, original=original: setattr(WaitForGraph, name, original))


_NODE = re.compile(r"\b(thread|lock|row_lock) (\S+)")
_LOCK_EXPRESSION = re.compile(r"^with\s+(.+?)\s*:|^(.+?)\.acquire\(")


def _thread_name(index: int, names: Sequence[str] | None) -> str:
    return names[index] if names and 0 <= index < len(names) else f"thread {index}"


def describe_deadlock(report: Any, witness: Witness | None = None,
                      names: Sequence[str] | None = None) -> tuple[Wait, ...]:
    """The threads of frontrun's lock cycle: what each holds and waits for, and at which
    lines, from the Witness of that exploration. report is an InterleavingResult, the lab's
    Exploration, a DeadlockError or the cycle's text; without a witness the lines stay empty.
    names[i] names frontrun's thread i (the lab's worker labels)."""
    text = witness.cycle if witness is not None and witness.cycle else (
        report if isinstance(report, str) else
        getattr(report, "cycle_description", None) or getattr(report, "explanation", None) or "")
    cycle = next((line for line in text.splitlines() if "->" in line), "")
    nodes = [f"{kind} {ident}" for kind, ident in _NODE.findall(cycle)]
    if len(nodes) > 1 and nodes[0] == nodes[-1]:
        nodes = nodes[:-1]
    taken = witness.taken if witness is not None else {}
    waiting = witness.waiting if witness is not None else {}
    threads = [(int(node.split()[1]), nodes[i - 1], nodes[(i + 1) % len(nodes)])  # (thread, holds, waits for)
               for i, node in enumerate(nodes) if node.startswith("thread ")]
    # Name each lock after the expression the learner took it with (self._lock), where there is one.
    spelled = {holds: _spelled(source_of(taken.get((index, holds)))) for index, holds, _ in threads}
    spelled.update({wants: spelled.get(wants) or _spelled(source_of(waiting.get(index))) for index, _, wants in threads})

    aliases = witness.aliases if witness is not None else {}
    spelled = {lock: aliases.get(name, name) for lock, name in spelled.items()}

    def label(lock: str) -> str:
        name = spelled.get(lock, "")
        if not name:
            return lock
        return f"{name} ({lock})" if list(spelled.values()).count(name) > 1 else name

    return tuple(wait_of(_thread_name(index, names), waiting.get(index), waits_for=label(wants),
                       holds=(held_of(label(holds), taken.get((index, holds))),))
                 for index, holds, wants in sorted(threads))


def _aliases(frame: Any, mine: Callable[[str], bool]) -> dict[str, str]:
    """Local names in the implementation's frames that stand for one of self's attributes (first =
    self._db_lock): a lock is named as the class names it, whatever a sorted pair calls it."""
    found: dict[str, str] = {}
    while frame is not None:
        if mine(frame.f_code.co_filename):
            local = frame.f_locals
            owner = local.get("self")
            attributes = getattr(owner, "__dict__", None) if owner is not None else None
            if isinstance(attributes, dict):
                for name, value in local.items():
                    if name == "self" or isinstance(value, (int, float, str, bool, type(None))):
                        continue
                    attribute = next((a for a, v in attributes.items() if v is value), None)
                    if attribute is not None:
                        found.setdefault(name, f"self.{attribute}")
        frame = frame.f_back
    return found


def _spelled(text: str) -> str:
    match = _LOCK_EXPRESSION.match(text)
    return next((group for group in match.groups() if group), "") if match else ""


def explore_bounded(explore: Callable[[], T], *, seconds: float, label: str, files: Files = None,
                    names: Sequence[str] | None = None, per_run: float | None = None, most: float = 0.0) -> T:
    """explore() (one frontrun exploration, driven as sessionlab.engines.exploration does, with
    timeout_per_run=per_run); Hang if it found a lock cycle, if one run stalled past frontrun's
    timeout_per_run, or if no run began for seconds. With most, OutOfTime when it is still
    running executions after most seconds: a slow search, not a hang."""

    files = None if files is None else list(files)

    def rename(wait: Wait) -> Wait:
        worker = re.fullmatch(r"dpor-(\d+)", wait.thread)
        return replace(wait, thread=_thread_name(int(worker.group(1)), names)) if worker else wait

    with Witness(files) as witness:
        try:
            progress = (lambda: witness.runs) if most else None
            result = run_bounded(explore, seconds=seconds, label=label, files=files, progress=progress, most=most)
            cause = None
        except Hang as hang:
            raise Hang(hang.seconds, label, map(rename, hang.waits), deadlock=hang.deadlock) from None
        except Exception as error:  # sessionlab.engines.exploration raises on an inconclusive search
            if not witness.stalled:
                raise
            result, cause = None, error
    if witness.cycle:
        raise Hang(None, label, describe_deadlock(result, witness, names), deadlock=True)
    if witness.stalled and (cause is not None or getattr(result, "property_holds", False) is None):
        waits = [rename(wait_of(name, where)) for name, where in witness.stalled]
        raise Hang(per_run, label, [wait for wait in waits if wait.file] or waits) from cause
    return result
