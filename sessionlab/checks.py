"""Is a bug fixed yet? Every check of one bug, run against one implementation.

Checks judge behaviour, not text: a correct fix that differs from the reference
passes, and a fix that only narrows the window fails. Deterministic checks run
first (exploration of every interleaving, and the single-thread checks); the
stress scenario runs only once they hold, since a stress round can only
confirm what they already showed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from sessionlab import api, catalogue, race, stress
from sessionlab.catalogue import Bug
from sessionlab.impls import Implementation
from sessionlab.stress import Figure

DETERMINISTIC, STRESS = "deterministic", "stress"


# -- Single-thread checks ---------------------------------------------------------


def released_after_logout(implementation: Implementation) -> Figure:
    """cleanup-leak: a session that stored nothing is released when it is deleted."""
    with implementation.new_manager() as manager:
        empty = manager.create_session("u-1", "Ada")
        full = manager.create_session("u-2", "Bob")
        manager.update_session(full, "theme", "dark")
        manager.delete_session(empty)
        manager.delete_session(full)
        queued = manager.get_cleanup_queue_size()
        failed = manager.get_stats().failed_cleanups
    if queued == 0:
        return Figure(True, "0 queued", "0 queued", "2 sessions deleted, both released")
    return Figure(False, "0 queued", f"{queued} queued",
                  f"2 sessions deleted one after the other, {queued} still queued for cleanup "
                  f"({failed} failed cleanup attempts): a session that stored nothing is never released")


def no_leak_past_threshold(implementation: Implementation) -> Figure:
    """cleanup-leak: logins and logouts past the leak threshold leave health_check healthy."""
    logins = api.LEAK_THRESHOLD + 1
    with implementation.new_manager() as manager:
        for n in range(logins):
            manager.delete_session(manager.create_session(f"u-{n}", "visitor"))
        health = api.health_check(manager)
    if not health.memory_leak_detected:
        return Figure(True, "no leak", "no leak", f"{logins} logins and logouts; the cleanup queue holds "
                      f"{health.cleanup_queue_size}")
    return Figure(False, "no leak", f"{health.cleanup_queue_size} queued",
                  f"after {logins} logins and logouts, {health.cleanup_queue_size} sessions wait in the "
                  f"cleanup queue; health_check reports a leak")


def snapshot_kept_after_logout(implementation: Implementation) -> Figure:
    """shared-snapshot: a snapshot read before logout keeps its metadata."""
    with implementation.new_manager() as manager:
        session_id = manager.create_session("u-1", "Ada")
        manager.update_session(session_id, "cart", "3 books")
        snapshot = manager.get_session(session_id)
        manager.delete_session(session_id)
    now = dict(snapshot.metadata)
    if now == {"cart": "3 books"}:
        return Figure(True, "{'cart': '3 books'}", repr(now), "the snapshot kept its metadata after logout")
    return Figure(False, "{'cart': '3 books'}", repr(now),
                  f"a snapshot read before logout showed {{'cart': '3 books'}} and now shows {now}: "
                  f"get_session handed out the live metadata, not a copy")


GUESS_LOGINS = 20
GUESS_REACH = 3  # how far up and down a number in an id the guesser tries


def neighbours(session_id: str) -> list[str]:
    """Ids a user could try after seeing their own: every run of digits moved up or down a little."""
    guesses = []
    for match in re.finditer(r"\d+", session_id):
        number, width = int(match.group()), len(match.group())
        for step in range(-GUESS_REACH, GUESS_REACH + 1):
            if step and number + step >= 0:
                guess = f"{number + step:0{width}d}"
                guesses.append(session_id[: match.start()] + guess + session_id[match.end():])
    return guesses


def ids_not_guessable(implementation: Implementation) -> Figure:
    """id-collision: knowing your own session id does not let you guess another user's."""
    with implementation.new_manager() as manager:
        owners = {manager.create_session(f"user-{n}", f"user {n}"): f"user-{n}" for n in range(GUESS_LOGINS)}
        for own, me in owners.items():
            for guess in neighbours(own):
                if guess in owners and owners[guess] != me:
                    victim = manager.get_session(guess).user_id
                    return Figure(False, "no id guessed", f"{guess} guessed",
                                  f"{me}, holding session {own}, tried {guess} and got into {victim}'s session: "
                                  f"ids that follow a pattern can be guessed")
    return Figure(True, "no id guessed", "no id guessed",
                  f"{GUESS_LOGINS} logins; no user could reach another's session from their own id")


# -- Checks -----------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    bug: Bug
    name: str
    kind: str  # DETERMINISTIC or STRESS
    run: Callable[[Implementation], tuple[bool, str]]  # (held, what it measured)
    needs_frontrun: bool = False


@dataclass(frozen=True)
class Result:
    check: Check
    held: bool | None  # None: skipped
    message: str
    seconds: float

    def as_json(self) -> dict:
        return {"check": self.check.name, "kind": self.check.kind, "seconds": round(self.seconds, 3),
                "outcome": "skipped" if self.held is None else "held" if self.held else "broke",
                "message": self.message}


@dataclass(frozen=True)
class Verdict:
    bug: Bug
    implementation: str
    results: tuple[Result, ...]

    @property
    def fixed(self) -> bool:
        ran = [result for result in self.results if result.held is not None]
        return bool(ran) and all(result.held for result in ran)

    @property
    def evidence(self) -> str:
        """The figure that decided the verdict."""
        broke = [result for result in self.results if result.held is False]
        return (broke[0] if broke else self.results[-1]).message

    def as_json(self) -> dict:
        return {"bug": self.bug.slug, "number": self.bug.number, "implementation": self.implementation,
                "fixed": self.fixed, "evidence": self.evidence,
                "checks": [result.as_json() for result in self.results]}


def _figure_check(slug: str, check: Callable[[Implementation], Figure]) -> Callable[[Implementation], tuple[bool, str]]:
    def run(implementation: Implementation) -> tuple[bool, str]:
        figure = check(implementation)
        return figure.held, f"{slug}: {figure.summary}"

    return run


def _race_check(slug: str) -> Callable[[Implementation], tuple[bool, str]]:
    def run(implementation: Implementation) -> tuple[bool, str]:
        report = race.explore(slug, implementation)
        return report.held and report.complete, report.message

    return run


def _stress_check(slug: str) -> Callable[[Implementation], tuple[bool, str]]:
    def run(implementation: Implementation) -> tuple[bool, str]:
        observation = stress.observe(slug, implementation.new_manager, implementation=implementation.name)
        return not observation.detected, observation.message

    return run


def checks_for(bug: Bug) -> tuple[Check, ...]:
    """A bug's checks, deterministic ones first."""
    found: list[Check] = []
    if bug.slug in race.SCENARIOS:
        found.append(Check(bug, "every interleaving (frontrun)", DETERMINISTIC, _race_check(bug.slug),
                           needs_frontrun=True))
    for name, function in _SINGLE_THREAD.get(bug.slug, ()):
        found.append(Check(bug, name, DETERMINISTIC, _figure_check(bug.slug, function)))
    if bug.slug in stress.SCENARIOS:
        found.append(Check(bug, "stress on real threads", STRESS, _stress_check(bug.slug)))
    return tuple(found)


_SINGLE_THREAD: dict[str, tuple[tuple[str, Callable[[Implementation], Figure]], ...]] = {
    "cleanup-leak": (
        ("single thread: an empty session is released", released_after_logout),
        ("single thread: no leak past the threshold", no_leak_past_threshold),
    ),
    "id-collision": (
        ("single thread: ids cannot be guessed", ids_not_guessable),
    ),
    "shared-snapshot": (
        ("single thread: a snapshot survives logout", snapshot_kept_after_logout),
    ),
}


def judge(slug: str, implementation: Implementation, *, stress_too: bool = True,
          progress: Callable[[Check], None] | None = None) -> Verdict:
    """Run a bug's checks until one breaks; the bug is fixed when all of them hold.

    With stress_too=False only the deterministic checks run: a quick status.
    """
    bug = catalogue.find(slug)
    results: list[Result] = []
    available, why = race.frontrun_available()
    for check in checks_for(bug):
        if check.kind == STRESS and not stress_too:
            continue
        if check.needs_frontrun and not available:
            results.append(Result(check, None, f"skipped: {why}", 0.0))
            continue
        if progress is not None:
            progress(check)
        started = time.perf_counter()
        held, message = check.run(implementation)
        results.append(Result(check, held, message, time.perf_counter() - started))
        if not held:
            break
    return Verdict(bug, implementation.name, tuple(results))
