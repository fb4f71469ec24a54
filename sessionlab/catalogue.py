"""The bug catalogue: the one list of bugs that tests, command line and docs read.

Each bug's entry lives in its own module under ``sessionlab/bugs/``, beside the
scenarios and checks that expose it; this module lists them in order and finds
them by name.
"""

from __future__ import annotations

import difflib
from types import ModuleType

from sessionlab.bugs import (  # noqa: F401  (re-exported: the catalogue's vocabulary)
    ATOMICITY_VIOLATION,
    DEADLOCK,
    ORDER_VIOLATION,
    RESOURCE_LEAK,
    SECURITY,
    Bug,
    cleanup_leak,
    close_order,
    cross_process_increment,
    expiry_race,
    id_collision,
    lock_order_deadlock,
    lost_increments,
    lost_updates,
    shared_snapshot,
    stale_cache,
    stats_drift,
)

# Every bug's module, in the order of the exercises.
MODULES: tuple[ModuleType, ...] = (
    lost_updates, lost_increments, cleanup_leak, stats_drift, id_collision, shared_snapshot,
    stale_cache, expiry_race, lock_order_deadlock, cross_process_increment, close_order,
)

BUGS: tuple[Bug, ...] = tuple(module.BUG for module in MODULES)

_BY_SLUG = {bug.slug: bug for bug in BUGS}
_HOMES = {module.BUG.slug: module for module in MODULES}


class UnknownBug(LookupError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    @property
    def suggestion(self) -> str | None:
        """The bug the name most likely meant, if any."""
        key = _normalise(self.name)
        close = difflib.get_close_matches(key, list(_BY_SLUG), n=1, cutoff=0.6)
        return close[0] if close else None

    def __str__(self) -> str:
        known = ", ".join(bug.slug for bug in BUGS)
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"no bug named {self.name!r}{hint} (the catalogue has: {known})"


def _normalise(name: str | int) -> str:
    key = str(name).strip().lower().replace("_", "-").rstrip("/")
    key = key.rsplit("/", 1)[-1]  # exercises/01-lost-updates/ names its bug too
    head, _, tail = key.partition("-")
    if head.isdigit() and tail:  # an exercise folder: 01-lost-updates
        key = tail
    return key


def find(name: str | int) -> Bug:
    """Look a bug up by slug, marker name (lost_updates), number or exercise folder (01-lost-updates)."""
    key = _normalise(name)
    if key.isdigit():
        for bug in BUGS:
            if bug.number == int(key):
                return bug
    elif key in _BY_SLUG:
        return _BY_SLUG[key]
    else:
        singular = {bug.slug.replace("updates", "update").replace("increments", "increment"): bug
                    for bug in BUGS}
        if key in singular:
            return singular[key]
    raise UnknownBug(str(name))


def track(number: int) -> tuple[Bug, ...]:
    return tuple(bug for bug in BUGS if bug.track == number)


def home(bug: Bug | str) -> ModuleType:
    """The module that holds a bug's scenarios and checks."""
    return _HOMES[bug if isinstance(bug, str) else bug.slug]
