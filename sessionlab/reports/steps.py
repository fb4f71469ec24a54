"""From frontrun's events to the report's steps: the lines each thread ran, what they touched.

``build_steps`` groups the events of the execution that broke
(``sessionlab.engines.exploration.capture``) into source lines and steps (what one thread ran
before the scheduler switched), with the accesses and lock operations of each
line; the lines of a traced framework show under the line of the
implementation that called into it. ``masked`` writes the scenario's session
id as ``s`` everywhere in them.
"""

from __future__ import annotations

import linecache
import sys
from collections import OrderedDict, deque
from dataclasses import replace
from pathlib import Path
from typing import Any

from sessionlab.reports.trace import Access, Event, Line, LockOp, Step

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
