"""The contract, one thread at a time: what every operation returns, and how bad input is refused.

Both buggy and fixed pass these: their bugs only show under concurrency (or,
for the leak and the shared snapshot, in the checks marked for them).
"""

from __future__ import annotations

import math

import pytest

from sessionlab import api
from sessionlab.api import InvalidInput, Session, SessionError, SessionNotFound


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


# -- create and get -------------------------------------------------------------


def test_create_returns_a_well_formed_id_and_a_fresh_session(manager, clock):
    session_id = manager.create_session("u-1", "Ada")
    assert api.check_session_id(session_id) == session_id
    session = manager.get_session(session_id)
    assert isinstance(session, Session)
    assert session == Session(
        session_id=session_id, user_id="u-1", username="Ada", is_authenticated=True,
        access_count=0, metadata={}, created_at=clock.now, last_accessed=clock.now,
    )


def test_each_login_gets_its_own_session(manager):
    ids = [manager.create_session(f"u-{n}", "same name") for n in range(50)]
    assert len(set(ids)) == 50
    assert [manager.get_session(i).user_id for i in ids] == [f"u-{n}" for n in range(50)]


def test_session_is_a_frozen_snapshot(manager):
    session = manager.get_session(manager.create_session("u-1", "Ada"))
    with pytest.raises(AttributeError):
        session.access_count = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        session.metadata["role"] = "admin"  # type: ignore[index]


# -- update ---------------------------------------------------------------------


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


# -- increment ------------------------------------------------------------------


def test_increment_counts_and_returns_the_new_count(manager, clock):
    session_id = manager.create_session("u-1", "Ada")
    counts = []
    for _ in range(5):
        clock.tick()
        counts.append(manager.increment_access(session_id))
    assert counts == [1, 2, 3, 4, 5]
    session = manager.get_session(session_id)
    assert (session.access_count, session.last_accessed) == (5, clock.now)


# -- delete, stats, health ------------------------------------------------------------


def test_delete_logs_out_once(manager):
    session_id = manager.create_session("u-1", "Ada")
    manager.update_session(session_id, "theme", "dark")
    manager.delete_session(session_id)
    with pytest.raises(SessionNotFound):
        manager.get_session(session_id)
    with pytest.raises(SessionNotFound):
        manager.delete_session(session_id)
    assert manager.get_active_count() == 0


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

BAD_NAMES = [None, 42, b"bytes", ["u"], "", "   ", "x" * (api.MAX_NAME_LENGTH + 1)]
BAD_IDS = [None, 7, b"abc", "", "has space", "../../etc/passwd", "semi;colon", "x" * (api.MAX_SESSION_ID_LENGTH + 1)]
BAD_KEYS = [None, 3, ("k",), "", "k" * (api.MAX_KEY_LENGTH + 1)]
BAD_VALUES = [[1, 2], {"a": 1}, {1}, b"raw", object(), math.nan, math.inf, 2**63, "v" * (api.MAX_VALUE_LENGTH + 1)]


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


def test_both_packages_offer_the_same_public_api(impl):
    import inspect

    import fixed

    public = lambda cls: {  # noqa: E731
        name: str(inspect.signature(member))
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") or name in ("__init__", "__enter__", "__exit__")
    }
    assert public(impl.module.SessionManager) == public(fixed.SessionManager)
    assert isinstance(impl.new_manager(), api.SessionManager)
