"""The contract, one thread at a time: what every operation returns, and how bad input is refused.

Both buggy and fixed pass these: their bugs only show under concurrency (or,
for the leak and the shared snapshot, in the checks marked for them). The
checks of sessionlab.judge.contract, which the judge runs on a learner's code, run
here too, against both.
"""

from __future__ import annotations

import logging
import re
import shutil
import textwrap
import threading
import tracemalloc
from pathlib import Path

import pytest

from sessionlab import api, implementations
from sessionlab.api import InvalidInput, Session, SessionError, SessionNotFound
from sessionlab.judge import contract, hostile
from sessionlab.learner import workspace


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: float = 1_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def manager(impl, clock):
    with impl.new_manager(clock=clock) as manager:
        yield manager


def state(manager) -> tuple:
    """Everything a failed call must leave as it was (the miss counter aside: it counts failed lookups)."""
    stats = manager.get_stats()
    return (
        stats.total_sessions, stats.active_sessions, stats.cache_hits, stats.failed_cleanups,
        manager.get_active_count(), manager.get_cleanup_queue_size(),
    )


# -- create, get and update ------------------------------------------------------


def test_create_returns_a_well_formed_id_and_a_fresh_session(manager, clock):
    session_id = manager.create_session("u-1", "Ada")
    assert api.check_session_id(session_id) == session_id
    session = manager.get_session(session_id)
    assert isinstance(session, Session)
    assert session == Session(
        session_id=session_id, user_id="u-1", username="Ada", is_authenticated=True,
        access_count=0, metadata={}, created_at=clock.now, last_accessed=clock.now,
    )


def test_update_sets_and_overwrites_keys_and_touches_the_session(manager, clock):
    session_id = manager.create_session("u-1", "Ada")
    created = clock.now
    clock.tick(5)
    assert manager.update_session(session_id, "theme", "dark") is None
    manager.update_session(session_id, "cart", 3)
    manager.update_session(session_id, "theme", "light")
    session = manager.get_session(session_id)
    assert dict(session.metadata) == {"theme": "light", "cart": 3}
    assert (session.created_at, session.last_accessed) == (created, created + 5)


@pytest.mark.parametrize("value", [None, True, False, 0, -(2**63 - 1), 2**63 - 1, 1.5, "", "x" * api.MAX_VALUE_LENGTH])
def test_update_accepts_every_json_scalar_within_limits(manager, value):
    session_id = manager.create_session("u-1", "Ada")
    manager.update_session(session_id, "k", value)
    stored = manager.get_session(session_id).metadata["k"]
    assert stored == value and type(stored) is type(value)


def test_update_accepts_up_to_the_key_limit_and_overwrites_at_the_limit(manager):
    session_id = manager.create_session("u-1", "Ada")
    for n in range(api.MAX_METADATA_KEYS):
        manager.update_session(session_id, f"k{n}", n)
    manager.update_session(session_id, "k0", "again")
    assert len(manager.get_session(session_id).metadata) == api.MAX_METADATA_KEYS


# -- stats and health (create, get, increment and delete: see the contract checks below) ----


def test_stats_count_sessions_and_lookups(manager):
    ids = [manager.create_session(f"u-{n}", "n") for n in range(3)]
    manager.update_session(ids[0], "k", 1)
    manager.delete_session(ids[0])
    manager.get_session(ids[1])
    manager.get_session(ids[2])
    with pytest.raises(SessionNotFound):
        manager.get_session(ids[0])
    assert manager.get_stats() == api.Stats(
        total_sessions=3, active_sessions=2, cache_hits=2, cache_misses=1, failed_cleanups=0
    )
    assert manager.get_active_count() == 2
    assert manager.get_cleanup_queue_size() == 0
    health = api.health_check(manager)
    assert (health.healthy, health.discrepancy, health.memory_leak_detected) == (True, 0, False)


def test_health_flags_a_discrepancy_and_a_leak():
    class Drifting:
        def get_stats(self):
            return api.Stats(total_sessions=9, active_sessions=7, cache_hits=0, cache_misses=0, failed_cleanups=0)

        def get_active_count(self):
            return 5

        def get_cleanup_queue_size(self):
            return api.LEAK_THRESHOLD + 1

    health = api.health_check(Drifting())  # type: ignore[arg-type]
    assert (health.discrepancy, health.memory_leak_detected, health.healthy) == (2, True, False)


# -- close ----------------------------------------------------------------------------


def test_closed_manager_refuses_every_operation(impl):
    manager = impl.new_manager()
    session_id = manager.create_session("u-1", "Ada")
    with manager:
        pass
    manager.close()  # closing twice is harmless
    for call in (
        lambda: manager.create_session("u-2", "Bob"),
        lambda: manager.get_session(session_id),
        lambda: manager.update_session(session_id, "k", 1),
        lambda: manager.increment_access(session_id),
        lambda: manager.delete_session(session_id),
    ):
        with pytest.raises(SessionError, match="closed"):
            call()
    assert api.health_check(manager).active_sessions_actual == 1  # still inspectable


# -- bad input: a typed error, and nothing changes ------------------------------------

BAD_NAMES, BAD_IDS, BAD_KEYS, BAD_VALUES = hostile.BAD_NAMES, hostile.BAD_IDS, hostile.BAD_KEYS, hostile.BAD_VALUES


@pytest.fixture
def busy(manager):
    """A manager holding a session with some data, and what it held."""
    session_id = manager.create_session("u-1", "Ada")
    manager.update_session(session_id, "theme", "dark")
    manager.increment_access(session_id)
    before = manager.get_session(session_id)
    return manager, session_id, before


def assert_unchanged(manager, session_id, before, counters):
    assert state(manager) == counters
    assert manager.get_session(session_id) == before


@pytest.mark.parametrize("bad", BAD_NAMES, ids=repr)
@pytest.mark.parametrize("field", ["user_id", "username"])
def test_create_refuses_bad_names(busy, field, bad):
    manager, session_id, before = busy
    counters = state(manager)
    args = {"user_id": "u-2", "username": "Bob", field: bad}
    with pytest.raises(InvalidInput, match=field):
        manager.create_session(**args)
    assert_unchanged(manager, session_id, before, counters)


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("operation", ["get", "update", "increment", "delete"])
def test_malformed_ids_are_refused(busy, operation, bad):
    manager, session_id, before = busy
    counters = state(manager)
    call = {
        "get": lambda: manager.get_session(bad),
        "update": lambda: manager.update_session(bad, "k", 1),
        "increment": lambda: manager.increment_access(bad),
        "delete": lambda: manager.delete_session(bad),
    }[operation]
    with pytest.raises(InvalidInput, match="session_id"):
        call()
    assert_unchanged(manager, session_id, before, counters)
    assert manager.get_stats().cache_misses == 0


@pytest.mark.parametrize("operation", ["get", "update", "increment", "delete"])
def test_unknown_ids_raise_session_not_found(busy, operation):
    manager, session_id, before = busy
    counters = state(manager)
    unknown = "no-such-session"
    call = {
        "get": lambda: manager.get_session(unknown),
        "update": lambda: manager.update_session(unknown, "k", 1),
        "increment": lambda: manager.increment_access(unknown),
        "delete": lambda: manager.delete_session(unknown),
    }[operation]
    with pytest.raises(SessionNotFound) as raised:
        call()
    assert isinstance(raised.value, KeyError) and raised.value.session_id == unknown
    assert unknown in str(raised.value)
    assert_unchanged(manager, session_id, before, counters)


@pytest.mark.parametrize("bad", BAD_KEYS, ids=repr)
def test_update_refuses_bad_keys(busy, bad):
    manager, session_id, before = busy
    counters = state(manager)
    with pytest.raises(InvalidInput, match="key"):
        manager.update_session(session_id, bad, "v")
    assert_unchanged(manager, session_id, before, counters)


@pytest.mark.parametrize("bad", BAD_VALUES, ids=lambda v: f"{type(v).__name__}-{str(v)[:12]}")
def test_update_refuses_bad_values(busy, bad):
    manager, session_id, before = busy
    counters = state(manager)
    with pytest.raises(InvalidInput, match="value|float|integer"):
        manager.update_session(session_id, "theme", bad)
    assert_unchanged(manager, session_id, before, counters)


def test_update_refuses_a_key_past_the_limit(manager):
    session_id = manager.create_session("u-1", "Ada")
    for n in range(api.MAX_METADATA_KEYS):
        manager.update_session(session_id, f"k{n}", n)
    before = manager.get_session(session_id)
    with pytest.raises(InvalidInput, match=str(api.MAX_METADATA_KEYS)):
        manager.update_session(session_id, "one-too-many", 1)
    assert manager.get_session(session_id) == before


def test_errors_share_one_base_and_keep_their_builtin_kinds():
    assert issubclass(SessionNotFound, SessionError) and issubclass(SessionNotFound, KeyError)
    assert issubclass(InvalidInput, SessionError) and issubclass(InvalidInput, ValueError)
    assert issubclass(api.SessionExpired, SessionError)


def call_shape(function) -> tuple:
    """How a function is called: each parameter's kind, its name where a caller can use it,
    and its default. Annotations, and names no caller can pass by, do not count."""
    import inspect

    shape = []
    for index, parameter in enumerate(inspect.signature(function).parameters.values()):
        if index == 0 and parameter.kind is parameter.POSITIONAL_OR_KEYWORD:
            shape.append("self")  # the instance: its name is nobody's business
            continue
        named = parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        shape.append((parameter.kind.name, parameter.name if named else "",
                      None if parameter.default is parameter.empty else repr(parameter.default)))
    return tuple(shape)


def public_api(cls) -> dict[str, tuple]:
    import inspect

    return {name: call_shape(member) for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_") or name in ("__init__", "__enter__", "__exit__")}


def test_both_packages_offer_the_same_public_api(impl):
    import fixed

    assert public_api(impl.module.SessionManager) == public_api(fixed.SessionManager)
    assert isinstance(impl.new_manager(), api.SessionManager)


def test_the_api_comparison_ignores_what_does_not_change_a_call():
    class Annotated:
        def update_session(this, session_id: str, key: str, value: object) -> None: ...
        def __exit__(self, *exc_info: object) -> None: ...

    class Plain:
        def update_session(self, session_id, key, value): ...
        def __exit__(self, *args): ...

    class Renamed:
        def update_session(self, session, key, value): ...  # update_session(session_id=...) breaks
        def __exit__(self, *args): ...

    assert public_api(Annotated) == public_api(Plain)
    assert public_api(Renamed) != public_api(Plain)


# -- the contract's checks, as the judge runs them ------------------------------------------

CHECKS = contract.contract_checks()


@pytest.mark.parametrize("name, check", CHECKS, ids=[re.sub(r"\W+", "-", name)[:48] for name, _ in CHECKS])
def test_the_contract_check_holds(impl, name, check):
    figure = check(impl)
    assert figure.held, figure.summary


def test_the_whole_contract_holds(impl):
    figure = contract.run_contract(impl)
    assert figure.held and figure.summary.startswith(f"the contract holds: {len(CHECKS)} checks"), figure.summary


def variant(tmp_path: Path, name: str, source: str) -> implementations.Implementation:
    """A copy of buggy/ with one method replaced (as tests/test_fixes.py builds its variants)."""
    folder = tmp_path / "variant"
    shutil.copytree(Path(__file__).resolve().parent.parent / "buggy", folder,
                    ignore=shutil.ignore_patterns("__pycache__"))
    workspace.replace_functions(folder / workspace.MODULE, {name: textwrap.indent(textwrap.dedent(source), "    ")})
    return implementations.load(str(folder))


def test_the_contract_rejects_a_fix_that_stores_a_key_before_the_size_check(tmp_path):
    stores_first = variant(tmp_path, "SessionManager.update_session", """
        def update_session(self, session_id, key, value):
            check_session_id(session_id)
            check_key(key)
            check_value(value)
            now = self._clock()
            with self._lock:
                record = self._require(session_id)
                record.metadata = dict(record.metadata)
                record.metadata[key] = value
                record.last_accessed = now
                check_metadata_size(record.metadata)
    """)
    figure = contract.run_contract(stores_first)
    assert not figure.held
    assert figure.summary.startswith("the contract broke: update_session rejected a 65th key but stored it anyway: "
                                     "the session now holds 65 keys"), figure.summary


def test_the_contract_names_the_line_where_hostile_input_raised(tmp_path):
    trusting = variant(tmp_path, "SessionManager.update_session", """
        def update_session(self, session_id, key, value):
            check_session_id(session_id)
            if not isinstance(key, str):
                raise InvalidInput("metadata key must be a string")
            with self._lock:
                record = self._require(session_id)
                record.metadata = {**record.metadata, key: value}
    """)
    figure = dict(CHECKS)["hostile values are refused with InvalidInput, and never asked to describe themselves"](
        trusting)
    assert not figure.held
    assert re.match(r"update_session raised TypeError: unhashable type: 'EqOnly' \(\S*manager\.py:\d+ in "
                    r"SessionManager\.update_session\) for a str subclass that overrides only __eq__", figure.summary)


# -- hardening: describing bad input, hashing snapshots, logging, the clock -------------------


def test_describing_a_rejected_value_is_bounded_and_never_calls_it():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    big = b"x" * 10_000_000

    class Named(type):  # a metaclass whose classes' name and equality raise
        __name__ = property(lambda cls: 1 / 0)  # type: ignore[assignment]
        __eq__, __hash__ = (lambda cls, other: 1 / 0), type.__hash__

    raising = dict(hostile.hostile_values())["an object whose every method raises"]
    for value in (deep, raising, Named("N", (), {})(), 10**5000, "\n" * 10**6):
        with pytest.raises(InvalidInput) as raised:
            api.check_value(value)
        assert len(str(raised.value)) < 200 and "\n" not in str(raised.value)
    tracemalloc.start()
    with pytest.raises(InvalidInput, match="bytes of length 10000000"):
        api.check_name("user_id", big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 100_000, f"describing a 10 MB value took {peak} bytes"


def test_snapshots_hash_by_value(manager):
    session_id = manager.create_session("u-1", "Ada")
    manager.update_session(session_id, "theme", "dark")
    first, second = manager.get_session(session_id), manager.get_session(session_id)
    assert first == second and hash(first) == hash(second) and len({first, second}) == 1
    manager.update_session(session_id, "theme", "light")
    assert manager.get_session(session_id) != second


def test_a_session_tag_names_a_session_without_giving_its_id_away():
    tag = api.session_tag("abc")
    assert tag == api.session_tag("abc") != api.session_tag("abd") and re.fullmatch("[0-9a-f]{8}", tag)


def test_no_session_id_is_ever_logged(impl, caplog):
    caplog.set_level(logging.DEBUG)
    with impl.new_manager() as manager:
        ids = [manager.create_session(f"u-{n}", "Ada\u00e9") for n in range(3)]
        for session_id in ids:
            manager.update_session(session_id, "theme", "dark")
            manager.increment_access(session_id)
            manager.get_session(session_id)
        manager.delete_session(ids[0])
        for call in (lambda: manager.delete_session(ids[0]), lambda: manager.get_session(ids[0]),
                     lambda: manager.create_session("u\nforged", "x"), lambda: manager.update_session(ids[1], "", 1)):
            with pytest.raises(SessionError):
                call()
    logged = [record.getMessage() + repr(record.args) for record in caplog.records]
    assert any(api.session_tag(ids[0]) in line for line in logged), "login and logout are logged by their tag"
    assert not [line for line in logged for session_id in ids if session_id in line]


def test_a_clock_that_reads_the_manager_does_not_deadlock_it(impl):
    class Reading:
        manager = None

        def __call__(self) -> float:
            if self.manager is not None:
                self.manager.get_active_count()  # takes the manager's lock
            return 1_000_000.0

    clock = Reading()
    manager = clock.manager = impl.new_manager(clock=clock)

    def session_calls() -> None:
        session_id = manager.create_session("u-1", "Ada")
        manager.update_session(session_id, "theme", "dark")
        manager.increment_access(session_id)
        manager.delete_session(session_id)

    thread = threading.Thread(target=session_calls, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "a clock that calls the manager deadlocked it: the clock runs under its lock"
