"""What a search needs of the process around it: locks it can schedule, and a stable walk of its state.

frontrun schedules only the locks made while its patches are in place, and
numbers the objects of a scenario's state by walking them before each
execution. ``swap_module_locks`` gives a search its own locks in place of the
real ones an implementation or a framework made at import, and ``restore``
puts them back; ``walk_past_objects_that_raise`` makes frontrun's walk safe
and the same in every execution.
"""

from __future__ import annotations

import sys
import threading
from types import ModuleType
from typing import Any

from sessionlab.implementations import Implementation

_REAL_LOCK = type(threading.Lock())
_REAL_RLOCK = type(threading.RLock())


def _lock_owners(implementation: Implementation, packages: tuple[str, ...] = ()) -> list[Any]:
    """Where module-level locks live: the implementation's modules, the modules of the traced
    packages, and the classes they define."""
    module = implementation.module
    prefixes = tuple(f"{name}." for name in (module.__name__,) + packages)
    modules = [module] + [m for name, m in list(sys.modules.items())
                          if m is not None and (name in packages or name.startswith(prefixes))]
    return [owner for m in modules for owner in [m] + [value for value in vars(m).values()
                                                      if isinstance(value, type) and value.__module__ == m.__name__]]


def _fresh(lock: Any) -> Any:
    """A lock of the same kind, made now (by the search's patched constructors while it runs)."""
    return threading.Lock() if type(lock) is _REAL_LOCK else threading.RLock()


def _real_and_free(value: Any) -> bool:
    kind = type(value)
    return kind is _REAL_RLOCK or (kind is _REAL_LOCK and not value.locked())


def _made_by_the_search(value: Any) -> bool:
    return type(value).__module__.startswith("frontrun")


def swap_module_locks(implementation: Implementation, packages: tuple[str, ...] = ()) -> list[tuple[Any, Any, Any]]:
    """Give the search its own locks in place of module-level ones it cannot schedule.

    A lock made when a module was imported is a real lock: ``_LOCK = threading.Lock()`` at
    the top of a file or in a class body, in a module-level dict of locks (Django's
    local-memory cache keeps one per cache), or in an object made at import (Django's cache
    handler keeps its connections in an asgiref ``Local``, which has an RLock). A thread the
    search pauses while holding one would block the other in C, and a correct fix would look
    like a hang. While the search runs (locks patched), each is replaced by a new lock of
    the same kind, made by the search. This covers the implementation's modules and those of
    the packages traced with it, and the objects their names hold, two levels deep. Returns
    what to put back (``restore``), so that a lock first made during the search (a lazily
    created one) does not outlive it.
    """
    before: list[tuple[Any, Any, Any]] = []  # (module, class, object or dict; name or key; the value it had)
    seen: set[int] = set()

    def visit(owner: Any, depth: int) -> None:
        if id(owner) in seen:
            return
        seen.add(id(owner))
        try:
            items = list(vars(owner).items())
        except Exception:  # no __dict__, or a proxy that raises when read
            return
        for name, value in items:
            if _real_and_free(value):
                before.append((owner, name, value))
                object.__setattr__(owner, name, _fresh(value)) if depth else setattr(owner, name, _fresh(value))
            elif depth:
                if depth < _DEPTH and _holds_state(value):
                    visit(value, depth + 1)
            elif value is None:
                before.append((owner, name, None))  # may become a lock during the search
            elif type(value) is dict and not isinstance(owner, type):
                before.append((value, None, None))  # a dict of locks may gain one during the search
                for key, item in list(value.items()):
                    if _real_and_free(item):
                        before.append((value, key, item))
                        value[key] = _fresh(item)
            elif _holds_state(value) and not isinstance(owner, type):
                visit(value, 1)

    for owner in _lock_owners(implementation, packages):
        visit(owner, 0)
    return before


_DEPTH = 2  # how far into the objects a module holds the search looks for locks


def _holds_state(value: Any) -> bool:
    """An object made by a module (not a module, class or function) whose attributes may hold a lock."""
    try:
        return hasattr(value, "__dict__") and not isinstance(value, (ModuleType, type)) and not callable(value)
    except Exception:  # a context proxy (Flask's request, session) raises when read outside its context
        return False


def restore(before: list[tuple[Any, Any, Any]]) -> None:
    for owner, name, original in before:
        if isinstance(owner, dict):
            if name is None:  # drop the locks the search made in it: the next user makes a real one
                for key in [key for key, item in owner.items() if _made_by_the_search(item)]:
                    del owner[key]
            else:
                owner[name] = original
            continue
        if isinstance(owner, (ModuleType, type)):
            current = vars(owner).get(name)
            if original is not None or _made_by_the_search(current):
                setattr(owner, name, original)
        else:
            object.__setattr__(owner, name, original)


def walk_past_objects_that_raise() -> None:
    """Make frontrun 0.7's walk of a scenario's state safe and the same in every execution.

    Before each execution frontrun numbers every object the fresh state reaches, in the
    order of a walk, so that the same object gets the same number every time. Two things
    broke that: a context proxy (Flask's request, once Flask is imported anywhere in the
    process) raises when read outside its context, and the whole search failed; and the walk
    ordered a dict's values by the repr of its keys, which for a key such as a function
    holds its memory address, so the order, and every number after it, changed from one
    execution to the next (a framework's app object holds such dicts). The search then took
    one object for two, and stopped before the interleaving that breaks. Here an object that
    raises is left unwalked, and a dict whose keys show addresses is walked in the order its
    keys were inserted, which setup() repeats exactly.
    """
    try:
        from frontrun._opcode_observer import StableObjectIds
    except ImportError:
        return
    original = StableObjectIds.__dict__.get("_enqueue_children")
    if not isinstance(original, staticmethod) or getattr(original.__func__, "_sessionlab", False):
        return

    def enqueue_children(obj: object, queue: Any) -> None:
        try:
            if isinstance(obj, dict) and not isinstance(getattr(obj, "__dict__", None), dict):
                keys = list(obj)
                named = [repr(key) for key in keys]
                if not any(" at 0x" in name or " object at " in name for name in named):
                    keys = [key for _, key in sorted(zip(named, keys), key=lambda pair: pair[0])]
                queue.extend(obj[key] for key in keys)
                return
            original.__func__(obj, queue)
        except Exception:  # it raised when looked at: not a state the threads share
            pass

    enqueue_children._sessionlab = True  # type: ignore[attr-defined]
    StableObjectIds._enqueue_children = staticmethod(enqueue_children)
