"""What a thread did in the execution that broke, as the reports show it.

The exploration records every shared access and lock operation of that
execution as an ``Event`` (``sessionlab.engines.exploration.capture``);
``sessionlab.reports.steps`` groups the events into the source ``Line``s each
thread ran and the ``Step``s between two switches, each line with the
``Access``es it made and the ``LockOp``s it did.
"""

from __future__ import annotations

from dataclasses import dataclass


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
