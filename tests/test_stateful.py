"""The manager against a plain sequential model, rule by rule (Hypothesis stateful testing).

Every machine runs the same rules on a real manager and on the model
(sessionlab.engines.linearizability.model): log in, read, update, count an access, log out, and calls
with bad input that must be refused without changing anything. After every
step the invariants must hold: each live session reads exactly as the model
says, the stats agree with the store, and the cleanup queue stays bounded.

Each bug adds what exposes it. For a race, that is a burst: two calls started
at once on the current state, run under every interleaving frontrun can
produce, where every outcome must be linearizable (some one-at-a-time order of
the calls explains every result and the final state). For the others, it is an
invariant: deleted sessions are released, ids cannot be guessed, snapshots do
not change. Machines are per bug so that each fails only for its own bug.

Every call of the manager runs within a bound (sessionlab.pytest_plugin.BoundedCalls):
a call that hangs ends the run at once, saying where it waits, and Hypothesis does
not replay the steps into the same hang.

Profiles: the default is small and derandomized (the same examples every run);
``--hypothesis-profile=thorough`` explores far more.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import assume, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyFailure
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule, run_state_machine_as_test

from sessionlab import api, catalogue
from sessionlab.api import InvalidInput, Session
from sessionlab.engines import exploration
from sessionlab.engines.bounded import Hang
from sessionlab.engines.linearizability.checker import check as linearizable
from sessionlab.engines.linearizability.history import Operation
from sessionlab.engines.linearizability.model import SessionModel, SessionState
from sessionlab.pytest_plugin import BoundedCalls, BoundedManager

AVAILABLE, WHY = exploration.frontrun_available()

NAMES = st.sampled_from(["ada", "bob", "cy"])
KEYS = st.sampled_from(["cart", "theme", "lang"])
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "dark", "3 books"]))

LIVE = object()  # stands for a live session's id in a bad call
BAD_CALLS = [
    ("create_session", (None, "ada")),
    ("create_session", ("", "ada")),
    ("create_session", ("ada", 7)),
    ("create_session", ("x" * (api.MAX_NAME_LENGTH + 1), "ada")),
    ("get_session", (42,)),
    ("get_session", ("not an id!",)),
    ("get_session", ("x" * (api.MAX_SESSION_ID_LENGTH + 1),)),
    ("update_session", (LIVE, "", 1)),
    ("update_session", (LIVE, 3, 1)),
    ("update_session", (LIVE, "k" * (api.MAX_KEY_LENGTH + 1), 1)),
    ("update_session", (LIVE, "cart", [1, 2])),
    ("update_session", (LIVE, "cart", math.nan)),
    ("update_session", (LIVE, "cart", "v" * (api.MAX_VALUE_LENGTH + 1))),
    ("increment_access", (None,)),
    ("delete_session", (b"raw-bytes",)),
    ("delete_session", ("../../etc/passwd",)),
]

sessions = Bundle("sessions")


def outcome(call, *args) -> tuple[str, Any]:
    """What a call did: ("returned", value) or ("raised", error class name)."""
    try:
        value = call(*args)
    except api.SessionError as error:
        return "raised", type(error).__name__
    return "returned", SessionState.of(value) if isinstance(value, Session) else value


# -- Bursts: calls started at once, under every interleaving ----------------------------


@dataclass
class Call:
    """One call of a burst, and what it did. Each worker writes only its own Call."""

    name: str
    args: tuple  # with the ids of the burst's own manager
    result: Any = None
    error: str | None = None
    snapshot: Session | None = None  # what get_session returned, kept as returned
    seen: SessionState | None = None  # what that snapshot showed when it returned


@dataclass
class Burst:
    manager: Any  # a fresh manager holding the model's sessions
    ids: dict[str, str]  # model id -> id of the same session in this manager
    calls: list[Call]


def run_call(call: Call, manager: Any) -> None:
    try:
        result = getattr(manager, call.name)(*call.args)
    except api.SessionError as error:
        call.error = type(error).__name__
        return
    if isinstance(result, Session):
        call.snapshot, call.seen = result, SessionState.of(result)
        call.result = replace(result, metadata=dict(result.metadata))
    else:
        call.result = result


def history(burst: Burst) -> list[Operation]:
    """The burst's calls, all overlapping, then a read of every session they touched."""
    operations = [Operation(f"call {n}", call.name, call.args, call.result, call.error, 0, 1)
                  for n, call in enumerate(burst.calls)]
    touched = {op.session_id for op in operations if isinstance(op.session_id, str)}
    for session_id in sorted(touched):
        try:
            operations.append(Operation("afterwards", "get_session", (session_id,),
                                        burst.manager.get_session(session_id), None, 2, 3))
        except api.SessionError as error:
            operations.append(Operation("afterwards", "get_session", (session_id,), None,
                                        type(error).__name__, 2, 3))
    return operations


def describe(calls) -> str:
    return ", ".join(f"{name}({', '.join(repr(a) for a in args)})" for name, args in calls)


# -- The machines ---------------------------------------------------------------------


class SessionMachine(RuleBasedStateMachine):
    """The rules and invariants every machine shares: all of them hold for a correct manager."""

    implementation: Any = None  # set by machine_for()
    calls: Any = None  # BoundedCalls: every call of the manager, bounded; set by machine_for()

    def __init__(self) -> None:
        super().__init__()
        self.manager = BoundedManager(self.calls, self.implementation.new_manager)
        self.model = SessionModel()

    def teardown(self) -> None:
        if not self.calls.hung:  # else its stuck thread may hold the lock close waits for
            self.manager.close()

    def same(self, name: str, *args: Any) -> Any:
        """Make one call on the manager and on the model; they must agree."""
        expected = outcome(getattr(self.model, name), *args)
        got = outcome(getattr(self.manager, name), *args)
        assert got == expected, f"{name}{args}: the manager {got[0]} {got[1]!r}, a correct one {expected[0]} {expected[1]!r}"
        return got[1]

    @rule(target=sessions, user=NAMES, name=NAMES)
    def log_in(self, user, name):
        session_id = self.manager.create_session(user, name)
        self.model.create_session(session_id, user, name)
        return session_id

    @rule(session=sessions)
    def read(self, session):
        self.same("get_session", session)

    @rule(session=sessions, key=KEYS, value=VALUES)
    def update(self, session, key, value):
        self.same("update_session", session, key, value)

    @rule(session=sessions)
    def count_access(self, session):
        self.same("increment_access", session)

    @rule(session=sessions)
    def log_out(self, session):
        self.same("delete_session", session)

    @rule(call=st.sampled_from(BAD_CALLS), session=sessions)
    def bad_input_changes_nothing(self, call, session):
        name, args = call
        args = tuple(session if arg is LIVE else arg for arg in args)
        before = self.counts()
        with pytest.raises(InvalidInput):
            getattr(self.manager, name)(*args)
        assert self.counts() == before, f"{name}{args} was refused but changed the manager"

    def counts(self) -> tuple:
        def counts(manager) -> tuple:
            stats = manager.get_stats()
            return (stats.total_sessions, stats.active_sessions, manager.get_active_count(),
                    manager.get_cleanup_queue_size())

        return self.manager.within_bound(counts, "reading the counts")

    @invariant()
    def every_live_session_reads_as_the_model_says(self):
        read = self.manager.within_bound(
            lambda manager: {session_id: SessionState.of(manager.get_session(session_id))
                             for session_id in self.model.states}, "reading every live session")
        for session_id, state in self.model.states.items():
            assert read[session_id] == state, session_id

    @invariant()
    def stats_agree_with_the_store(self):
        health = self.manager.within_bound(api.health_check, "a health check")
        assert health.discrepancy == 0, f"stats report {health.active_sessions_reported} active, the store holds {health.active_sessions_actual}"
        assert health.active_sessions_actual == self.model.get_active_count()

    @invariant()
    def the_cleanup_queue_stays_bounded(self):
        assert not self.manager.within_bound(api.health_check, "a health check").memory_leak_detected

    def burst(self, calls: list[tuple[str, tuple]]) -> list[str]:
        """Start calls at once under every interleaving: each outcome must be linearizable.

        Then make the same calls one at a time on the machine's own manager and
        model, so the run goes on from the state a correct manager would be in.
        """
        states = self.model.states
        implementation = self.implementation

        def setup() -> Burst:
            manager = implementation.new_manager()
            ids = {}
            for session_id, state in states.items():
                ids[session_id] = manager.create_session(state.user_id, state.username)
                for key, value in state.metadata:
                    manager.update_session(ids[session_id], key, value)
                for _ in range(state.access_count):
                    manager.increment_access(ids[session_id])
            return Burst(manager, ids, [Call(name, tuple(ids.get(a, a) if isinstance(a, str) else a for a in args))
                                        for name, args in calls])

        problems: list[str] = []

        def every_outcome_is_linearizable(burst: Burst) -> bool:
            verdict = linearizable(history(burst), initial={burst.ids[s]: state for s, state in states.items()})
            if not verdict.ok:
                problems.append(verdict.reason)
            for call in burst.calls:
                if call.snapshot is not None and SessionState.of(call.snapshot) != call.seen:
                    problems.append(f"a snapshot changed after get_session returned it: it showed "
                                    f"{dict(call.seen.metadata)}, now {dict(call.snapshot.metadata)}")
            health = api.health_check(burst.manager)
            if health.discrepancy:
                problems.append(f"stats report {health.active_sessions_reported} active sessions, "
                                f"the store holds {health.active_sessions_actual}")
            return not problems

        workers = [lambda burst, n=n: run_call(burst.calls[n], burst.manager) for n in range(len(calls))]
        try:
            found = exploration.explore_workers(implementation, setup, workers, every_outcome_is_linearizable,
                                                replays=0, seconds=self.calls.bound(scenario=True))
        except Hang as hang:
            self.calls.stop(hang, f"calls started at once: {describe(calls)}")
        assert found.held, (f"calls started at once: {describe(calls)}; after {found.explored} interleavings, "
                            f"one is not linearizable: {problems[0] if problems else found.explanation}")
        created = []
        for name, args in calls:
            if name == "create_session":
                session_id = self.manager.create_session(*args)
                self.model.create_session(session_id, *args)
                created.append(session_id)
            else:
                self.same(name, *args)
        return created

    def live(self, session: str) -> bool:
        return session in self.model.session_ids


class LostUpdates:
    @rule(session=sessions, keys=st.lists(KEYS, min_size=2, max_size=2, unique=True), value=VALUES)
    def two_updates_at_once(self, session, keys, value):
        assume(self.live(session))
        self.burst([("update_session", (session, key, value)) for key in keys])


class LostIncrements:
    @rule(session=sessions)
    def two_accesses_at_once(self, session):
        assume(self.live(session))
        self.burst([("increment_access", (session,))] * 2)


class StatsDrift:
    @rule(session=sessions)
    def two_logouts_at_once(self, session):
        assume(self.live(session))
        self.burst([("delete_session", (session,))] * 2)


def neighbours(session_id: str) -> list[str]:
    """Ids a user could try after seeing their own: every run of digits moved up or down by up to 3."""
    guesses = []
    for match in re.finditer(r"\d+", session_id):
        number, width = int(match.group()), len(match.group())
        for step in (-3, -2, -1, 1, 2, 3):
            if number + step >= 0:
                guesses.append(session_id[: match.start()] + f"{number + step:0{width}d}" + session_id[match.end():])
    return guesses


class IdCollision:
    @rule(target=sessions, users=st.lists(NAMES, min_size=2, max_size=2))
    def two_logins_at_once(self, users):
        return multiple(*self.burst([("create_session", (user, user)) for user in users]))

    @invariant()
    def no_id_can_be_guessed_from_another(self):
        live = self.model.session_ids
        for session_id in live:
            guessed = [guess for guess in neighbours(session_id) if guess in live]
            assert not guessed, f"from session id {session_id}, a user can guess {guessed[0]}"


class CleanupLeak:
    @invariant()
    def every_deleted_session_is_released(self):
        queued = self.manager.get_cleanup_queue_size()
        assert queued == 0, f"{queued} deleted sessions still wait in the cleanup queue"


class SharedSnapshot:
    def __init__(self) -> None:
        super().__init__()
        self.kept: list[tuple[Session, SessionState]] = []

    @rule(session=sessions)
    def keep_a_snapshot(self, session):
        assume(self.live(session))
        snapshot = self.manager.get_session(session)
        self.kept.append((snapshot, SessionState.of(snapshot)))

    @rule(session=sessions, key=KEYS, value=VALUES)
    def store_then_read_while_logging_out(self, session, key, value):
        """A page reads a session that holds data while another tab logs it out."""
        assume(self.live(session))
        self.same("update_session", session, key, value)
        self.burst([("get_session", (session,)), ("delete_session", (session,))])

    @invariant()
    def kept_snapshots_never_change(self):
        for snapshot, seen in self.kept:
            assert SessionState.of(snapshot) == seen, (
                f"a snapshot of session {snapshot.session_id} showed {dict(seen.metadata)} when it was "
                f"read and now shows {dict(snapshot.metadata)}")


MIXINS = {
    "lost-updates": LostUpdates,
    "lost-increments": LostIncrements,
    "cleanup-leak": CleanupLeak,
    "stats-drift": StatsDrift,
    "id-collision": IdCollision,
    "shared-snapshot": SharedSnapshot,
}


def machine_for(slug: str, implementation, calls: BoundedCalls) -> type[RuleBasedStateMachine]:
    mixin = MIXINS[slug]
    name = "SessionMachine_" + catalogue.find(slug).marker
    return type(name, (mixin, SessionMachine), {"implementation": implementation, "calls": calls})


def run_machine(slug: str, impl, calls: BoundedCalls) -> None:
    try:
        with calls.failing_on_a_hang():
            run_state_machine_as_test(lambda: machine_for(slug, impl, calls)(), settings=settings())
    except FlakyFailure as flaky:
        # A burst found a bad interleaving, and Hypothesis's replay of the same steps did not
        # find it again: frontrun's search of a burst does not reach the same interleavings
        # every time (measured: 1 search in 60 of buggy's double logout held). The failure
        # found stands.
        found = next((exc for exc in flaky.exceptions if isinstance(exc, AssertionError)), None)
        if found is None:
            raise
        raise found from None


# Bursts run under frontrun; without it only the machines that need no burst run.
needs_frontrun = pytest.mark.skipif(not AVAILABLE, reason=WHY)


@needs_frontrun
@pytest.mark.lost_updates
def test_stateful_lost_updates(impl, bounded_calls):
    run_machine("lost-updates", impl, bounded_calls)


@needs_frontrun
@pytest.mark.lost_increments
def test_stateful_lost_increments(impl, bounded_calls):
    run_machine("lost-increments", impl, bounded_calls)


@pytest.mark.cleanup_leak
def test_stateful_cleanup_leak(impl, bounded_calls):
    run_machine("cleanup-leak", impl, bounded_calls)


@needs_frontrun
@pytest.mark.stats_drift
def test_stateful_stats_drift(impl, bounded_calls):
    run_machine("stats-drift", impl, bounded_calls)


@needs_frontrun
@pytest.mark.id_collision
def test_stateful_id_collision(impl, bounded_calls):
    run_machine("id-collision", impl, bounded_calls)


@needs_frontrun
@pytest.mark.shared_snapshot
def test_stateful_shared_snapshot(impl, bounded_calls):
    run_machine("shared-snapshot", impl, bounded_calls)


# -- The counterexamples are small -------------------------------------------------------

CALLS_PER_RULE = {"two_updates_at_once": 2, "two_accesses_at_once": 2, "two_logouts_at_once": 2,
                  "two_logins_at_once": 2, "store_then_read_while_logging_out": 3}


def operations_in(example: list[str], machine: type) -> int:
    """How many manager calls a falsifying example makes (a burst counts each of its calls)."""
    rules = {name for name in dir(machine) if hasattr(getattr(machine, name), "hypothesis_stateful_rule")}
    count = 0
    for line in example:
        called = line.split("state.", 1)[1].split("(", 1)[0] if "state." in line else ""
        if called in rules:
            count += CALLS_PER_RULE.get(called, 1)
    return count


def falsifying_example(notes: list[str]) -> list[str]:
    """The steps of the run Hypothesis reported, from building the machine to its teardown."""
    lines = [line for note in notes for line in note.splitlines()]
    start = next((n for n, line in enumerate(lines) if line.startswith("state = ")), None)
    if start is None:
        return []
    end = next((n for n, line in enumerate(lines[start:], start) if line.startswith("state.teardown()")), len(lines))
    return lines[start:end + 1]


@pytest.mark.parametrize("slug", [pytest.param(slug, marks=[] if slug == "cleanup-leak" else [needs_frontrun])
                                  for slug in MIXINS])
def test_each_bug_shrinks_to_a_small_counterexample(slug):
    buggy = _pristine_buggy()
    machine = machine_for(slug, buggy, BoundedCalls(buggy.files))
    # Hypothesis notes the falsifying example on the failure of its last replay. When that replay
    # does not find the interleaving again (see run_machine), the FlakyFailure it raises carries
    # the first run's failures, without the example: the run is made again, up to three times.
    for _ in range(3):
        with pytest.raises((AssertionError, FlakyFailure)) as failure:
            run_state_machine_as_test(machine, settings=settings())
        raised = [failure.value, *getattr(failure.value, "exceptions", ())]
        notes = [note for exc in raised for note in getattr(exc, "__notes__", [])]
        example = falsifying_example(notes)
        if example or not isinstance(failure.value, FlakyFailure):
            break
    assert example, f"{slug}: no falsifying example in {notes}"
    calls = operations_in(example, machine)
    assert 1 <= calls <= 4, f"{slug}: shrank to {calls} calls:\n" + "\n".join(example)


def _pristine_buggy():
    from sessionlab import implementations

    return implementations.load("buggy")
