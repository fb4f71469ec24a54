"""The race report: what broke, why in one sentence, and the interleaving step by step.

frontrun records every shared access of the execution that broke, and the lab
records the locks each thread took, released and waited for
(``sessionlab.exploration``). The report groups them into source lines and
steps (what one thread ran before the scheduler switched), labels what each
line read or wrote and the values it saw, says in one sentence what went wrong
(derived from the accesses: two threads read the same state before either
wrote it back, say), and lays the steps out one column per thread, wrapped to
the terminal (``sessionlab.report_text``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from sessionlab.bugs import Bug
from sessionlab.figure import Figure, plural
from sessionlab.report_text import explain, interleaving, wrap

# Enough for a complete search of every scenario here on fixed; reported if reached.
MAX_EXECUTIONS = 20_000


@dataclass(frozen=True)
class Event:
    """One thing a thread did in the execution that broke: a shared access or a lock operation."""

    thread: int
    filename: str
    lineno: int
    function: str = ""  # qualified name of the function that ran it
    kind: str | None = None  # "read" or "write", for an access
    attr: str | None = None  # the attribute, key or method name touched
    owner: str | None = None  # the type name of the object touched
    obj: int | None = None  # id() of the object touched
    value: str | None = None  # repr of the value read or stored, when short and plain
    value_id: int | None = None  # id() of that value
    lock: str = ""  # "take", "release", "wait" or "busy", for a lock operation
    lock_name: str = ""  # how the code names the lock: "self._lock"
    holder: int | None = None  # the thread that held the lock a thread waits for
    callable: bool = False  # the value read is a function: a method lookup, not state
    callers: tuple[tuple[str, int, str], ...] = ()  # (file, line, function) of the calling frames, innermost first


@dataclass(frozen=True)
class Access:
    """Shared state one line read or wrote."""

    kind: str  # "read" or "write"
    target: str  # "_Record.access_count", "SessionManager._sessions['s1']", "SessionManager._cleanup_queue"
    method: str = ""  # a container method called: "pop", "clear", "get"
    value: str | None = None  # what was read or stored, when short and plain
    state: tuple[int | None, str | None] = (None, None)  # (id of the object, attribute or key; None: all of it)
    value_id: int | None = None  # id() of the object read (a read of a container attribute)

    @property
    def label(self) -> str:
        if self.method:
            return f"{self.target}.{self.method}() {'writes' if self.kind == 'write' else 'reads'}"
        return f"{self.kind} {self.target}"

    @property
    def shown(self) -> str:
        return self.label if self.value is None or self.method else f"{self.label} = {self.value}"


@dataclass(frozen=True)
class LockOp:
    """A lock a thread took, released or waited for."""

    op: str  # "take", "release", "wait", or "busy" (a try that found it held)
    lock: str  # "self._lock"
    holder: int | None = None  # for a wait: the thread holding the lock

    def __str__(self) -> str:
        held = f" (held by thread {self.holder})" if self.holder is not None else ""
        if self.op == "wait":
            return f"waits for {self.lock}{held}"
        if self.op == "busy":  # a try that did not block
            return f"tries {self.lock}: busy{held}"
        return f"{'takes' if self.op == 'take' else 'releases'} {self.lock}"


@dataclass(frozen=True)
class Line:
    """One source line a thread ran, with the shared state it touched and the locks it used."""

    location: str  # file:line
    source: str
    accesses: tuple[str, ...]  # e.g. "read _Record.access_count", "SessionManager._sessions.pop() writes"
    touched: tuple[Access, ...] = ()  # the same accesses, with the values read and stored
    locks: tuple[LockOp, ...] = ()
    function: str = ""  # qualified name of the function the line is in
    calls: tuple[str, ...] = ()  # locations of the calls it runs under, from the worker's own method inward
    doc: str = ""  # what its function does: the first sentence of its docstring
    path: str = ""  # a framework's file, named from its package: django/core/cache/backends/locmem.py


@dataclass(frozen=True)
class Step:
    """A run of lines one thread ran before the scheduler switched to another."""

    thread: int
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class RaceReport:
    bug: Bug
    implementation: str
    scenario: Any  # the RaceScenario: its story and its workers' labels
    held: bool
    explored: int
    complete: bool  # the search ran out of interleavings, not out of budget
    seconds: float
    figure: Figure | None = None  # the broken figure, when an interleaving broke
    steps: tuple[Step, ...] = ()
    conflict: str = ""  # frontrun's one-line account of the conflict
    reproduced: tuple[int, int] = (0, 0)  # (successes, attempts) replaying the schedule
    schedule: tuple[int, ...] = ()
    explanation: str = ""  # frontrun's own explanation, verbatim
    scope: str = ""  # what the search could see: "complete over the code of ...; not traced: ..."
    preemptions: int | None = None  # the search was complete under this preemption bound (None: no bound)

    @property
    def message(self) -> str:
        if self.held:
            extent = "every interleaving" if self.complete else "every interleaving explored"
            if self.complete and self.preemptions is not None:
                extent = f"every interleaving with at most {plural(self.preemptions, 'preemption')}"
            scope = f"; {self.scope}" if self.scope and self.complete else ""
            return f"{self.bug.slug}: {extent} holds ({self.explored} explored{scope})"
        return f"{self.bug.slug}: {self.headline} (found after exploring " \
               f"{plural(self.explored, 'interleaving')}, {self.implementation})"

    @property
    def headline(self) -> str:
        """The figure that broke, in words."""
        figure = self.figure
        if figure is not None and figure.summary:
            return figure.summary
        if figure is not None and "?" not in (figure.expected, figure.got):
            return f"expected {figure.expected}, got {figure.got}"
        first = self.explanation.strip().splitlines()[0] if self.explanation.strip() else ""
        return first or "an interleaving broke the scenario's invariant"

    @property
    def why(self) -> str:
        """One sentence: what went wrong between the threads, derived from their accesses."""
        sentence = explain(self.steps).sentence if self.steps else ""
        return sentence or getattr(self.scenario, "why", "") or self.conflict

    def text(self, width: int | None = None, verbose: bool = False) -> str:
        """The report a learner reads: what broke and why, then the interleaving.

        Lines inside helper calls that are not where the race is are folded
        into one line per call; ``verbose`` shows them.
        """
        width = width or max(80, min(140, shutil.get_terminal_size((100, 24)).columns))
        bug = self.bug
        lines = [*wrap(f"{bug.slug} (bug {bug.number}, {bug.bug_class}) on {self.implementation}: "
                       f"{'HOLDS' if self.held else 'BROKEN'}", width)]
        if self.held:
            extent = ("the search was complete: every meaningfully different interleaving was run, "
                      + (self.scope or f"over the code of {self.implementation}")
                      if self.complete else f"the search stopped at its budget of {MAX_EXECUTIONS} executions")
            if self.complete and self.preemptions is not None:
                extent = (f"the search was complete up to {plural(self.preemptions, 'preemption')}: every "
                          f"interleaving in which threads are interrupted at most "
                          f"{'once' if self.preemptions == 1 else f'{self.preemptions} times'} was run, "
                          f"{self.scope}; a search of every interleaving, through the framework's code, "
                          f"would take too long")

            lines += wrap(f"All {plural(self.explored, 'interleaving')} explored hold ({extent}).", width, "  ")
            lines += ["", *self._scenario(width)]
            return "\n".join(lines)
        lines += wrap(_sentence(self.headline), width, "  ")
        if self.why:
            lines += wrap(f"Why: {_sentence(self.why)}", width, "  ", "       ")
        lines += ["", *self._scenario(width)]
        lines += wrap(f"Found after exploring {plural(self.explored, 'interleaving')} ({self.seconds:.2f} s).",
                      width)
        lines.append("")
        if self.steps:
            lines += interleaving(self.steps, self.scenario.workers, width, verbose)
        else:
            lines += [part for line in self.explanation.splitlines() for part in wrap(line, width)]
        lines.append("")
        successes, attempts = self.reproduced
        if attempts:
            lines += wrap(f"Replayed {successes} of {attempts} times with the same outcome.", width)
        lines += wrap(f"Replay: sessionlab race {bug.slug} --impl {self.implementation}  (the search is "
                      f"deterministic: it finds this interleaving again)", width, "", "  ")
        return "\n".join(lines)

    def _scenario(self, width: int) -> list[str]:
        lines = wrap(f"Scenario: {_sentence(self.scenario.story)}", width)
        for n, worker in enumerate(self.scenario.workers):
            lines += wrap(f"thread {n}: {worker.label}", width, "  ", "    ")
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "bug": self.bug.slug,
            "implementation": self.implementation,
            "held": self.held,
            "explored": self.explored,
            "complete": self.complete,
            "seconds": round(self.seconds, 3),
            "scope": self.scope,
            "figure": None if self.figure is None else vars(self.figure),
            "headline": None if self.held else self.headline,
            "why": None if self.held else self.why,
            "racing": sorted(explain(self.steps).names) if self.steps else [],
            "steps": [
                {"thread": step.thread, "lines": [
                    {"location": line.location, "source": line.source, "accesses": list(line.accesses),
                     "values": [access.shown for access in line.touched],
                     "locks": [str(op) for op in line.locks], "function": line.function,
                     "calls": list(line.calls)}
                    for line in step.lines
                ]}
                for step in self.steps
            ],
            "locks": [
                {"step": number, "thread": step.thread, "location": line.location, "op": op.op,
                 "lock": op.lock, "holder": op.holder, "text": str(op)}
                for number, step in enumerate(self.steps, 1) for line in step.lines for op in line.locks
            ],
            "conflict": self.conflict,
            "reproduced": {"successes": self.reproduced[0], "attempts": self.reproduced[1]},
            "schedule": list(self.schedule),
            "message": self.message,
        }


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."
