"""Every pair of operations, run at once on shared sessions, under every interleaving.

A bug's own scenario runs the two calls that the bug breaks. A fix can break
something that scenario never runs: a second lock taken in the opposite order
on another path, a snapshot that an update still changes, a count that another
call now writes. So, in the manner of Lincheck, the judge also runs short
concurrent scenarios of every pair of operations (create, get, update,
increment, delete, stats) on one shared session, explores every interleaving of
each, and checks every execution:

* the recorded history is linearizable against the sequential model
  (``sessionlab.engines.linearizability.model``), so every result is one a correct manager could give;
* a snapshot returned by get_session never changes afterwards;
* the stats equal the store, and no deleted session waits in the cleanup queue;
* no call raises an error the contract does not define, and no thread deadlocks.

A failure is attributed to the bugs whose operations it involves (a lost key
to lost-updates, a changed snapshot to shared-snapshot, a drifting count to
stats-drift...), so judging one exercise is not confused by another exercise
not yet fixed. Only the pairs that involve a bug's own operations are searched
when that bug is judged.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from types import ModuleType, SimpleNamespace
from typing import Any

from sessionlab.api import SessionError, health_check
from sessionlab.bug import Bug
from sessionlab.engines.exploration.search import clock_for, explore_workers, scope_of
from sessionlab.engines.linearizability.recording import HistoryRecorder
from sessionlab.engines.stress import owners_of
from sessionlab.figure import Figure, plural
from sessionlab.implementations import CodeError, Implementation
from sessionlab.reports.race import RaceReport
from sessionlab.reports.steps import masked

OPERATIONS = ("create", "get", "update", "increment", "delete", "stats")

# Which bugs' exercises own each operation: a failure in a pair is theirs.
OWNERS: dict[str, frozenset[str]] = {
    "create": frozenset({"id-collision"}),
    "get": frozenset({"shared-snapshot"}),
    "update": frozenset({"lost-updates"}),
    "increment": frozenset({"lost-increments"}),
    "delete": frozenset({"stats-drift", "cleanup-leak"}),
    "stats": frozenset({"stats-drift"}),
}

# A failure of one of these kinds belongs to this bug, whatever the pair.
_KIND_OWNER = {"snapshot": "shared-snapshot", "stats": "stats-drift", "queue": "cleanup-leak"}

# Two calls of the same operation that break linearizability are that bug's classic race.
_SAME_PAIR_OWNER = {"create": "id-collision", "update": "lost-updates", "increment": "lost-increments",
                    "delete": "stats-drift"}


def operations_of(bug: Bug) -> tuple[str, ...]:
    """The operations a bug's exercise owns (none for bugs of other tracks)."""
    return tuple(op for op in OPERATIONS if bug.slug in OWNERS[op]) if bug.track == 1 else ()


def pairs_for(bug: Bug) -> list[tuple[str, str]]:
    own = set(operations_of(bug))
    return [(a, b) for i, a in enumerate(OPERATIONS) for b in OPERATIONS[i:] if a in own or b in own]


# -- One execution -------------------------------------------------------------------------


@dataclass
class Run:
    """What the two threads of one execution share."""

    manager: Any
    recorder: HistoryRecorder
    session_id: str
    snapshots: list[tuple[str, Any, tuple]] = field(default_factory=list)  # (who, snapshot, as returned)
    raised: list[tuple[str, str, BaseException]] = field(default_factory=list)  # (who, its operation, error)


def _view(session: Any) -> tuple:
    return (session.user_id, session.username, session.is_authenticated, session.access_count,
            tuple(sorted(dict(session.metadata).items())))


def new_run(implementation: Implementation, start: str) -> Run:
    """A fresh manager, its calls recorded, and the session the pair shares, as STARTS says."""
    recorder = HistoryRecorder()
    manager = recorder.wrap(implementation.new_manager(clock=lambda: 1_700_000_000.0))
    session_id = manager.create_session("user-0", "Ada")
    if start == "stored":
        manager.update_session(session_id, "cart", "empty")
    return Run(manager, recorder, session_id)


def call(run: Run, pair: tuple[str, str], thread: int) -> None:
    """Thread number thread's call of the pair; an error the contract does not define is kept."""
    operation = pair[thread]
    who = f"thread {thread} ({operation})"
    manager, session_id = run.manager, run.session_id
    try:
        if operation == "create":
            manager.create_session(f"user-{thread}", f"user {thread}")
        elif operation == "get":
            snapshot = manager.get_session(session_id)
            run.snapshots.append((who, snapshot, _view(snapshot)))
        elif operation == "update":
            manager.update_session(session_id, ("cart", "theme")[thread], ("3 books", "dark")[thread])
        elif operation == "increment":
            manager.increment_access(session_id)
        elif operation == "delete":
            manager.delete_session(session_id)
        else:
            manager.get_stats()
            manager.get_active_count()
    except (KeyError, ValueError) as exc:
        if not isinstance(exc, SessionError):
            run.raised.append((who, operation, exc))  # a bare KeyError or ValueError from inside
    except SessionError:
        pass  # the contract's own errors are part of the history
    except Exception as exc:
        run.raised.append((who, operation, exc))


_LABELS = {"create": "create_session('user-{t}', ...)", "get": "get_session(s)",
           "update": "update_session(s, {key!r}, ...)", "increment": "increment_access(s)",
           "delete": "delete_session(s)", "stats": "get_stats(), get_active_count()"}


def _label(operation: str, thread: int) -> str:
    return _LABELS[operation].format(t=thread, key=("cart", "theme")[thread])


@dataclass(frozen=True)
class Failure:
    kind: str  # "snapshot", "stats", "queue", "history", "raised"
    summary: str
    owners: frozenset[str]

    def masked(self, session_ids: Iterable[str]) -> Failure:
        """The same failure, each session id in its summary written "s", as the report's labels have it."""
        summary = self.summary
        for session_id in session_ids:
            summary = summary.replace(repr(session_id), "s").replace(session_id, "s")
        return Failure(self.kind, summary, self.owners)


def judge_run(run: Run, pair: tuple[str, str], files: frozenset[str]) -> Failure | None:
    """What went wrong in one run of the pair, or None."""
    a, b = pair
    both = OWNERS[a] | OWNERS[b]
    for who, operation, exc in run.raised:
        # The call that raised is the one that broke its promise: an update that fails because a
        # logout ran beside it is the update's exercise, not the logout's.
        error = CodeError.of(exc, files)
        return Failure("raised", f"{who} raised {error}, an error the contract does not define", OWNERS[operation])
    for who, snapshot, seen in run.snapshots:
        now = _view(snapshot)
        if now != seen:
            return Failure("snapshot", f"the snapshot {who} returned changed afterwards: it showed "
                            f"{_describe(seen)}, then {_describe(now)}", frozenset({"shared-snapshot"}))
    try:
        run.manager.get_session(run.session_id)  # the final state, recorded: a lost write shows here
    except SessionError:
        pass
    verdict = run.recorder.check()
    if not verdict.ok:
        # A history that breaks is a lost or undone write, a double success or a stale read; the
        # cleanup queue is bookkeeping outside it (its failures are of the kind "queue").
        owners = frozenset({_SAME_PAIR_OWNER[a]}) if a == b and a in _SAME_PAIR_OWNER else both - {"cleanup-leak"}
        owners = owners_of(verdict) or owners  # a lost write is its exercise's, whatever the pair
        return Failure("history", f"the results are not linearizable: {verdict.reason}", owners)
    health = health_check(run.manager)
    if health.discrepancy:
        return Failure("stats", f"get_stats() reports {health.active_sessions_reported} active sessions, the "
                        f"store holds {health.active_sessions_actual}", frozenset({"stats-drift"}))
    if health.cleanup_queue_size:
        return Failure("queue", f"{plural(health.cleanup_queue_size, 'deleted session')} still wait in the "
                        f"cleanup queue", frozenset({"cleanup-leak"}))
    return None


def _describe(view: tuple) -> str:
    user, _, authenticated, count, metadata = view
    return f"access_count={count}, metadata={dict(metadata)}" + ("" if authenticated else ", logged out")


# -- The search ----------------------------------------------------------------------------


# Each pair runs on a session that already stored a key, and on a session no call has
# written yet: a fix that creates something on first use (a per-session lock, a counter)
# races only on the very first writes.
STARTS = {"stored": "a session that holds cart='empty'", "fresh": "a session nothing has written yet"}


# A framework's code, traced, gives every call hundreds of shared accesses: a search of every
# interleaving of two unsynchronised calls through Django runs past 10,000. With a framework
# traced, each pair is searched over every interleaving with at most this many preemptions
# (the bug's own scenario is still searched completely). One preemption is what a lost
# update, a lost increment or a double logout needs.
PREEMPTIONS_WITH_A_FRAMEWORK = 1


def preemption_bound(implementation: Implementation) -> int | None:
    """The pairs' preemption bound for an implementation: None (every interleaving) unless it runs on a framework."""
    return PREEMPTIONS_WITH_A_FRAMEWORK if scope_of(implementation)[1].packages else None


def _explore_pair(implementation: Implementation, pair: tuple[str, str],
                  start: str) -> tuple[Failure | None, Any, int]:
    failures: list[Failure] = []
    files = implementation.files
    session_ids: set[str] = set()

    def setup() -> Run:
        run = new_run(implementation, start)
        session_ids.add(run.session_id)
        return run

    def worker(thread: int):
        return lambda run: call(run, pair, thread)

    def invariant(run: Run) -> bool:
        failure = judge_run(run, pair, files)
        if failure is not None:
            failures.append(failure)
        return failure is None

    found = explore_workers(implementation, setup, [worker(0), worker(1)], invariant, replays=0,
                            names=[f"thread {n} ({_label(pair[n], n)})" for n in (0, 1)],
                            preemption_bound=preemption_bound(implementation), clock=clock_for(implementation))
    failure = failures[0] if failures else None
    if failure is None and not found.held:
        failure = Failure("history", found.explanation.splitlines()[0] if found.explanation else "broke",
                           OWNERS[pair[0]] | OWNERS[pair[1]])
    if failure is not None:  # the scenario's session is "s" in the report, as in its labels
        failure = failure.masked(session_ids)
        found = replace(found, steps=masked(found.steps, session_ids))
    return failure, found, found.explored


# What each pair's search found, per loaded module: bugs share pairs (update and increment is
# lost-updates' and lost-increments'), and `check --all` judges one module for every bug.
_FOUND: weakref.WeakKeyDictionary[ModuleType, dict[tuple[tuple[str, str], str], Any]] = weakref.WeakKeyDictionary()


def _explored(implementation: Implementation, pair: tuple[str, str], start: str) -> tuple[Failure | None, Any, int]:
    found = _FOUND.setdefault(implementation.module, {})
    if (pair, start) not in found:
        found[(pair, start)] = _explore_pair(implementation, pair, start)
    return found[(pair, start)]


def search(bug: Bug, implementation: Implementation) -> Figure:
    """Explore every pair that involves the bug's operations; the first failure that is its own breaks."""
    explored, pairs, others = 0, pairs_for(bug), []
    for pair, start in [(pair, start) for start in STARTS for pair in pairs]:
        failure, found, count = _explored(implementation, pair, start)
        explored += count
        if failure is None:
            continue
        if bug.slug not in failure.owners:
            others.append((pair, failure))
            continue
        scenario = SimpleNamespace(
            story=f"two calls at once on {STARTS[start]}: {pair[0]} and {pair[1]}",
            workers=(SimpleNamespace(label=_label(pair[0], 0)), SimpleNamespace(label=_label(pair[1], 1))))
        figure = Figure(False, "every pair holds", f"{pair[0]} + {pair[1]} broke", "")
        report = RaceReport(bug, implementation.name, scenario, False, found.explored, False, found.seconds,
                            figure=figure, steps=found.steps, explanation=found.explanation)
        return Figure(False, "every pair holds", f"{pair[0]} + {pair[1]} broke",
                      f"{pair[0]} and {pair[1]} at once on {STARTS[start]}: {failure.summary} "
                      f"(after {plural(found.explored, 'interleaving')})", history=report.text())
    noted = (f"; {plural(len(others), 'pair')} broke in ways other exercises are about" if others else "")
    bound = preemption_bound(implementation)
    # A search under a preemption bound can prune interleavings within the bound: it is a sample
    # of them, not all (pairs_stress runs the pairs on real threads for what it misses).
    extent = "" if bound is None else (f" (with the framework traced: a search bounded at "
                                       f"{plural(bound, 'preemption')}, not every interleaving)")
    return Figure(True, "every pair holds", "every pair holds",
                  f"{plural(len(pairs), 'pair')} of operations, each on {len(STARTS)} kinds of session, "
                      f"{explored} interleavings{extent}, all held{noted}")
