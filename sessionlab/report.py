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

import linecache
import shutil
import sys
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from pathlib import Path
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


# -- From frontrun's events to steps ----------------------------------------------------

# Container methods that change their container, for labelling what a line wrote.
_MUTATORS = frozenset({
    "append", "appendleft", "extend", "insert", "pop", "popleft", "popitem", "remove",
    "clear", "update", "setdefault", "add", "discard",
})
_CONTAINER_TYPES: dict[str, type] = {"dict": dict, "list": list, "set": set, "deque": deque,
                                     "OrderedDict": OrderedDict}


def build_steps(events: list[Any], module: Any, frameworks: tuple[str, ...] = ()) -> tuple[Step, ...]:
    """Turn the recorded events into steps: source lines grouped by thread.

    Only lines in the implementation's own files are kept, and lines of the
    traced framework packages (``frameworks``: their folders) it called.
    Method lookups are left out; attribute and key reads and writes are kept,
    and a call of a container method that changes the container is shown as a
    write. Lock operations are kept on the line that did them (a ``with``
    block's release on its ``with`` line, where it happens: after the block's
    last line).
    """
    files = _source_files_of(module)
    classes = {name: getattr(module, name, None) for name in dir(module)}
    for submodule in _submodules(module):
        classes.update({name: getattr(submodule, name) for name in dir(submodule)})
    roots = tuple(str(Path(root)) + "/" for root in frameworks)

    def framework(filename: str) -> bool:
        return bool(roots) and filename.startswith(roots)

    def own(filename: str) -> bool:
        return bool(filename) and not filename.startswith("<") and (Path(filename).name in files
                                                                     or framework(filename))

    if roots:
        classes.update(_classes_in(roots, {_as_event(event).filename for event in events}))
    grouped: list[tuple[tuple[Any, ...], list[Event]]] = []  # (thread, file, line, calls, function), events
    last_own: dict[int, tuple[Any, ...]] = {}  # each thread's last line in the implementation's files
    for event in events:
        event = _as_event(event)
        if not own(event.filename):
            continue
        calls: list[str] = []
        for filename, number, _ in event.callers:
            if framework(filename):
                continue  # a framework's lines show one level under the line of ours that called it
            if not own(filename):
                break
            calls.insert(0, f"{Path(filename).name}:{number}")
        if framework(event.filename):  # show the line of ours that called into the framework
            caller = next((frame for frame in event.callers if own(frame[0]) and not framework(frame[0])), None)
            if caller is not None and calls:
                ours = (event.thread, caller[0], caller[1], tuple(calls[:-1]), caller[2])
                if last_own.get(event.thread) != ours:
                    grouped.append((ours, []))
                    last_own[event.thread] = ours
        key = (event.thread, event.filename, event.lineno, tuple(calls), event.function)
        if not framework(event.filename):
            last_own[event.thread] = key
        if not grouped or grouped[-1][0] != key:
            grouped.append((key, []))
        grouped[-1][1].append(event)
    steps: list[Step] = []
    docs: dict[str, str] = {}
    for (thread, filename, number, calls, function), line_events in grouped:
        source = linecache.getline(filename, number).strip()
        touched = () if source.startswith("with ") else _describe_accesses(line_events, classes)
        locks = tuple(LockOp(event.lock, event.lock_name or "a lock", event.holder)
                      for event in line_events if event.lock)
        if function not in docs:
            docs[function] = _docstring(function, classes)
        path = _location(filename, number, roots).rsplit(":", 1)[0] if framework(filename) else ""
        line = Line(f"{Path(filename).name}:{number}", source, tuple(access.label for access in touched),
                    touched, locks, function, calls, docs[function], path)
        if steps and steps[-1].thread == thread:
            steps[-1] = Step(thread, steps[-1].lines + (line,))
        else:
            steps.append(Step(thread, (line,)))
    return tuple(steps)


def _as_event(event: Any) -> Event:
    """The lab's Event, from itself or from a frontrun TraceEvent (no values, no locks)."""
    if isinstance(event, Event):
        return event
    return Event(event.thread_id, getattr(event, "filename", "") or "", event.lineno,
                 getattr(event, "function_name", ""), event.access_type, event.attr_name, event.obj_type_name)


def _describe_accesses(events: list[Event], classes: dict[str, Any]) -> tuple[Access, ...]:
    """What one line read and wrote, e.g. "read SessionManager._sessions['s1']"."""
    found: list[Access] = []
    holder: Access | None = None  # the attribute just read, if the next access is to its contents
    for event in events:
        kind, owner, attr = event.kind, event.owner, event.attr
        if kind is None or owner is None or attr is None:
            continue
        if owner in _CONTAINERS:
            target = holder.target if holder else owner
            if hasattr(_CONTAINER_TYPES[owner], attr):
                write = attr in _MUTATORS
                access = Access("write" if write else "read", target, attr, None, (event.obj, None))
            else:
                access = Access(kind, f"{target}[{attr!r}]", "", event.value, (event.obj, attr), event.value_id)
            if holder and found and found[-1] == holder:
                found.pop()
            holder = None
        else:
            cls = classes.get(owner)
            if not isinstance(cls, type) or callable(getattr(cls, attr, None)) or event.callable:
                holder = None
                continue  # a method lookup, or state that is not the implementation's own
            access = Access(kind, f"{owner}.{attr}", "", event.value, (event.obj, attr), event.value_id)
            holder = access if kind == "read" else None
        if all(access.label != seen.label for seen in found):
            found.append(access)
    return tuple(found)


_CONTAINERS = frozenset(_CONTAINER_TYPES)


# First words of a docstring that are not an imperative verb to conjugate ("The session as stored").
_NOT_VERBS = frozenset({"the", "a", "an", "one", "this", "that", "these", "those", "every", "each", "all", "what",
                        "whether", "how", "when", "which", "who", "its", "their", "no", "any", "some", "how"})


def _docstring(qualname: str, classes: dict[str, Any]) -> str:
    """The first sentence of a function's docstring, as a phrase: "returns the live record ..."."""
    outer, _, rest = qualname.partition(".")
    function = classes.get(outer)
    for part in rest.split(".") if rest else ():
        function = getattr(function, part, None)
    doc = (getattr(function, "__doc__", None) or "").strip() if callable(function) else ""
    first = doc.split("\n\n")[0].replace("\n", " ").split(". ")[0].split("; ")[0].rstrip(".")
    verb, _, rest = first.partition(" ")
    if verb[:1].isupper() and verb[1:].islower() and not verb.endswith("s") and verb.lower() not in _NOT_VERBS:
        verb = verb.lower()
        verb = (verb[:-1] + "ies" if verb.endswith("y") and verb[-2:-1] not in "aeiou"
                else verb + ("es" if verb.endswith(("sh", "ch", "x", "z")) else "s"))
    return f"{verb} {rest}".strip()


def masked(steps: tuple[Step, ...], session_ids: set[str], name: str = "s") -> tuple[Step, ...]:
    """The steps with every session id written as ``name``, as the scenario's heading writes it.

    A framework keeps a session under a key built from its id
    (':1:django.contrib.sessions.cache' + id): the report shows it as
    ``'...cache' + s``, short, and the same in every execution.
    """
    ids = sorted((i for i in session_ids if i), key=len, reverse=True)
    if not ids:
        return steps

    def hide(text: str | None) -> str | None:
        if text is None:
            return None
        for session_id in ids:
            text = text.replace(f"{session_id}'", f"' + {name}").replace(f"'' + {name}", name)
            text = text.replace(session_id, name)
        return text

    def line_of(line: Line) -> Line:
        touched = tuple(replace(access, target=hide(access.target) or "", value=hide(access.value))
                        for access in line.touched)
        return replace(line, touched=touched, accesses=tuple(access.label for access in touched) or
                       tuple(hide(access) or "" for access in line.accesses))

    return tuple(Step(step.thread, tuple(line_of(line) for line in step.lines)) for step in steps)


def _location(filename: str, number: int, roots: tuple[str, ...]) -> str:
    """file:line, the file named from its package for a framework's file: django/core/cache/backends/locmem.py:47."""
    root = next((root for root in roots if filename.startswith(root)), None)
    if root is None:
        return f"{Path(filename).name}:{number}"
    return f"{Path(root).name}/{filename[len(root):]}:{number}"


def _classes_in(roots: tuple[str, ...], filenames: set[str]) -> dict[str, Any]:
    """The classes defined in the framework modules of these files, by name."""
    found: dict[str, Any] = {}
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) in filenames and str(module.__file__).startswith(roots):
            found.update({name: value for name, value in vars(module).items() if isinstance(value, type)})
    return found


def _submodules(module: Any) -> list[Any]:
    prefix = module.__name__ + "."
    return [m for name, m in list(sys.modules.items()) if name.startswith(prefix) and m is not None]


def _source_files_of(module: Any) -> frozenset[str]:
    origin = Path(getattr(module, "__file__", "") or "")
    if origin.name == "__init__.py":
        return frozenset(path.name for path in origin.parent.glob("*.py"))
    return frozenset({origin.name})
