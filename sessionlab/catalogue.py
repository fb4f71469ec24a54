"""The bug catalogue: the one list of bugs that tests, command line and docs read.

Each bug's entry lives in its own module under ``sessionlab/bugs/``, beside the
scenarios and checks that expose it; this module lists them in order, finds
them by name, and hands out a bug's ``Home``: the entry with what exposes it,
which the judge passes down to the engines.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sessionlab.bug import (  # noqa: F401  (re-exported: the catalogue's vocabulary)
    ATOMICITY_VIOLATION,
    DEADLOCK,
    ORDER_VIOLATION,
    RESOURCE_LEAK,
    SECURITY,
    Bug,
)
from sessionlab.bugs import (
    cleanup_leak,
    close_order,
    counter_get_set,
    cross_process_increment,
    expiry_race,
    id_collision,
    lock_order_deadlock,
    lost_increments,
    lost_updates,
    resurrected_logout,
    session_overwrite,
    shared_snapshot,
    stale_cache,
    stats_drift,
    ttl_second_step,
    watch_shared_connection,
)
from sessionlab.figure import Figure

if TYPE_CHECKING:
    from sessionlab.engines.exploration.threads import RaceScenario
    from sessionlab.engines.stress import Scenario
    from sessionlab.implementations import Implementation

# Every bug's module, in the order of the exercises.
MODULES: tuple[ModuleType, ...] = (
    lost_updates, lost_increments, cleanup_leak, stats_drift, id_collision, shared_snapshot,
    stale_cache, expiry_race, lock_order_deadlock, cross_process_increment, close_order,
    session_overwrite, counter_get_set, resurrected_logout, ttl_second_step, watch_shared_connection,
)


@dataclass(frozen=True)
class Home:
    """A bug and what exposes it, as its module under ``sessionlab/bugs/`` defines them."""

    bug: Bug
    stress: Scenario | None  # real threads, free-running (sessionlab.engines.stress)
    race: RaceScenario | None  # threads under every interleaving (sessionlab.engines.exploration.threads)
    checks: tuple[tuple[str, Callable[[Implementation], Figure]], ...]  # single-thread checks
    explore: Callable[[Implementation], Any] | None  # an exploration of its own: processes on one file

    @classmethod
    def of(cls, module: ModuleType) -> Home:
        return cls(module.BUG, getattr(module, "STRESS", None), getattr(module, "RACE", None),
                   tuple(getattr(module, "CHECKS", ())), getattr(module, "EXPLORE", None))

    @property
    def explorable(self) -> bool:
        """Whether the bug has an interleaving to show: a thread scenario, or an exploration of its own."""
        return self.race is not None or self.explore is not None


HOMES: tuple[Home, ...] = tuple(Home.of(module) for module in MODULES)
BUGS: tuple[Bug, ...] = tuple(home.bug for home in HOMES)

_BY_SLUG = {bug.slug: bug for bug in BUGS}
_HOMES = {home.bug.slug: home for home in HOMES}


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


def home(bug: Bug | str | int) -> Home:
    """A bug's home: its entry and what exposes it (a Bug, or any name ``find`` accepts)."""
    return _HOMES[(bug if isinstance(bug, Bug) else find(bug)).slug]


def races() -> tuple[Home, ...]:
    """The homes of the bugs that have a thread scenario to explore, in catalogue order."""
    return tuple(home for home in HOMES if home.race is not None)


def stressed() -> tuple[Home, ...]:
    """The homes of the bugs that have a stress scenario, in catalogue order."""
    return tuple(home for home in HOMES if home.stress is not None)
