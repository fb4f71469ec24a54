"""The race report: the interleaving that broke, one column per thread, and the figure.

frontrun records every shared access of the execution that broke; the report
groups them into source lines and steps (what one thread ran before the
scheduler switched), labels what each line read or wrote, and lays the steps
out one column per thread.
"""

from __future__ import annotations

import linecache
import shutil
import sys
import textwrap
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sessionlab.bugs import Bug
from sessionlab.figure import Figure, plural

# Enough for a complete search of every scenario here on fixed; reported if reached.
MAX_EXECUTIONS = 20_000

@dataclass(frozen=True)
class Line:
    """One source line a thread ran, with the shared state it touched."""

    location: str  # file:line
    source: str
    accesses: tuple[str, ...]  # e.g. "write _Record.access_count", "dict.pop() writes"


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

    @property
    def message(self) -> str:
        if self.held:
            extent = "every interleaving" if self.complete else "every interleaving explored"
            scope = f"; {self.scope}" if self.scope and self.complete else ""
            return f"{self.bug.slug}: {extent} holds ({self.explored} explored{scope})"
        assert self.figure is not None
        return (f"{self.bug.slug}: {self.figure.summary} (found after exploring "
                f"{plural(self.explored, 'interleaving')}, {self.implementation})")

    def text(self, width: int | None = None) -> str:
        """The report a learner reads: the bug, the interleaving, the figure."""
        width = width or max(80, min(140, shutil.get_terminal_size((100, 24)).columns))
        bug = self.bug
        lines = [f"{bug.slug} (bug {bug.number}, {bug.bug_class}) on {self.implementation}"]
        lines.append(f"Scenario: {self.scenario.story}.")
        lines += [f"  thread {n}: {worker.label}" for n, worker in enumerate(self.scenario.workers)]
        lines.append("")
        if self.held:
            extent = ("the search was complete: every meaningfully different interleaving was run, "
                      + (self.scope or f"over the code of {self.implementation}")
                      if self.complete else f"the search stopped at its budget of {MAX_EXECUTIONS} executions")
            lines.append(f"HOLDS: all {plural(self.explored, 'interleaving')} explored hold ({extent}).")
            return "\n".join(lines)
        assert self.figure is not None
        lines.append(f"BROKEN after exploring {plural(self.explored, 'interleaving')} ({self.seconds:.2f} s).")
        lines.append(f"Expected: {self.figure.expected}    Got: {self.figure.got}")
        lines.append(textwrap.fill(self.figure.summary, width, initial_indent="  ", subsequent_indent="  "))
        lines.append("")
        if self.steps:
            lines.append("The interleaving: each step is what one thread ran before the scheduler switched")
            lines.append("threads; shared state each line touched is in brackets.")
            lines.append("")
            lines += _columns(self.steps, self.scenario.workers, width)
        else:
            lines.append(self.explanation)
        lines.append("")
        successes, attempts = self.reproduced
        replay = f"sessionlab race {bug.slug} --impl {self.implementation}"
        if attempts:
            lines.append(f"Replayed {successes} of {attempts} times with the same outcome.")
        lines.append(f"Replay: {replay}  (the search is deterministic: it finds this interleaving again)")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "bug": self.bug.slug,
            "implementation": self.implementation,
            "held": self.held,
            "explored": self.explored,
            "complete": self.complete,
            "seconds": round(self.seconds, 3),
            "figure": None if self.figure is None else vars(self.figure),
            "steps": [
                {"thread": step.thread, "lines": [
                    {"location": line.location, "source": line.source, "accesses": list(line.accesses)}
                    for line in step.lines
                ]}
                for step in self.steps
            ],
            "conflict": self.conflict,
            "reproduced": {"successes": self.reproduced[0], "attempts": self.reproduced[1]},
            "schedule": list(self.schedule),
            "message": self.message,
        }


def _columns(steps: tuple[Step, ...], workers: tuple[Any, ...], width: int) -> list[str]:
    threads = len(workers)
    column = max(36, (width - 6) // threads)
    files = {line.location.rsplit(":", 1)[0] for step in steps for line in step.lines}
    one_file = files.pop() if len(files) == 1 else None
    heading = "step  " + "".join(f"thread {n}: {worker.label}"[: column - 2].ljust(column)
                                 for n, worker in enumerate(workers))
    lines = [f"(line numbers of {one_file})"] if one_file else []
    lines += [heading.rstrip(), ("-" * (6 + column * threads))[:width]]
    for number, step in enumerate(steps, 1):
        indent = " " * (column * step.thread)
        for row, line in enumerate(step.lines):
            location = line.location.rsplit(":", 1)[1].rjust(3) if one_file else line.location
            cells = [f"{location}  {line.source}"] + [f"       [{access}]" for access in line.accesses]
            for offset, cell in enumerate(cells):
                if len(cell) > column - 1 and step.thread < threads - 1:
                    cell = cell[: column - 4] + "..."
                prefix = f"{number:>4}  " if row == 0 and offset == 0 else "      "
                lines.append((prefix + indent + cell).rstrip())
    return lines


# Container methods that change their container, for labelling what a line wrote.
_MUTATORS = frozenset({
    "append", "appendleft", "extend", "insert", "pop", "popleft", "popitem", "remove",
    "clear", "update", "setdefault", "add", "discard",
})
_CONTAINERS = frozenset({"dict", "list", "deque", "set"})


def build_steps(events: list[Any], module: Any) -> tuple[Step, ...]:
    """Turn frontrun's recorded events into steps: source lines grouped by thread.

    Only lines in the implementation's own files are kept. Method lookups are
    left out; attribute and key reads and writes are kept, and a call of a
    container method that changes the container is shown as a write.
    """
    files = _source_files_of(module)
    classes = {name: getattr(module, name, None) for name in dir(module)}
    for submodule in _submodules(module):
        classes.update({name: getattr(submodule, name) for name in dir(submodule)})
    lines: list[tuple[int, str, int, list[Any]]] = []  # thread, file, line number, events
    for event in events:
        filename = getattr(event, "filename", "") or ""
        if filename.startswith("<") or Path(filename).name not in files:
            continue
        key = (event.thread_id, filename, event.lineno)
        if not lines or lines[-1][:3] != key:
            lines.append((*key, []))
        lines[-1][3].append(event)
    steps: list[Step] = []
    for thread, filename, number, line_events in lines:
        source = linecache.getline(filename, number).strip()
        accesses = () if source.startswith("with ") else _describe_accesses(line_events, classes)
        line = Line(f"{Path(filename).name}:{number}", source, accesses)
        if steps and steps[-1].thread == thread:
            steps[-1] = Step(thread, steps[-1].lines + (line,))
        else:
            steps.append(Step(thread, (line,)))
    return tuple(steps)


def _describe_accesses(events: list[Any], classes: dict[str, Any]) -> tuple[str, ...]:
    """Label what one line read and wrote, e.g. "read SessionManager._sessions['s1']"."""
    labels: list[str] = []
    holder = ""  # the attribute just read, if the next access is to its contents
    for event in events:
        kind, owner, attr = event.access_type, event.obj_type_name, event.attr_name
        if kind is None or owner is None or attr is None:
            continue
        if owner in _CONTAINERS:
            target = holder or owner
            if hasattr(_CONTAINER_TYPES[owner], attr):
                if attr in _MUTATORS:
                    label = f"{target}.{attr}() writes"
                else:
                    label = f"{target}.{attr}() reads"
            else:
                label = f"{kind} {target}[{attr!r}]"
            if holder and labels and labels[-1] == f"read {holder}":
                labels.pop()
            holder = ""
        else:
            cls = classes.get(owner)
            if not isinstance(cls, type) or callable(getattr(cls, attr, None)):
                holder = ""
                continue  # a method lookup, or state that is not the implementation's own
            label = f"{kind} {owner}.{attr}"
            holder = f"{owner}.{attr}" if kind == "read" else ""
        if label not in labels:
            labels.append(label)
    return tuple(labels)


_CONTAINER_TYPES: dict[str, type] = {"dict": dict, "list": list, "set": set, "deque": deque}


def _submodules(module: Any) -> list[Any]:
    prefix = module.__name__ + "."
    return [m for name, m in list(sys.modules.items()) if name.startswith(prefix) and m is not None]


def _source_files_of(module: Any) -> frozenset[str]:
    origin = Path(getattr(module, "__file__", "") or "")
    if origin.name == "__init__.py":
        return frozenset(path.name for path in origin.parent.glob("*.py"))
    return frozenset({origin.name})


