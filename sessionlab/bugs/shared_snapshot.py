"""Bug 6, shared snapshot: get_session hands out a view of the live metadata instead of a copy."""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from typing import Any

from sessionlab.api import SessionNotFound
from sessionlab.bug import ATOMICITY_VIOLATION, Bug
from sessionlab.engines.exploration.threads import RaceScenario, State, Worker
from sessionlab.engines.stress import NewManager, Scenario, run_threads
from sessionlab.figure import Figure, plural
from sessionlab.implementations import Implementation

BUG = Bug(
    number=6,
    slug="shared-snapshot",
    title="Shared snapshot",
    bug_class=ATOMICITY_VIOLATION,
    track=1,
    mistake=(
        "get_session wraps the live metadata dict in a read-only view instead of copying it; "
        "logout wipes that dict in place"
    ),
    symptom=(
        "a page rendered while the user logs out in another tab crashes with "
        "'dictionary changed size during iteration' or shows half the data"
    ),
    scenario=(
        "200 steps; in each, 4 threads render a session's metadata twice from one snapshot "
        "while another thread logs the session out; both renders must agree"
    ),
    functions=("_Record.snapshot", "SessionManager._release"),
)


def render(metadata: Any) -> str:
    """Render metadata as HTML table rows, the way a page template walks it."""
    return "".join(
        f"<tr><td>{html.escape(key)}</td><td>{html.escape(str(value))}</td></tr>"
        for key, value in metadata.items()
    )


# -- Stress: 4 pages render a session while another tab logs it out -----------------------

SNAPSHOT_READERS = 4
SNAPSHOT_STEPS = 200
SNAPSHOT_KEYS = 20


def stress_round(new_manager: NewManager) -> Figure:
    changed: list[str] = []  # what each bad read saw
    reads = [0] * SNAPSHOT_READERS
    step = {"session": ""}

    with new_manager() as manager:

        def next_step() -> None:
            # Runs in one thread while every other thread waits at the barrier.
            session_id = manager.create_session("user-1", "shopper")
            for n in range(SNAPSHOT_KEYS):
                manager.update_session(session_id, f"item-{n}", f"product {n}")
            step["session"] = session_id

        barrier = threading.Barrier(SNAPSHOT_READERS + 1, action=next_step)

        def worker(index: int) -> None:
            for _ in range(SNAPSHOT_STEPS):
                barrier.wait()
                if index == SNAPSHOT_READERS:
                    manager.delete_session(step["session"])  # the logout in another tab
                    continue
                try:
                    snapshot = manager.get_session(step["session"])
                except SessionNotFound:
                    continue  # logged out before this read: nothing to render
                reads[index] += 1
                try:
                    first = render(snapshot.metadata)
                    second = render(snapshot.metadata)
                except RuntimeError as exc:
                    changed.append(f"RuntimeError: {exc}")
                    continue
                if first.count("<tr>") != SNAPSHOT_KEYS:
                    changed.append(f"read a session of {SNAPSHOT_KEYS} items and rendered "
                                   f"{first.count('<tr>')} rows")
                elif first != second:
                    changed.append(f"rendered {first.count('<tr>')} rows, then {second.count('<tr>')} "
                                   f"rows from the same snapshot")

        run_threads(SNAPSHOT_READERS + 1, worker, barriers=[barrier])
    total = sum(reads)
    if not changed:
        return Figure(True, "0", "0", f"{total} snapshots read while their session was logged out; none changed")
    crashed = sum(1 for what in changed if what.startswith("RuntimeError"))
    example = next((what for what in changed if what.startswith("RuntimeError")), changed[0])
    return Figure(
        False, "0 changed", f"{len(changed)} changed",
        f"{len(changed)} of {total} snapshots changed after get_session returned them, while their "
        f"session was logged out ({crashed} renders crashed; e.g. {example})",
    )


STRESS = Scenario(BUG, stress_round, round_rate=0.7)


# -- Race: a page renders a session while another tab logs it out ---------------------------

_STORED = (("cart", "3 books"), ("theme", "dark"))


def _read_and_render(state: State) -> None:
    try:
        snapshot = state.manager.get_session(state.session_id)
    except SessionNotFound:
        return  # logged out before the page was read: nothing to render
    state.seen["snapshot"] = snapshot
    state.seen["rendered"] = render(snapshot.metadata)


def _logout(state: State) -> None:
    state.manager.delete_session(state.session_id)


def _snapshot_whole(state: State) -> Figure:
    """A snapshot that was read must show the session as it was, then and later."""
    if "snapshot" not in state.seen:
        return Figure(True, "unchanged", "not read", "the logout came first; there was no snapshot to render")
    stored = len(_STORED)
    at_read = state.seen["rendered"].count("<tr>")
    after = render(state.seen["snapshot"].metadata).count("<tr>")
    if at_read == after == stored:
        return Figure(True, f"{stored} rows", f"{after} rows", "the snapshot rendered the same after logout")
    if at_read != stored:
        return Figure(False, f"{stored} rows", f"{at_read} rows",
                      f"get_session returned the session, but the page rendered {at_read} of its {stored} "
                      f"rows: the logout in another tab wiped the data the snapshot was being made from")
    return Figure(False, f"{stored} rows", f"{after} rows",
                  f"the page read the session and rendered {at_read} rows; after the logout in another tab "
                  f"the same snapshot renders {after} rows: get_session handed out live data, not a snapshot")


RACE = RaceScenario(
    BUG,
    "a page reads the session and renders its cart while the user logs out in another tab",
    (Worker("get_session(s), render", _read_and_render), Worker("delete_session(s)", _logout)),
    _snapshot_whole,
    metadata=_STORED,
)


# -- Single thread: a snapshot survives every later write ------------------------------------


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


_FIELDS = ("user_id", "username", "is_authenticated", "access_count", "metadata")


def _as_seen(session: Any) -> tuple:
    return (session.user_id, session.username, session.is_authenticated, session.access_count,
            tuple(sorted(dict(session.metadata).items())))


def _changed(before: tuple, after: tuple) -> list[str]:
    return [name for name, old, new in zip(_FIELDS, before, after) if old != new]


def _what_changed(before: tuple, after: tuple) -> str:
    """Each changed field, old value to new, metadata as a dict."""
    shown = {"metadata": dict}
    return ", ".join(f"{name} {shown.get(name, repr)(old)} became {shown.get(name, repr)(new)}"
                     for name, old, new in zip(_FIELDS, before, after) if old != new)


def _writers() -> tuple[tuple[str, Any], ...]:
    """Every call that writes, as (what it is, what it does to a manager and a session id)."""

    def cleanup(manager: Any, session_id: str) -> None:
        for n in range(3):  # other users log in and out: cleanup runs over the queue
            other = manager.create_session(f"u-{n + 2}", "visitor")
            manager.update_session(other, "theme", "light")
            manager.delete_session(other)

    return (
        ("update_session of the same key", lambda m, s: m.update_session(s, "cart", "empty")),
        ("update_session of a new key", lambda m, s: m.update_session(s, "lang", "fr")),
        ("increment_access", lambda m, s: m.increment_access(s)),
        ("delete_session (logout)", lambda m, s: m.delete_session(s)),
        ("the cleanup of other sessions", cleanup),
        ("close()", lambda m, s: m.close()),
    )


def snapshot_survives_every_writer(implementation: Implementation) -> Figure:
    """shared-snapshot: a snapshot never changes after it is returned, whatever writes next."""
    writers = _writers()
    for name, write in writers:
        with implementation.new_manager() as manager:
            session_id = manager.create_session("u-1", "Ada")
            for key, value in _STORED:
                manager.update_session(session_id, key, value)
            snapshot = manager.get_session(session_id)
            before = _as_seen(snapshot)
            write(manager, session_id)
            after = _as_seen(snapshot)
        if after != before:
            changed = _changed(before, after)
            return Figure(False, "unchanged", f"{', '.join(changed)} changed",
                          f"a snapshot read before {name} changed its {' and '.join(changed)} afterwards "
                          f"(metadata {dict(before[4])} became {dict(after[4])}): whatever writes after "
                          f"get_session returns, the snapshot must not change")
    return Figure(True, "unchanged", "unchanged",
                  f"a snapshot stayed the same after each of {len(writers)} kinds of write")


# -- A logout the moment get_session lets go of its lock -------------------------------------
# A copy made after the lock is released can run wholly in code the exploration does not trace
# (copy.deepcopy, dataclasses.asdict, pickle): no shared access shows the window, so this check
# opens it itself. The manager's locks are watched; right after get_session has let go of all
# of them, a logout runs in another thread, before get_session goes on. The session was found,
# so the snapshot must show it as it was: a copy made under the lock does.

_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()), threading.Condition, threading.Semaphore)
RELEASES_TRIED = 4  # the first releases of one get_session call a logout is slipped in after
WRITER_SECONDS = 1.0  # a logout still waiting after this waits on a lock get_session holds


class _WatchedLock:
    """One of the manager's locks: counts how deep the reading thread holds it, reports each release."""

    def __init__(self, lock: Any, watch: _Watch):
        self._lock, self._watch, self.depth = lock, watch, 0

    def acquire(self, *args: Any, **kwargs: Any) -> Any:
        got = self._lock.acquire(*args, **kwargs)
        if got and threading.get_ident() == self._watch.reader:
            self.depth += 1
        return got

    def release(self) -> None:
        self._lock.release()
        if threading.get_ident() == self._watch.reader:
            self.depth -= 1
            self._watch.released()

    def __enter__(self) -> Any:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lock, name)


class _Watch:
    """A manager's locks while one get_session runs; a logout after its n-th let-go of every lock."""

    def __init__(self, manager: Any, session_id: str, logout_after: int = 0):
        self.manager, self.session_id, self.logout_after = manager, session_id, logout_after
        self.reader: int | None = None
        self.releases = 0
        self.logout: threading.Thread | None = None
        self.locks = self._wrap(manager)

    def _wrap(self, manager: Any) -> list[_WatchedLock]:
        """Put a watched lock in place of each lock the manager holds (in attributes, or dicts of them)."""
        placed = []
        for name, value in list(getattr(manager, "__dict__", {}).items()):
            if isinstance(value, _LOCK_TYPES):
                placed.append(_WatchedLock(value, self))
                setattr(manager, name, placed[-1])
            elif isinstance(value, dict):
                for key, item in list(value.items()):
                    if isinstance(item, _LOCK_TYPES):
                        placed.append(_WatchedLock(item, self))
                        value[key] = placed[-1]
        return placed

    def released(self) -> None:
        if any(lock.depth for lock in self.locks):
            return
        self.releases += 1
        if self.releases == self.logout_after:
            self.logout = threading.Thread(target=self._log_out, daemon=True)
            self.logout.start()
            self.logout.join(WRITER_SECONDS)

    def _log_out(self) -> None:
        try:
            self.manager.delete_session(self.session_id)
        except Exception:  # the contract's checks judge a logout that raises
            pass

    def read(self) -> Any:
        """get_session, watched; the logout, if one started, has ended when this returns."""
        self.reader = threading.get_ident()
        try:
            return self.manager.get_session(self.session_id)
        finally:
            self.reader = None
            if self.logout is not None:
                self.logout.join(WRITER_SECONDS)


def _stored_session(manager: Any) -> str:
    session_id = manager.create_session("u-1", "Ada")
    for key, value in _STORED:
        manager.update_session(session_id, key, value)
    return session_id


def _releases_of_one_read(new_manager: Callable[[], Any]) -> int:
    """How many times one get_session call lets go of every lock it holds."""
    with new_manager() as manager:
        watch = _Watch(manager, _stored_session(manager))
        watch.read()
        return watch.releases


def snapshot_made_before_the_lock_is_released(implementation: Implementation) -> Figure:
    """shared-snapshot: get_session makes its snapshot before it lets go of its lock."""
    releases = _releases_of_one_read(implementation.new_manager)
    tried = min(releases, RELEASES_TRIED)
    for release in range(1, tried + 1):
        with implementation.new_manager() as manager:
            session_id = _stored_session(manager)
            before = _as_seen(manager.get_session(session_id))
            try:
                snapshot = _Watch(manager, session_id, logout_after=release).read()
            except SessionNotFound:
                continue  # the logout came first: no session to read, as it should be
            after = _as_seen(snapshot)
        if after != before:
            return Figure(False, "unchanged", f"{', '.join(_changed(before, after))} changed",
                          f"a logout ran the moment get_session released its lock, before it returned, and "
                          f"changed the snapshot it returned ({_what_changed(before, after)}): get_session "
                          f"copied the session after releasing the lock, or not at all; copy it while the "
                          f"lock is held")
    if not tried:
        return Figure(True, "unchanged", "no lock released",
                      "get_session released no lock this check can watch; the other checks judge it")
    return Figure(True, "unchanged", "unchanged",
                  f"a logout the moment get_session released its lock left the snapshot unchanged "
                  f"({plural(tried, 'release')} tried)")


CHECKS = (
    ("single thread: a snapshot survives logout", snapshot_kept_after_logout),
    ("single thread: a snapshot survives every writer", snapshot_survives_every_writer),
    ("a logout the moment get_session releases its lock", snapshot_made_before_the_lock_is_released),
)
