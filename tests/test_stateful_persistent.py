"""The persistent manager against the sequential model, rule by rule, lifecycle, expiry and restarts included.

Every machine logs in, reads, updates, counts, logs out, moves sessions along
their lifecycle, lets time pass, sweeps, and closes and reopens the file; after
every step each session reads as the model says (live, expired or gone), its
status is the model's, and the stats agree with the store. Each bug adds what
exposes it: calls started at once under every interleaving (two saves, a sweep
and a returning user, a read and a count), two processes interleaved statement
by statement, or a close in the middle of a sweep.

Every call of the manager runs within a bound (sessionlab.pytest_plugin.BoundedCalls):
a call that hangs ends the run at once, saying where it waits, and Hypothesis does
not replay the steps into the same hang.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, settings
from hypothesis.errors import FlakyFailure
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from sessionlab import api, catalogue
from sessionlab.api import IllegalTransition, SessionExpired, SessionNotFound
from sessionlab.bugs import close_order, cross_process_increment
from sessionlab.bugs.persistent import MANAGER, QUIET, Clock
from sessionlab.engines import exploration
from sessionlab.engines.bounded import Hang
from sessionlab.engines.linearizability.model import SessionModel, SessionState
from sessionlab.pytest_plugin import BoundedCalls, BoundedManager

AVAILABLE, WHY = exploration.frontrun_available()
needs_frontrun = pytest.mark.skipif(not AVAILABLE, reason=WHY)

TTL = 60.0
NAMES = st.sampled_from(["ada", "bob"])
KEYS = st.sampled_from(["cart", "theme"])
VALUES = st.sampled_from(["", "dark", "3 books", 7])
STATUSES = st.sampled_from(["in_progress", "completed", "failed", "pending"])
NEXT = {"pending": ("in_progress", "failed"), "in_progress": ("completed", "failed"),
        "completed": (), "failed": (), "expired": ()}

sessions = Bundle("sessions")


def copy_of(path: Path) -> Path:
    """A copy of a closed SQLite file (and its -wal and -shm files), in a folder of its own."""
    folder = Path(tempfile.mkdtemp(prefix="sessionlab-"))
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{path}{suffix}").exists():
            shutil.copy2(f"{path}{suffix}", folder / f"{path.name}{suffix}")
    return folder / path.name


class PersistentMachine(RuleBasedStateMachine):
    """The rules and invariants every machine shares: all of them hold for a correct manager."""

    implementation: Any = None  # set by machine_for()
    calls: Any = None  # BoundedCalls: every call of the manager, bounded; set by machine_for()
    deadlock_is_the_bug = False  # a deadlock of calls started at once is this machine's figure, not a hang

    def __init__(self) -> None:
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="sessionlab-")
        self.path = Path(self.folder) / "sessions.sqlite3"
        self.clock = Clock()
        self.manager = self.open()
        self.model = SessionModel()  # the live sessions
        self.status: dict[str, str] = {}  # every session not deleted: its status
        self.updated: dict[str, float] = {}  # and when it was last written

    def open(self, **options: Any) -> Any:
        return BoundedManager(self.calls, lambda: self.implementation.new(
            MANAGER, path=self.path, ttl=TTL, sweep_interval=QUIET, clock=self.clock, **options), "opening the file")

    def teardown(self) -> None:
        if not self.calls.hung:  # else its stuck thread may hold the lock close waits for
            self.manager.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def expect(self, session: str) -> type[Exception] | None:
        """The error a call on a session must raise, if any."""
        if session not in self.status:
            return SessionNotFound
        return SessionExpired if self.status[session] == "expired" else None

    def write(self, session: str, call) -> Any:
        """A write on the manager; on the model, the same, and the session's last update moves."""
        error = self.expect(session)
        if error is not None:
            with pytest.raises(error):
                call(self.manager)
            return None
        result = call(self.manager)
        self.updated[session] = self.clock.now
        return result

    # -- The track-1 contract ------------------------------------------------------------

    @rule(target=sessions, user=NAMES, name=NAMES)
    def log_in(self, user, name):
        session = self.manager.create_session(user, name)
        self.model.create_session(session, user, name)
        self.status[session], self.updated[session] = "pending", self.clock.now
        return session

    @rule(session=sessions, key=KEYS, value=VALUES)
    def update(self, session, key, value):
        self.write(session, lambda m: m.update_session(session, key, value))
        if self.expect(session) is None:
            self.model.update_session(session, key, value)

    @rule(session=sessions)
    def count_access(self, session):
        count = self.write(session, lambda m: m.increment_access(session))
        if count is not None:
            assert count == self.model.increment_access(session), f"increment_access returned {count}"

    @rule(session=sessions)
    def log_out(self, session):
        if session not in self.status:
            with pytest.raises(SessionNotFound):
                self.manager.delete_session(session)
            return
        self.manager.delete_session(session)
        if session in self.model.session_ids:
            self.model.delete_session(session)
        del self.status[session], self.updated[session]

    # -- The lifecycle, time, sweeps and restarts ----------------------------------------

    @rule(session=sessions, status=STATUSES)
    def move_along_the_lifecycle(self, session, status):
        if session not in self.status:
            with pytest.raises(SessionNotFound):
                self.manager.set_status(session, status)
        elif status not in NEXT[self.status[session]]:
            with pytest.raises(IllegalTransition):
                self.manager.set_status(session, status)
        else:
            self.manager.set_status(session, status)
            self.status[session], self.updated[session] = status, self.clock.now

    @rule(seconds=st.sampled_from([10.0, 35.0, 61.0]))
    def time_passes(self, seconds):
        self.clock.now += seconds

    @rule()
    def sweep(self):
        cutoff = self.clock.now - TTL
        due = [s for s, status in self.status.items()
               if status in ("pending", "in_progress") and self.updated[s] < cutoff]
        assert self.manager.expire_sessions() == len(due), f"expected {len(due)} sessions to expire"
        for session in due:
            self.status[session] = "expired"
            self.model.delete_session(session)  # no longer live: reads raise SessionExpired

    @rule()
    def restart(self):
        self.manager.close()
        self.manager = self.open()

    # -- Invariants ----------------------------------------------------------------------

    @invariant()
    def every_session_reads_as_the_model_says(self):
        def reads(manager) -> None:
            for session, status in self.status.items():
                assert manager.get_status(session) == status, session
                if status == "expired":
                    with pytest.raises(SessionExpired):
                        manager.get_session(session)
                else:
                    assert SessionState.of(manager.get_session(session)) == self.model.states[session]

        self.manager.within_bound(reads, "reading every session")

    @invariant()
    def stats_agree_with_the_store(self):
        health = self.manager.within_bound(api.health_check, "a health check")
        live = sum(status != "expired" for status in self.status.values())
        assert health.discrepancy == 0 and health.active_sessions_actual == live, health

    # -- Bursts: calls started at once on a copy of the current file ----------------------

    def snapshot(self) -> Path:
        """The file as it is now, in a folder of its own: the manager is closed for the copy, then reopened."""
        self.manager.close()
        copied = copy_of(self.path)
        self.manager = self.open()
        return copied

    def burst(self, workers, check, ahead: float = 0.0) -> None:
        """Start workers at once, each with the manager of a fresh copy, under every interleaving
        (on the copy, the clock is ahead by `ahead` seconds)."""
        copies: list[Path] = [self.snapshot()]
        clock = Clock(self.clock.now + ahead)

        def setup() -> Any:
            copies.append(copy_of(copies[0]))
            return self.implementation.new(MANAGER, path=copies[-1], ttl=TTL, sweep_interval=QUIET, clock=clock)

        problems: list[str] = []

        def holds(manager) -> bool:
            try:
                problem = check(manager, copies[-1])
            finally:
                manager.close()
            if problem:
                problems.append(problem)
            return not problem

        try:
            found = exploration.explore_workers(self.implementation, setup, workers, holds, replays=0,
                                                seconds=self.calls.bound(scenario=True))
        except Hang as hang:
            if hang.deadlock and self.deadlock_is_the_bug:
                raise AssertionError(f"calls started at once deadlock: {hang.summary}") from None
            self.calls.stop(hang, "calls started at once")
        finally:
            for path in copies:
                shutil.rmtree(path.parent, ignore_errors=True)
        assert found.held, f"after {found.explored} interleavings: {problems[0] if problems else found.explanation}"

    def live(self, session: str) -> bool:
        return self.expect(session) is None


class StaleCache:
    @initialize(target=sessions)
    def first_two_saves_at_once(self):
        """Every run starts with the bug's own burst, then goes on with the rules."""
        session = self.log_in("ada", "ada")
        self.two_saves_of_one_key_at_once(session, ["dark", "3 books"])
        return session

    @rule(session=sessions, values=st.lists(VALUES, min_size=2, max_size=2, unique=True))
    def two_saves_of_one_key_at_once(self, session, values):
        assume(self.live(session))

        def check(manager, path) -> str:
            cached = manager.get_session(session).metadata.get("cart")
            with self.implementation.new(MANAGER, path=path, sweep_interval=QUIET) as fresh:
                stored = fresh.get_session(session).metadata.get("cart")
            return "" if cached == stored else f"the cache serves cart = {cached!r}, the database holds {stored!r}"

        self.burst([lambda m, v=v: m.update_session(session, "cart", v) for v in values], check)


class ExpiryRace:
    @initialize(target=sessions)
    def first_a_sweep_while_the_user_comes_back(self):
        """Every run starts with the bug's own burst, then goes on with the rules."""
        session = self.log_in("ada", "ada")
        self.a_sweep_while_the_user_comes_back(session)
        return session

    @rule(session=sessions)
    def a_sweep_while_the_user_comes_back(self, session):
        assume(self.live(session) and self.status[session] in ("pending", "in_progress"))
        touched: list[bool] = []

        def touch(manager) -> None:
            try:
                manager.increment_access(session)
                touched.append(True)
            except SessionExpired:
                touched.append(False)

        def check(manager, path) -> str:
            expired = manager.get_status(session) == "expired"
            done = touched.pop() if touched else False
            return "a request counted an access, then the sweep expired the session" if done and expired else ""

        # On the copy, the session has been idle past its time to live.
        self.burst([lambda m: m.expire_sessions(), touch], check, ahead=TTL + 10)


class LockOrderDeadlock:
    deadlock_is_the_bug = True

    @initialize(target=sessions)
    def first_a_read_and_a_count_at_once(self):
        """Every run starts with the bug's own burst, then goes on with the rules."""
        session = self.log_in("ada", "ada")
        self.a_read_and_a_count_at_once(session)
        return session

    @rule(session=sessions)
    def a_read_and_a_count_at_once(self, session):
        assume(self.live(session))
        self.restart()  # the read misses the cache
        self.burst([lambda m: m.get_session(session), lambda m: m.increment_access(session)],
                   lambda manager, path: "")


class CrossProcessIncrement:
    @initialize()
    def two_processes_count_at_once(self):
        """Once per run (it takes 0.3 s, and does not depend on the machine's state)."""
        figure = self.calls.run(lambda: cross_process_increment.no_increment_lost_between_processes(
            self.implementation), "two processes counting at once", scenario=True)
        assert figure.held, figure.summary


class CloseOrder:
    @initialize()
    def close_in_the_middle_of_a_sweep(self):
        """Once per run (it takes 0.2 s on correct code, and does not depend on the machine's state)."""
        figure = self.calls.run(lambda: close_order.closed_under_its_sweeper(self.implementation),
                                "closing in the middle of a sweep", scenario=True)
        assert figure.held, figure.summary


MIXINS = {"stale-cache": StaleCache, "expiry-race": ExpiryRace, "lock-order-deadlock": LockOrderDeadlock,
          "cross-process-increment": CrossProcessIncrement, "close-order": CloseOrder}


def machine_for(slug: str, implementation, calls: BoundedCalls) -> type[RuleBasedStateMachine]:
    name = "PersistentMachine_" + catalogue.find(slug).marker
    return type(name, (MIXINS[slug], PersistentMachine), {"implementation": implementation, "calls": calls})


# The machines whose bug's rule does not depend on the machine's state need few runs.
EXAMPLES = {"cross-process-increment": 4, "close-order": 4}


def run_machine(slug: str, impl, calls: BoundedCalls) -> None:
    try:
        with calls.failing_on_a_hang():
            run_state_machine_as_test(lambda: machine_for(slug, impl, calls)(),
                                      settings=settings(max_examples=EXAMPLES.get(slug, 10)))
    except FlakyFailure as flaky:
        # A burst found a bad interleaving and Hypothesis's replay of the same steps did not find it
        # again (a search of a burst under load does not always reach the same interleavings, as on
        # track 1: tests/test_stateful.py). The failure found stands.
        found = next((exc for exc in flaky.exceptions if isinstance(exc, AssertionError)), None)
        if found is None:
            raise
        raise found from None


@needs_frontrun
@pytest.mark.stale_cache
def test_stateful_stale_cache(impl, bounded_calls):
    run_machine("stale-cache", impl, bounded_calls)


@needs_frontrun
@pytest.mark.expiry_race
def test_stateful_expiry_race(impl, bounded_calls):
    run_machine("expiry-race", impl, bounded_calls)


@needs_frontrun
@pytest.mark.lock_order_deadlock
def test_stateful_lock_order_deadlock(impl, bounded_calls):
    run_machine("lock-order-deadlock", impl, bounded_calls)


@pytest.mark.cross_process_increment
def test_stateful_cross_process_increment(impl, bounded_calls):
    run_machine("cross-process-increment", impl, bounded_calls)


@pytest.mark.close_order
def test_stateful_close_order(impl, bounded_calls):
    run_machine("close-order", impl, bounded_calls)
