"""Deterministic exploration of thread interleavings, on the frontrun library.

frontrun runs some workers under a scheduler it controls and explores every
meaningfully different interleaving (dynamic partial order reduction over the
shared reads, writes and lock operations it observes). This module runs one
such search for the lab and keeps the events of the interleaving that broke,
so the report (``sessionlab.report``) can show every line each thread ran.

Stress tests in the same process keep real locks: frontrun's cooperative locks
are patched in only while an exploration runs, and only one exploration runs
at a time.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import CodeType, ModuleType
from typing import Any

from sessionlab.bounded import Hang, explore_bounded
from sessionlab.impls import Implementation
from sessionlab.report import MAX_EXECUTIONS, Event, Step, build_steps

# Only one exploration may run at a time in a process: the scheduler patches
# process-wide locks while it runs.
_exploring = threading.Lock()


class Inconclusive(Exception):
    """The search could not finish, and what it did run shows neither a failure nor a hang."""


class FrontrunUnavailable(RuntimeError):
    """frontrun is not installed, or has no build for this platform."""


def frontrun_available() -> tuple[bool, str]:
    """Whether deterministic exploration can run here, and if not, why not (one line)."""
    try:
        import frontrun  # noqa: F401
    except ImportError as exc:
        return False, (
            f"deterministic exploration needs the frontrun library ({exc}); it ships builds "
            "for Linux and Apple-silicon macOS: pip install -e '.[test]'"
        )
    return True, ""


# -- What the search traces ----------------------------------------------------------


@dataclass(frozen=True)
class Tracing:
    """Which code outside the implementation's own files the search traces.

    frontrun traces only code outside site-packages unless told otherwise, so a
    race inside a library the implementation calls would go unseen. By default
    the lab traces every third-party package the implementation uses.
    """

    dependencies: bool = True  # trace the third-party packages the implementation imports
    extra: tuple[str, ...] = ()  # more package patterns (fnmatch), e.g. "cachelib*"


TRACING = Tracing()


def configure(tracing: Tracing) -> None:
    """Set what every later exploration traces (the command line's --trace and --no-trace-deps)."""
    global TRACING
    TRACING = tracing


@dataclass(frozen=True)
class Scope:
    """What a search could see: the packages it traced, and the code it could not."""

    traced: tuple[str, ...]  # third-party packages traced besides the implementation's own files
    untraced: tuple[str, ...]  # packages the implementation uses whose code was not traced

    def sentence(self, implementation: str) -> str:
        seen = ", ".join((implementation,) + self.traced)
        text = f"complete over the code of {seen}"
        if self.untraced:
            text += f"; not traced: {', '.join(self.untraced)}"
        return text


def dependencies(module: ModuleType) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The third-party packages an implementation uses: (pure Python ones, ones with C code).

    Found from what its modules refer to: modules they imported, and classes and
    functions they imported from other packages. The standard library and the
    lab itself are left out.
    """
    own = module.__name__.split(".")[0]
    names: set[str] = set()
    modules = [module] + [m for name, m in list(sys.modules.items())
                          if name.startswith(module.__name__ + ".") and m is not None]
    for mod in modules:
        for value in list(vars(mod).values()):
            origin = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
            if isinstance(origin, str) and origin:
                names.add(origin.split(".")[0])
    skip = set(sys.stdlib_module_names) | {own, "sessionlab", "frontrun", "builtins", "__future__"}
    python, native = [], []
    for name in sorted(names - skip):
        if name.startswith("_sessionlab_impl_") or name.startswith("_"):
            continue
        package = sys.modules.get(name)
        location = getattr(package, "__file__", None) or ""
        if location.endswith((".so", ".pyd")):
            native.append(name)
        elif location:
            python.append(name)
    return tuple(python), tuple(native)


def scope_of(implementation: Implementation) -> tuple[list[str], Scope]:
    """The trace_packages patterns for an implementation, and what they leave out."""
    module = implementation.module.__name__.split(".")[0]
    python, native = dependencies(implementation.module) if TRACING.dependencies else ((), ())
    patterns = [module, f"{module}.*"]
    for name in python:
        patterns += [name, f"{name}.*"]
    patterns += list(TRACING.extra)
    untraced = tuple(f"{name} (C code)" for name in native)
    if not TRACING.dependencies:
        untraced += tuple(dependencies(implementation.module)[0])
    return patterns, Scope(tuple(python) + TRACING.extra, untraced)


@dataclass(frozen=True)
class Exploration:
    """What one exploration of some workers found."""

    held: bool
    explored: int
    complete: bool  # the search ran out of interleavings, not out of budget
    seconds: float
    scope: Scope = Scope((), ())
    steps: tuple[Step, ...] = ()  # the interleaving that broke, line by line
    explanation: str = ""  # frontrun's own account of it
    reproduced: tuple[int, int] = (0, 0)
    schedule: tuple[int, ...] = ()


# One run of the workers that takes longer than this is stuck on something the scheduler
# does not control; the whole exploration of one scenario may take at most EXPLORE_SECONDS.
PER_RUN_SECONDS = 2.0
EXPLORE_SECONDS = 10.0
# When a systematic run stalls: how many schedules to draw at random, and from which seed.
SAMPLED_SCHEDULES = 200
SAMPLE_SEED = 0


def explore_workers(
    implementation: Implementation,
    setup: Callable[[], Any],
    workers: list[Callable[[Any], None]],
    invariant: Callable[[Any], bool],
    *,
    replays: int = 3,
    names: list[str] | None = None,
    seconds: float = EXPLORE_SECONDS,
) -> Exploration:
    """Run workers on a fresh setup() under every interleaving, until invariant fails.

    The search has no preemption bound, so when it holds it has run every
    meaningfully different interleaving (up to MAX_EXECUTIONS). It is bounded
    in time: a lock cycle, a run stuck on something the scheduler does not
    control, or a search that outlasts ``seconds`` raises Hang, naming the
    lines where each thread holds and waits (``names`` labels the workers).
    """
    ok, why = frontrun_available()
    if not ok:
        raise FrontrunUnavailable(why)
    import frontrun
    from frontrun._cooperative import patch_locks, unpatch_locks

    patterns, scope = scope_of(implementation)
    started = time.perf_counter()
    events: list[Any] = []

    def run(**strategy: Any) -> Any:
        if not _exploring.acquire(timeout=seconds):
            raise RuntimeError("another exploration is still running in this process")
        try:
            events.clear()
            with _capturing_trace(events):
                patch_locks()  # lets explore() run without the frontrun command-line wrapper
                try:
                    return frontrun.explore(
                        setup=setup,
                        workers=workers,
                        invariant=invariant,
                        detect_io=False,
                        reproduce_on_failure=replays,
                        trace_packages=patterns,
                        timeout_per_run=PER_RUN_SECONDS,
                        **strategy,
                    )
                finally:
                    unpatch_locks()
        finally:
            _exploring.release()

    def bounded(**strategy: Any) -> Any:
        try:
            return explore_bounded(lambda: run(**strategy), seconds=seconds, label="the exploration",
                                   files=implementation.files, names=names, per_run=PER_RUN_SECONDS)
        except Hang:
            _recover(unpatch_locks)
            raise

    try:
        result = bounded(stop_on_first=True, preemption_bound=None, max_executions=MAX_EXECUTIONS)
    except Hang as hang:
        if hang.deadlock:
            raise
        # A run stalled with no lock cycle: the code may hang (a wait nobody ends), or the
        # search may have stalled on a primitive it schedules badly (frontrun 0.7 stalls on
        # Condition.wait). Schedules drawn at random, from a fixed seed, tell which, and give
        # the same answer every time.
        stalled = "; ".join(wait.describe() for wait in hang.waits) or "no thread was found waiting"
        result = bounded(strategy="random", seed=SAMPLE_SEED, max_attempts=SAMPLED_SCHEDULES)
        if result.property_holds is None:  # a sampled run never ended either: the code hangs
            raise Hang(hang.seconds, hang.label, hang.waits) from None
        if result.property_holds:
            raise Inconclusive(
                f"the search could not finish: a run stalled ({stalled}), then {SAMPLED_SCHEDULES} "
                f"schedules drawn at random held; not every interleaving was run, so nothing is proven"
            ) from None
    seconds_taken = time.perf_counter() - started
    if result.property_holds is None:
        raise RuntimeError(f"the exploration was inconclusive: {result.inconclusive_reason}")
    if result.property_holds:
        complete = result.num_explored < MAX_EXECUTIONS
        return Exploration(True, result.num_explored, complete, seconds_taken, scope)
    return Exploration(
        False, result.num_explored, False, seconds_taken, scope,
        steps=build_steps(events, implementation.module),
        explanation=result.explanation or "",
        reproduced=(result.reproduction_successes, result.reproduction_attempts),
        schedule=tuple(result.counterexample or ()),
    )


def _recover(unpatch_locks: Callable[[], None]) -> None:
    """After a hang, let later explorations run: the stuck thread never gets to clean up."""
    try:
        unpatch_locks()
    except Exception:  # already unpatched
        pass
    if _exploring.locked():
        _exploring.release()


@contextmanager
def _capturing_trace(sink: list[Any]) -> Iterator[None]:
    """Keep what the threads of the failing execution did, for the report.

    frontrun explains a failure from the shared accesses it saw conflict; the lab
    shows every line the threads ran, so it keeps every access frontrun recorded,
    with the value each read saw and each write stored (when short and plain) and
    the calls it ran inside, and the lock operations frontrun's cooperative locks
    report to its scheduler (taken, released, waited for), in the order they
    happened. ``sink`` receives the failing execution's events as
    ``sessionlab.report.Event``.
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


def _untraced(function: Callable[..., Any]) -> Callable[..., Any]:
    """Hide a function of the capture from frontrun's tracer.

    frontrun traces every line outside site-packages and makes each a scheduling
    point; the capture runs inside a lock operation, where a scheduling point
    would hang the run. frontrun never traces its own files, so the capture's
    code is filed under frontrun's folder (its lines stay the same).
    """
    spec = importlib.util.find_spec("frontrun")
    if spec is None or not spec.origin:
        return function
    where = os.path.join(os.path.dirname(os.path.abspath(spec.origin)), "(sessionlab capture).py")

    def relocate(code: CodeType) -> CodeType:
        nested = tuple(relocate(const) if isinstance(const, CodeType) else const for const in code.co_consts)
        return code.replace(co_filename=where, co_consts=nested)

    function.__code__ = relocate(function.__code__)
    return function


_LOCK_OPS = {"lock_acquire": "take", "lock_release": "release", "lock_wait": "wait", "lock_attempt_fail": "busy"}
_PLAIN = (int, float, str, bool, type(None), bytes)
_MISSING = object()


class _Hook:
    """A method replaced by one of the capture's: it calls method(instance, original, ...)."""

    def __init__(self, method: Callable[..., Any], original: Callable[..., Any]):
        self.method, self.original = method, original

    @_untraced
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

    @_untraced
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

    @_untraced
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

    @_untraced
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

    @_untraced
    def record_lock(self, lock: Any, op: str, scheduler: Any, thread: int) -> None:
        recorder = getattr(scheduler, "trace_recorder", None)
        if recorder is None or not getattr(recorder, "enabled", False):
            return
        frame = sys._getframe(1)  # up to the code that took or released the lock
        while frame is not None and (frame.f_code.co_filename.startswith(self.frontrun_dir)
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


@_untraced
def _callers(frame: Any, depth: int = 6) -> tuple[tuple[str, int, str], ...]:
    """Where a frame was called from: (file, line, function), innermost first."""
    found = []
    frame = frame.f_back if frame is not None else None
    while frame is not None and len(found) < depth:
        code = frame.f_code
        found.append((code.co_filename, frame.f_lineno, getattr(code, "co_qualname", code.co_name)))
        frame = frame.f_back
    return tuple(found)


@_untraced
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


@_untraced
def _peek(obj: Any, name: str) -> Any:
    """The value an attribute or dict key holds now, without running any of the object's code."""
    if isinstance(obj, dict):
        return _MISSING if hasattr(dict, name) else dict.get(obj, name, _MISSING)
    try:
        attributes = object.__getattribute__(obj, "__dict__")
    except AttributeError:
        return _MISSING
    return dict.get(attributes, name, _MISSING) if type(attributes) is dict else _MISSING


@_untraced
def _settle(events: list[Event], pending: list[tuple[int, Any, str]]) -> None:
    """Fill in the values earlier writes stored."""
    for index, obj, name in pending:
        value = _peek(obj, name)
        if value is not _MISSING:
            events[index] = replace(events[index], value=_short_value(value), value_id=id(value))
    pending.clear()


@_untraced
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


@_untraced
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
