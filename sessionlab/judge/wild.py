"""Track 3, in the wild: which of the six track-1 bugs the stores on real frameworks have.

``buggy/wild/`` holds session layers written on real frameworks' session
machinery the way applications use them (load the session, change it, save
it, per request); ``fixed/wild/`` holds the same files with the fixes an
application can make on top of the framework. ``findings()`` runs each
track-1 bug's own deterministic checks (its race scenario, explored with the
framework's code traced, and its single-thread checks) on every store, and
``table()`` lays the result out: ``sessionlab wild`` prints it, and
TECHNICAL.md holds its Markdown form (``sessionlab wild --markdown``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from sessionlab import catalogue
from sessionlab.bug import Bug
from sessionlab.implementations import Implementation, load
from sessionlab.judge import checks

# The stores, by file name in buggy/wild and fixed/wild, with what they are written on.
STORES: dict[str, str] = {
    "django_cache": "Django's cache session engine (LocMemCache)",
    "flask_cachelib": "Flask-Session on cachelib (SimpleCache)",
}
FRAMEWORKS = ("django", "flask", "flask_session", "cachelib")
WHY_NOT = "the real-world stores need the realworld extra: pip install -e '.[realworld]'"


def available() -> tuple[bool, str]:
    """Whether the frameworks are installed, and if not, why not (one line)."""
    for name in FRAMEWORKS:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            return False, f"{WHY_NOT} ({exc})"
    return True, ""


def store(name: str, variant: str = "buggy") -> Implementation:
    """A store as an implementation: ``store("django_cache")`` is buggy/wild/django_cache.py."""
    if name not in STORES:
        raise KeyError(f"no store {name!r} in the wild (stores: {', '.join(STORES)})")
    return load(f"{variant}.wild.{name}")


@dataclass(frozen=True)
class Finding:
    """Whether one store has one bug, and the evidence."""

    store: str
    variant: str  # "buggy": as applications write it; "fixed": with the application's fixes
    bug: Bug
    has: bool
    evidence: str  # the figure of the check that broke, or what held
    detail: str = ""  # the report of the check that broke: the interleaving, the framework's lines


def own_checks(bug: Bug) -> tuple[checks.Check, ...]:
    """A bug's own deterministic checks: its scenario under exploration and its single-thread checks."""
    return tuple(check for check in checks.checks_for(catalogue.home(bug)) if check.kind == checks.DETERMINISTIC
                 and check.name != "the contract, one call at a time" and "every pair" not in check.name)


def finding(name: str, variant: str, bug: Bug) -> Finding:
    implementation = store(name, variant)
    held = []
    for check in own_checks(bug):
        result = checks.run_check(check, implementation)
        if result.outcome != checks.HELD:
            return Finding(name, variant, bug, True, result.message.split(": ", 1)[-1], result.detail)
        held.append(result.message.split(": ", 1)[-1])
    return Finding(name, variant, bug, False, "; ".join(held))


def findings(variants: tuple[str, ...] = ("buggy", "fixed"),
             progress: Callable[[str], None] = lambda _: None) -> list[Finding]:
    """Every track-1 bug on every store, in catalogue order."""
    found = []
    for variant in variants:
        for name in STORES:
            for bug in catalogue.track(1):
                progress(f"{bug.slug} on {variant}/wild/{name}")
                found.append(finding(name, variant, bug))
    return found


def table(found: list[Finding]) -> list[list[str]]:
    """Rows: the bug, then for each store (buggy/wild/NAME.py, fixed/wild/NAME.py): has it, or no."""
    columns = [(f.variant, f.store) for f in found]
    columns = list(dict.fromkeys(columns))
    rows = [["bug"] + [f"{name}.py ({variant})" for variant, name in columns]]
    for bug in dict.fromkeys(f.bug for f in found):
        cells = {(f.variant, f.store): f for f in found if f.bug == bug}
        rows.append([f"{bug.number}. {bug.slug}"] + ["has it" if cells[column].has else "no"
                                                      for column in columns])
    return rows


def markdown(found: list[Finding]) -> str:
    """The table in Markdown, as TECHNICAL.md holds it."""
    rows = table(found)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)
