"""The contract one call at a time, as checks the judge runs against any implementation.

buggy, fixed and a learner's copy must all hold every check: the track-1 bugs
only show under concurrency or in their own checks, so a check that breaks here
means the code broke the contract itself, e.g. a fix that stores a rejected key.
The judge (``sessionlab.judge.checks``) runs ``run_contract`` before a bug's own
checks, so such a fix is not called FIXED. A broken check's summary says what
broke in the learner's terms ("update_session rejected a 65th key but stored it
anyway: the session now holds 65 keys"). A call that raises where the contract
expects a result is not caught: the judge reports it as an error at its line.

Every check uses a fresh manager under a clock moved by hand and stays clear of
what the six bugs change one call at a time (a deleted session's data, a
snapshot's view of later writes, the queue of a session that stored nothing),
so the pristine buggy holds too. The whole contract takes about 10 ms. On
PersistentSessionManager the checks of ``persistent_contract`` follow (about 0.2 s).
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Callable
from typing import Any

from sessionlab import api
from sessionlab.api import MAX_KEY_LENGTH, MAX_METADATA_KEYS, MAX_NAME_LENGTH, InvalidInput, Session, SessionError
from sessionlab.api import SessionNotFound
from sessionlab.api import _describe as describe
from sessionlab.figure import Broken, Figure, expect, plural
from sessionlab.implementations import CodeError, Implementation
from sessionlab.judge import hostile, persistent_contract
from sessionlab.judge.hostile import HOSTILE_NUMBERS, hostile_values

__all__ = ["ContractCheck", "contract_checks", "hostile_values", "run_contract"]

ContractCheck = Callable[[Implementation], Figure]

START = 1_000_000.0  # where every check's clock starts
FIELDS = tuple(Session.__dataclass_fields__)



# -- Running one check -------------------------------------------------------------------------


def _raises(call: Callable[[], object], kind: type[BaseException]) -> bool:
    try:
        call()
    except kind:
        return True
    return False  # (any other exception propagates: the judge reports it where it was raised)


class _Clock:
    now = START

    def __call__(self) -> float:
        return self.now


def _session_view(session: Any) -> dict[str, Any]:
    return {field: dict(session.metadata) if field == "metadata" else getattr(session, field) for field in FIELDS}


class _Probe:
    """One fresh manager of the implementation, under a clock moved by hand."""

    def __init__(self, implementation: Implementation, manager_class: str):
        self.files, self.clock = implementation.files, _Clock()
        self.manager = implementation.new(manager_class, clock=self.clock)

    def login(self, user_id: str = "u-1", username: str = "Ada") -> str:
        return self.manager.create_session(user_id, username)

    def view(self, session_id: str | None) -> dict[str, Any] | None:
        try:
            return None if session_id is None else _session_view(self.manager.get_session(session_id))
        except SessionNotFound:
            return None

    def counts(self, misses: bool) -> dict[str, int]:
        stats, manager = self.manager.get_stats(), self.manager
        names = ("total_sessions", "active_sessions", "cache_hits", "failed_cleanups") + ("cache_misses",) * misses
        return {**{name: getattr(stats, name) for name in names}, "get_active_count()": manager.get_active_count(),
                "get_cleanup_queue_size()": manager.get_cleanup_queue_size()}

    def refused(self, operation: str, label: str, call: Callable[[], object], *, rule: str, watch: str | None,
                error: type[Exception] = InvalidInput, misses: bool = True) -> None:
        """call() must raise error and change nothing: neither the session watch nor any count."""
        before, counts = self.view(watch), self.counts(misses)
        self.clock.now += 1  # a session touched anyway shows it in last_accessed
        try:
            call()
        except error:
            pass
        except Exception as exc:
            raised = CodeError.of(exc, self.files)
            where = f" ({raised.where})" if raised.where else ""
            raise Broken(f"{operation} raised {raised.message}{where} for {label}; the contract says "
                          f"{error.__name__}: {rule}", error.__name__, type(exc).__name__) from None
        else:
            raise Broken(f"{operation} accepted {label}: {rule}", error.__name__, "accepted")
        changes = _changes(counts, self.counts(misses), before, self.view(watch))
        expect(not changes, f"{operation} rejected {label} but {changes}", "nothing changed", changes)


def _changes(counts: dict, counts_after: dict, before: dict | None, after: dict | None) -> str:
    """What a refused call changed anyway, in words; empty if nothing."""
    found = ["deleted the session anyway"] if before is not None and after is None else []
    if before is not None and after is not None:
        old, new = before["metadata"], after["metadata"]
        if any(key not in old for key in new):
            found.append(f"stored it anyway: the session now holds {plural(len(new), 'key')}")
        found += [f"changed it anyway: metadata {key!r} is now {describe(new.get(key))}, was {describe(old[key])}"
                  for key in old if new.get(key, ...) != old[key] or type(new.get(key)) is not type(old[key])]
        found += [f"changed the session anyway: {field} {before[field]!r} -> {after[field]!r}"
                  for field in FIELDS if field != "metadata" and before[field] != after[field]]
    found += [f"changed the counts anyway: {name} {counts[name]} -> {counts_after[name]}"
              for name in counts if counts[name] != counts_after[name]]
    return "; ".join(found)


_CHECKS: list[tuple[str, Callable[[_Probe], str]]] = []


def _check(name: str) -> Callable[[Callable[[_Probe], str]], Callable[[_Probe], str]]:
    """Register a check: it returns what held, or raises Broken saying what broke."""
    return lambda function: _CHECKS.append((name, function)) or function


def _runner(function: Callable[[_Probe], str], manager_class: str) -> ContractCheck:
    def run(implementation: Implementation) -> Figure:
        probe = _Probe(implementation, manager_class)
        try:
            summary = function(probe)
        except Broken as broken:
            with contextlib.suppress(Exception):  # the check already broke: that is the figure
                probe.manager.close()
            return broken.figure()
        probe.manager.close()
        return Figure(True, "holds", "holds", summary)

    return run


def contract_checks(manager_class: str = "SessionManager") -> tuple[tuple[str, ContractCheck], ...]:
    """Every check of the contract on a class, in the order run_contract runs them: (name, check)."""
    extra = persistent_contract.contract_checks() if manager_class == persistent_contract.MANAGER else ()
    return tuple((name, _runner(function, manager_class)) for name, function in _CHECKS) + extra


def run_contract(implementation: Implementation, manager_class: str = "SessionManager") -> Figure:
    """Run every check on a new manager of the class each; the first that breaks is the figure."""
    checks = contract_checks(manager_class)
    for _, check in checks:
        figure = check(implementation)
        if not figure.held:
            return Figure(False, figure.expected, figure.got, f"the contract broke: {figure.summary}")
    return Figure(True, "the contract", "holds", f"the contract holds: {plural(len(checks), 'check')}, "
                  f"one call at a time, bad and hostile input included")


# -- The checks --------------------------------------------------------------------------------


@_check("create_session starts a fresh session of its own; get_session returns a read-only snapshot")
def _fresh_sessions(p: _Probe) -> str:
    ids = [p.login(f"u-{n}", "Ada") for n in range(20)]
    expect(type(ids[0]) is str and not _raises(lambda: api.check_session_id(ids[0]), InvalidInput),
            f"create_session returned {describe(ids[0])}, not a well-formed session id")
    expect(len(set(ids)) == 20, f"20 logins got {len(set(ids))} distinct session ids", "20", str(len(set(ids))))
    session = p.manager.get_session(ids[0])
    expect(isinstance(session, Session), f"get_session returned {describe(session)}, not a sessionlab.api.Session")
    want = {"session_id": ids[0], "user_id": "u-0", "username": "Ada", "is_authenticated": True, "access_count": 0,
            "metadata": {}, "created_at": START, "last_accessed": START}
    for field, got in _session_view(session).items():
        expect(got == want[field] and type(got) is type(want[field]), f"a new session has {field} "
                f"{want[field]!r}, but get_session returned {got!r}", repr(want[field]), repr(got))
    for n, session_id in enumerate(ids):
        owner = p.manager.get_session(session_id).user_id
        expect(owner == f"u-{n}", f"the session created for user u-{n} belongs to {owner!r}")
    expect(p.manager.get_active_count() == 20, f"after 20 logins get_active_count() says "
            f"{p.manager.get_active_count()}", "20", str(p.manager.get_active_count()))
    expect(_raises(lambda: setattr(session, "access_count", 5), AttributeError),
            "setting access_count on a snapshot did not raise AttributeError: a snapshot is read-only")
    expect(_raises(lambda: operator.setitem(session.metadata, "role", "admin"), TypeError),
            "setting a key of a snapshot's metadata did not raise TypeError: a snapshot is read-only")
    expect(p.view(ids[0]) == _session_view(session) == want, "writing to a snapshot changed the session")
    return "20 logins, 20 distinct fresh sessions, each its user's, each a read-only snapshot"


@_check("update_session sets, overwrites and keeps every JSON scalar, and touches the session")
def _updates(p: _Probe) -> str:
    session_id = p.login()
    p.clock.now += 5
    result = p.manager.update_session(session_id, "theme", "dark")
    expect(result is None, f"update_session returned {describe(result)}; it returns None")
    p.manager.update_session(session_id, "cart", 3)
    p.manager.update_session(session_id, "theme", "light")
    got = _session_view(p.manager.get_session(session_id))
    expect(got["metadata"] == {"theme": "light", "cart": 3}, f"after setting theme, cart, then theme again, the "
            f"session holds {got['metadata']!r}", "{'theme': 'light', 'cart': 3}", repr(got["metadata"]))
    expect((got["created_at"], got["last_accessed"]) == (START, START + 5), f"an update at {START + 5} left "
            f"created_at {got['created_at']} and last_accessed {got['last_accessed']}; it touches last_accessed only")
    for value in hostile.GOOD_VALUES:
        p.manager.update_session(session_id, "k", value)
        stored = p.manager.get_session(session_id).metadata["k"]
        same = stored == value and type(stored) is type(value)
        if same and type(value) is float:
            same = math.copysign(1.0, stored) == math.copysign(1.0, value)  # -0.0 stays -0.0
        expect(same, f"update_session stored {describe(value)} as {describe(stored)}")
    return f"keys set and overwritten, {len(hostile.GOOD_VALUES)} values kept with their types, last_accessed touched"


@_check(f"update_session takes {MAX_METADATA_KEYS} keys and refuses a {MAX_METADATA_KEYS + 1}th")
def _key_limit(p: _Probe) -> str:
    session_id = p.login()
    for n in range(MAX_METADATA_KEYS):
        p.manager.update_session(session_id, f"k{n}", n)
    p.manager.update_session(session_id, "k0", "again")
    held = len(p.manager.get_session(session_id).metadata)
    expect(held == MAX_METADATA_KEYS, f"after {MAX_METADATA_KEYS} keys and an overwrite the session holds "
            f"{plural(held, 'key')}")
    p.refused("update_session", f"a {MAX_METADATA_KEYS + 1}th key",
              lambda: p.manager.update_session(session_id, "one-too-many", 1),
              rule=f"a session holds at most {MAX_METADATA_KEYS} metadata keys", watch=session_id)
    return f"{MAX_METADATA_KEYS} keys taken, an overwrite at the limit too, the {MAX_METADATA_KEYS + 1}th refused"


@_check("increment_access counts one access and returns the new count")
def _increments(p: _Probe) -> str:
    session_id = p.login()
    counts = []
    for tick in range(1, 6):
        p.clock.now = START + tick
        counts.append(p.manager.increment_access(session_id))
    expect(counts == [1, 2, 3, 4, 5], f"five increments returned {counts}", "[1, 2, 3, 4, 5]", repr(counts))
    got = _session_view(p.manager.get_session(session_id))
    expect((got["access_count"], got["last_accessed"], got["created_at"]) == (5, p.clock.now, START),
            f"after five increments the session holds access_count {got['access_count']}, last_accessed "
            f"{got['last_accessed']}, created_at {got['created_at']}")
    return "five increments counted 1 to 5 and touched the session"


@_check("delete_session logs a session out once and leaves the others")
def _deletes(p: _Probe) -> str:
    gone, kept = p.login("u-1", "Ada"), p.login("u-2", "Bob")
    for session_id in (gone, kept):
        p.manager.update_session(session_id, "theme", session_id)
    expect(p.manager.delete_session(gone) is None, "delete_session returned something; it returns None")
    expect(p.view(gone) is None, "get_session still finds a session after delete_session")
    p.refused("delete_session", "a session already logged out", lambda: p.manager.delete_session(gone),
              error=SessionNotFound, rule="a second logout finds nothing", watch=kept, misses=False)
    expect((p.view(kept) or {}).get("metadata") == {"theme": kept}, "deleting one session changed another one")
    expect(p.manager.get_active_count() == 1, f"one of two sessions deleted, but get_active_count() says "
            f"{p.manager.get_active_count()}", "1")
    return "the session is gone, a second logout raises SessionNotFound, the other session is untouched"


@_check("the stats count sessions and lookups")
def _stats(p: _Probe) -> str:
    ids = [p.login(f"u-{n}", "n") for n in range(3)]
    p.manager.update_session(ids[0], "k", 1)
    p.manager.delete_session(ids[0])
    p.manager.get_session(ids[1])
    p.manager.get_session(ids[2])
    expect(_raises(lambda: p.manager.get_session(ids[0]), SessionNotFound), "get_session found a deleted session")
    stats = p.manager.get_stats()
    want = {"total_sessions": 3, "active_sessions": 2, "cache_hits": 2, "cache_misses": 1, "failed_cleanups": 0}
    for name, value in want.items():
        got = getattr(stats, name)
        expect(got == value, f"after 3 logins, 1 logout, 2 lookups that found their session and 1 that did not, "
                f"get_stats().{name} is {got}", str(value), str(got))
    if callable(getattr(p.manager, "expire_sessions", None)):
        p.manager.expire_sessions()  # a persistent manager purges deleted rows when it sweeps
    health = api.health_check(p.manager)
    expect((health.active_sessions_actual, health.cleanup_queue_size, health.healthy) == (2, 0, True),
            f"health_check found {health.active_sessions_actual} sessions, {health.cleanup_queue_size} queued: "
            f"expected 2 live sessions and none queued")
    return "stats and health agree with a scripted sequence of 9 calls"


def _by_id(p: _Probe, session_id: object) -> dict[str, Callable[[], object]]:
    return {"get_session": lambda: p.manager.get_session(session_id),
            "update_session": lambda: p.manager.update_session(session_id, "k", 1),
            "increment_access": lambda: p.manager.increment_access(session_id),
            "delete_session": lambda: p.manager.delete_session(session_id)}


@_check("malformed session ids are refused, unknown ones raise SessionNotFound")
def _session_ids(p: _Probe) -> str:
    watch = p.login()
    p.manager.update_session(watch, "theme", "dark")
    for bad in hostile.BAD_IDS:
        for operation, call in _by_id(p, bad).items():
            p.refused(operation, f"session_id {describe(bad)}", call, watch=watch,
                      rule="a session id is a non-empty string of letters, digits, '-' and '_' (and a "
                      "malformed one is not counted as a cache miss)")
    for operation, call in _by_id(p, "no-such-session").items():
        p.refused(operation, "an unknown session id", call, error=SessionNotFound, watch=watch, misses=False,
                  rule="an id that names no live session raises SessionNotFound")
        try:
            call()
        except SessionNotFound as exc:
            expect(exc.session_id == "no-such-session", f"{operation} raised a SessionNotFound that does not "
                    f"name the unknown id")
    return f"{len(hostile.BAD_IDS)} malformed ids refused by 4 operations, an unknown id not found, nothing changed"


@_check("bad names, keys and values are refused")
def _bad_input(p: _Probe) -> str:
    watch = p.login()
    p.manager.update_session(watch, "theme", "dark")
    for field in ("user_id", "username"):
        for bad in hostile.BAD_NAMES:
            args = {"user_id": "u-2", "username": "Bob", field: bad}
            p.refused("create_session", f"{field} {describe(bad)}", lambda: p.manager.create_session(**args),
                      rule=f"a {field} is a non-empty string of at most {MAX_NAME_LENGTH} characters", watch=watch)
    for bad in hostile.BAD_KEYS:
        p.refused("update_session", f"key {describe(bad)}", lambda: p.manager.update_session(watch, bad, "v"),
                  rule=f"a key is a non-empty string of at most {MAX_KEY_LENGTH} characters", watch=watch)
    for bad in hostile.BAD_VALUES:
        p.refused("update_session", f"value {describe(bad)}", lambda: p.manager.update_session(watch, "theme", bad),
                  rule="a value is a str UTF-8 can encode (at most 4096 characters), a 64-bit int, a finite "
                  "float, a bool or None", watch=watch)
    return (f"{2 * len(hostile.BAD_NAMES)} bad names, {len(hostile.BAD_KEYS)} bad keys and "
            f"{len(hostile.BAD_VALUES)} bad values refused")


@_check("close() ends every session call and leaves the manager inspectable")
def _close(p: _Probe) -> str:
    session_id = p.login()
    with p.manager as entered:
        expect(entered is p.manager, "'with manager as m' gave m another object than the manager")
    expect(not p.manager.__exit__(LookupError, LookupError("in the block"), None),
            "the manager's __exit__ swallows an exception raised inside its with block")
    p.manager.close()  # closing twice is harmless
    for operation, call in {**_by_id(p, session_id),
                            "create_session": lambda: p.manager.create_session("u-2", "Bob")}.items():
        p.refused(operation, "a call after close()", call, error=SessionError, watch=None, misses=False,
                  rule="a closed manager refuses every session call with SessionError")
    expect(p.manager.get_active_count() == 1, f"a closed manager holding 1 session says get_active_count() "
            f"{p.manager.get_active_count()}")
    return "after close, every session call raises SessionError, and stats still answer"


@_check("hostile values are refused with InvalidInput, and never asked to describe themselves")
def _hostile(p: _Probe) -> str:
    watch = p.login()
    p.manager.update_session(watch, "theme", "dark")
    refused = 0
    for label, bad in hostile_values():
        calls = {("create_session", "user_id"): lambda: p.manager.create_session(bad, "Bob"),
                 ("create_session", "username"): lambda: p.manager.create_session("u-2", bad),
                 ("update_session", "key"): lambda: p.manager.update_session(watch, bad, "v"),
                 ("update_session", "value"): lambda: p.manager.update_session(watch, "theme", bad)}
        calls.update({(operation, "session_id"): call for operation, call in _by_id(p, bad).items()})
        for (operation, field), call in calls.items():
            p.refused(operation, f"{label} as {field}", call, watch=watch,
                      rule="only exact str (or, for values, exact int, float, bool, None) is accepted")
            refused += 1
    for label, bad in HOSTILE_NUMBERS:
        p.refused("update_session", f"{label} as value", lambda: p.manager.update_session(watch, "theme", bad),
                  watch=watch, rule="only exact str, int, float, bool or None is accepted")
        refused += 1
    return f"{refused} hostile calls refused, nothing changed"


@_check("control characters are refused in user ids, user names and keys")
def _control_characters(p: _Probe) -> str:
    watch = p.login()
    for char in hostile.CONTROL_CHARACTERS:
        for field, call in (("user_id", lambda: p.manager.create_session(f"ada{char}x", "Ada")),
                            ("username", lambda: p.manager.create_session("u-2", f"Ada{char}x")),
                            ("key", lambda: p.manager.update_session(watch, f"k{char}x", 1))):
            p.refused("create_session" if field != "key" else "update_session", f"a {field} holding {char!a}",
                      call, watch=watch, rule="a newline, a control character, a bidi override or a lone surrogate "
                      "would forge, reorder or drop log lines")
    session_id = p.login("zoë-7", "Zoë 日本 👩‍💻")
    p.manager.update_session(session_id, "größe", "x")
    got = p.manager.get_session(session_id)
    expect((got.user_id, got.username, list(got.metadata)) == ("zoë-7", "Zoë 日本 👩‍💻", ["größe"]),
            "printable non-ASCII names and keys were not kept as given")
    return (f"{3 * len(hostile.CONTROL_CHARACTERS)} names and keys with control characters refused; "
            "printable Unicode kept")
