"""Capturing frontrun's whole event stream, for the race report.

frontrun's own trace of a failing run leaves out what the report needs: it sees
``dict.pop`` only as a method lookup, and it keeps no record of lock takes and
releases. While an exploration runs, ``capturing_trace(events)`` hooks frontrun's
trace recorder and its cooperative locks, and turns every access and lock
operation into the lab's ``Event``: the thread, the line, what was read or
written and its value, where each lock was taken, released or waited for.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from sessionlab.engines.untraced import UNTRACED, untraced
from sessionlab.reports.trace import Event


@contextmanager
def capturing_trace(sink: list[Any]) -> Iterator[None]:
    """Keep what the threads of the failing execution did, for the report.

    frontrun explains a failure from the shared accesses it saw conflict; the lab
    shows every line the threads ran, so it keeps every access frontrun recorded,
    with the value each read saw and each write stored (when short and plain) and
    the calls it ran inside, and the lock operations frontrun's cooperative locks
    report to its scheduler (taken, released, waited for), in the order they
    happened. ``sink`` receives the failing execution's events as
    ``sessionlab.reports.race.Event``.
    """
    try:
        from frontrun import _cooperative
        from frontrun._dpor_runtime import explore as dpor_explore
        from frontrun._trace_format import TraceRecorder
        lock_classes = [cls for cls in (_cooperative.CooperativeLock, _cooperative.CooperativeRLock)
                        if callable(getattr(cls, "_report", None))]
        # A capture left behind by a hung run still has its hooks in; hook what is under them.
        original_format = _unhooked(dpor_explore.format_trace)
        original_record = _unhooked(TraceRecorder.record)
        originals = {cls: _unhooked(cls._report) for cls in lock_classes}
    except (ImportError, AttributeError):
        yield  # another frontrun layout: the report falls back to frontrun's explanation
        return
    capture = _Capture(_cooperative.get_context)

    def format_trace(events: list[Any], **options: Any) -> str:
        sink[:] = capture.events_for(events)
        return original_format(events, **options)

    format_trace._sessionlab_original = original_format  # type: ignore[attr-defined]
    hooks: list[tuple[Any, str, Any, Any]] = [(dpor_explore, "format_trace", format_trace, original_format),
                                              (TraceRecorder, "record", _Hook(capture.record, original_record),
                                               original_record)]
    hooks += [(cls, "_report", _Hook(capture.lock, originals[cls]), originals[cls]) for cls in lock_classes]
    for owner, name, hook, _ in hooks:
        setattr(owner, name, hook)
    try:
        yield
    finally:
        for owner, name, hook, original in hooks:
            if vars(owner).get(name) is hook:  # a later capture's hook stays until that one ends
                setattr(owner, name, original)


def _unhooked(value: Any) -> Any:
    """What a capture's hook stands in for (the value itself when it is not a hook)."""
    while isinstance(value, _Hook) or hasattr(value, "_sessionlab_original"):
        value = value.original if isinstance(value, _Hook) else value._sessionlab_original
    return value


_LOCK_OPS = {"lock_acquire": "take", "lock_release": "release", "lock_wait": "wait", "lock_attempt_fail": "busy"}
_PLAIN = (int, float, str, bool, type(None), bytes)
_MISSING = object()


class _Hook:
    """A method replaced by one of the capture's: it calls method(instance, original, ...)."""

    def __init__(self, method: Callable[..., Any], original: Callable[..., Any]):
        self.method, self.original = method, original

    @untraced
    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return functools.partial(self.method, instance, self.original)


class _Capture:
    """The lab's events of the last few executions, by frontrun's recorder (one per execution).

    The replays of a failure record too, so the failing execution's events are
    found by the identity of its recorder's event list.
    """

    def __init__(self, get_context: Callable[[], Any]):
        self.get_context = get_context
        self.frontrun_dir = os.path.dirname(os.path.abspath(sys.modules["frontrun"].__file__)) + os.sep
        # id(recorder) -> (recorder, events, writes whose stored value is not known yet)
        self.recorders: dict[int, tuple[Any, list[Event], list[tuple[int, Any, str]]]] = {}

    @untraced
    def events_of(self, recorder: Any) -> list[Event]:
        entry = self.recorders.get(id(recorder))
        if entry is None or entry[0] is not recorder:
            if len(self.recorders) >= 4:
                self.recorders.pop(next(iter(self.recorders)))
            entry = self.recorders[id(recorder)] = (recorder, [], [])
        _settle(entry[1], entry[2])  # a write is recorded just before it runs; by now it has run
        return entry[1]

    def events_for(self, trace: list[Any]) -> list[Event]:
        for recorder, events, pending in self.recorders.values():
            if recorder.events is trace:
                _settle(events, pending)
                return list(events)
        return [_access_event(event, None, None) for event in trace]

    @untraced
    def record(self, recorder: Any, original: Callable[..., None], thread_id: int, frame: Any,
               opcode: Any = None, access_type: Any = None, attr_name: Any = None, obj: Any = None,
               *args: Any, **options: Any) -> None:
        """TraceRecorder.record, also keeping the lab's event (called from frontrun's tracer)."""
        before = len(recorder.events)
        original(recorder, thread_id, frame, opcode, access_type, attr_name, obj, *args, **options)
        if len(recorder.events) == before:
            return
        try:
            events = self.events_of(recorder)
            events.append(_access_event(recorder.events[-1], frame, obj))
            if access_type == "write" and obj is not None and attr_name is not None:
                self.recorders[id(recorder)][2].append((len(events) - 1, obj, attr_name))
        except Exception:  # the report's bookkeeping must never break a run
            pass

    @untraced
    def lock(self, lock: Any, original: Callable[..., None], event: str) -> None:
        """A cooperative lock's report to the scheduler, also kept as the lab's event."""
        original(lock, event)
        op, context = _LOCK_OPS.get(event), self.get_context()
        if op is None or context is None:
            return
        try:
            self.record_lock(lock, op, *context)
        except Exception:  # the report's bookkeeping must never break a run
            pass

    @untraced
    def record_lock(self, lock: Any, op: str, scheduler: Any, thread: int) -> None:
        recorder = getattr(scheduler, "trace_recorder", None)
        if recorder is None or not getattr(recorder, "enabled", False):
            return
        frame = sys._getframe(1)  # up to the code that took or released the lock
        while frame is not None and (frame.f_code.co_filename.startswith((self.frontrun_dir, UNTRACED))
                                     or frame.f_code.co_filename in (threading.__file__, functools.__file__)):
            frame = frame.f_back
        if frame is None:
            return
        events = self.events_of(recorder)
        if op == "wait" and events and events[-1].lock == "wait" and events[-1].thread == thread:
            return  # still waiting for the same lock
        holder = getattr(lock, "_owner_thread_id", None) if op in ("wait", "busy") else None
        code = frame.f_code
        events.append(Event(
            thread=thread, filename=code.co_filename, lineno=frame.f_lineno,
            function=getattr(code, "co_qualname", code.co_name), lock=op, lock_name=_lock_name(lock, frame),
            holder=None if holder == thread else holder, callers=_callers(frame),
        ))


@untraced
def _callers(frame: Any, depth: int = 24) -> tuple[tuple[str, int, str], ...]:
    """Where a frame was called from: (file, line, function), innermost first, up to the lab's
    own code (the scenario's worker), which called the implementation."""
    found = []
    frame = frame.f_back if frame is not None else None
    while frame is not None and len(found) < depth:
        code = frame.f_code
        found.append((code.co_filename, frame.f_lineno, getattr(code, "co_qualname", code.co_name)))
        if code.co_filename.startswith(_LAB):
            break
        frame = frame.f_back
    return tuple(found)


_LAB = os.path.dirname(os.path.abspath(__file__)) + os.sep  # sessionlab/: where the callers of a worker's code begin


@untraced
def _short_value(value: Any) -> str | None:
    """A value's repr when it is short and plain enough to print in a report."""
    if type(value) is dict:
        items = [*value.keys(), *value.values()]
    elif type(value) in (list, tuple, set, frozenset):
        items = list(value)
    else:
        items = [value]
    for item in items:
        if type(item) not in _PLAIN:
            return None
    text = repr(value)
    return text if len(text) <= 60 else None


@untraced
def _peek(obj: Any, name: str) -> Any:
    """The value an attribute or dict key holds now, without running any of the object's code."""
    if isinstance(obj, dict):
        return _MISSING if hasattr(dict, name) else dict.get(obj, name, _MISSING)
    try:
        attributes = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return _MISSING
    return dict.get(attributes, name, _MISSING) if type(attributes) is dict else _MISSING


@untraced
def _settle(events: list[Event], pending: list[tuple[int, Any, str]]) -> None:
    """Fill in the values earlier writes stored."""
    for index, obj, name in pending:
        value = _peek(obj, name)
        if value is not _MISSING:
            events[index] = replace(events[index], value=_short_value(value), value_id=id(value))
    pending.clear()


@untraced
def _access_event(event: Any, frame: Any, obj: Any) -> Event:
    """The lab's record of one shared access frontrun recorded, with the value a read saw."""
    value = _MISSING
    if obj is not None and event.access_type == "read" and event.attr_name is not None:
        value = _peek(obj, event.attr_name)
    code = frame.f_code if frame is not None else None
    return Event(
        thread=event.thread_id, filename=event.filename, lineno=event.lineno,
        function=getattr(code, "co_qualname", event.function_name) if code else event.function_name,
        kind=event.access_type, attr=event.attr_name, owner=event.obj_type_name,
        obj=None if obj is None else id(obj),
        value=None if value is _MISSING else _short_value(value),
        value_id=None if value is _MISSING else id(value),
        callable=value is not _MISSING and callable(value),
        callers=_callers(frame),
    )


@untraced
def _lock_name(lock: Any, frame: Any) -> str:
    """How the code names a lock: "self._lock", or a local variable's name."""
    names = list(frame.f_locals.items())
    for name, value in names:
        if value is lock:
            return name
    for name, value in names:
        try:
            attributes = object.__getattribute__(value, "__dict__")
        except AttributeError:
            continue
        if type(attributes) is dict:
            for attribute, held in list(attributes.items()):
                if held is lock:
                    return f"{name}.{attribute}"
    return "a lock"
