"""The judge on fixes its other tests never saw.

tests/test_fixes.py shows the judge one correct and a few wrong fixes per
exercise. Here it meets the fixes a demanding learner writes next, each a copy
of the pristine buggy/ with a few functions rewritten:

* wrong fixes of every class the lab promises to catch: ids that are unique but
  predictable (a hex counter, a sha256 of a counter, uuid1, time_ns, Python's
  random, 32-bit tokens); a deadlock the fix itself introduces (a lock taken
  twice, two locks taken in opposite orders on two paths); a leak moved out of
  the queue; a snapshot that some other writer still changes, or that is copied
  after the lock is released; a fix that breaks the contract (a rejected key
  kept, a bare KeyError); a narrowed window (a sleep, a double-checked lock, a
  lock per key, per-session locks created check-then-act). Each must be
  rejected with the verdict its class deserves and evidence that names the
  class in the learner's terms.
* correct fixes unlike the reference (a re-entrant lock, per-session locks
  created safely, a condition variable, an optimistic version check, a drained
  or swapped queue, copy under the lock, ids from the OS's randomness with or
  without a counter beside them), each judged FIXED, some with stress too.
* a manager built on an installed third-party package whose race lies inside
  the package: the search finds it only because the package is traced.

Two cases the judge gets wrong today stay here as strict expected failures, each
with the reason (``judge_gap``): they turn into failures the day the judge is
fixed, so that the marker is removed then. Every verdict here is deterministic:
the deciding checks are explorations and single-thread checks; stress, where it
runs, can only confirm.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import sysconfig
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from variants import variant

from sessionlab import checks, exploration, impls, race, workspace

ROOT = Path(__file__).resolve().parent.parent
AVAILABLE, WHY = race.frontrun_available()

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=WHY)

# A hang is decided within the judge's own bounds (1 s for the contract, a lock cycle at once
# under exploration); the whole verdict must come well within this.
HANG_VERDICT_SECONDS = 25.0


def init(*extra: str, lock: str = "threading.Lock()") -> str:
    """buggy's SessionManager.__init__ with another lock class and some more attributes."""
    lines = "".join(f"    {line}\n" for line in extra)
    return f'''
def __init__(self, clock=time.time):
    self._clock = clock
    # Guards everything below: the store, the cleanup queue and the counters.
    self._lock = {lock}
    self._sessions = {{}}
    self._cleanup_queue = deque()
    self._closed = False
    self._total_sessions = 0
    self._active_sessions = 0
    self._cache_hits = 0
    self._cache_misses = 0
    self._failed_cleanups = 0
    self._next_id = 1
{lines}'''


def new_id(body: str, *extra: str) -> dict[str, str]:
    """An id-collision variant: _new_session_id with this body, __init__ with these attributes."""
    return {"SessionManager.__init__": init(*extra),
            "SessionManager._new_session_id": "def _new_session_id(self):\n" + textwrap.indent(
                textwrap.dedent(body).strip("\n"), "    ") + "\n"}


@dataclass(frozen=True)
class Wrong:
    slug: str
    name: str
    replacements: dict[str, str]
    status: str  # the verdict it must get
    says: tuple[str, ...]  # what the evidence must contain (case-insensitive), in the learner's terms
    judge_gap: str = ""  # why the judge gets it wrong today (the case is a strict xfail until fixed)


@dataclass(frozen=True)
class Right:
    slug: str
    name: str
    replacements: dict[str, str]
    stress: bool = False  # judged with stress too
    judge_gap: str = ""  # why the judge gets it wrong today (the case is a strict xfail until fixed)


# == Wrong fixes ==========================================================================

WRONG: list[Wrong] = []

# -- lost-updates --------------------------------------------------------------------------

WRONG.append(Wrong("lost-updates", "edit in place, validate after storing", {
    # One critical section, so no update is lost; but the new key is stored before the size
    # check, so the 65th key is refused and kept.
    "SessionManager.update_session": '''
    def update_session(self, session_id, key, value):
        check_session_id(session_id)
        check_key(key)
        check_value(value)
        now = self._clock()
        with self._lock:
            record = self._require(session_id)
            record.metadata[key] = value
            check_metadata_size(record.metadata)
            record.last_accessed = now
    ''',
}, checks.STILL_BUGGY, ("contract", "65", "rejected")))

WRONG.append(Wrong("lost-updates", "a helper that takes the lock again", {
    # threading.Lock is not re-entrant: the helper waits for the lock its caller holds.
    "SessionManager.update_session": '''
    def update_session(self, session_id, key, value):
        check_session_id(session_id)
        check_key(key)
        check_value(value)
        now = self._clock()
        with self._lock:
            record = self._require(session_id)
            metadata = dict(record.metadata)
            metadata[key] = value
            check_metadata_size(metadata)
            self._store(record, metadata, now)

    def _store(self, record, metadata, now):
        """Store a session's new metadata."""
        with self._lock:
            record.metadata = metadata
            record.last_accessed = now
    ''',
}, checks.HANGS, ("deadlock", "self._lock", "manager.py:", "_store")))

WRONG.append(Wrong("lost-updates", "a per-session lock, taken in the opposite order by logout", {
    # update: session lock, then self._lock; delete: self._lock, then the session lock.
    "SessionManager.__init__": init("self._session_locks = {}"),
    "SessionManager.update_session": '''
    def update_session(self, session_id, key, value):
        check_session_id(session_id)
        check_key(key)
        check_value(value)
        with self._lock:
            self._require(session_id)
            session_lock = self._session_locks.setdefault(session_id, threading.Lock())
        with session_lock:  # one update of a session at a time
            with self._lock:
                record = self._require(session_id)
                metadata = dict(record.metadata)
            metadata[key] = value
            check_metadata_size(metadata)
            now = self._clock()
            with self._lock:
                record.metadata = metadata
                record.last_accessed = now
    ''',
    "SessionManager.delete_session": '''
    def delete_session(self, session_id):
        check_session_id(session_id)
        with self._lock:
            record = self._require(session_id)
            session_lock = self._session_locks.setdefault(session_id, threading.Lock())
            with session_lock:  # never delete a session halfway through an update
                self._sessions.pop(session_id, None)
                self._cleanup_queue.append(record)
                self._run_cleanup()
        log.info("logout: session %s for user %r", session_tag(session_id), record.user_id)
        self._active_sessions -= 1
    ''',
}, checks.HANGS, ("deadlock", "session_lock", "self._lock", "update_session", "delete_session", "manager.py:")))

WRONG.append(Wrong("lost-updates", "a lock per metadata key", {
    # Updates of one key wait for each other; updates of two keys still copy the same dict.
    "SessionManager.__init__": init("self._key_locks = {}"),
    "SessionManager.update_session": '''
    def update_session(self, session_id, key, value):
        check_session_id(session_id)
        check_key(key)
        check_value(value)
        with self._lock:
            key_lock = self._key_locks.setdefault((session_id, key), threading.Lock())
        with key_lock:
            with self._lock:
                record = self._require(session_id)
                metadata = dict(record.metadata)
            metadata[key] = value
            check_metadata_size(metadata)
            now = self._clock()
            with self._lock:
                record.metadata = metadata
                record.last_accessed = now
    ''',
}, checks.STILL_BUGGY, ("lost",)))

WRONG.append(Wrong("lost-updates", "a per-session lock created check-then-act", {
    # Two first updates of a session each find no lock, each create one, and run together.
    "SessionManager.__init__": init("self._session_locks = {}"),
    "SessionManager.update_session": '''
    def update_session(self, session_id, key, value):
        check_session_id(session_id)
        check_key(key)
        check_value(value)
        session_lock = self._session_locks.get(session_id)
        if session_lock is None:
            session_lock = threading.Lock()
            self._session_locks[session_id] = session_lock
        with session_lock:
            with self._lock:
                record = self._require(session_id)
                metadata = dict(record.metadata)
            metadata[key] = value
            check_metadata_size(metadata)
            now = self._clock()
            with self._lock:
                record.metadata = metadata
                record.last_accessed = now
    ''',
}, checks.STILL_BUGGY, ("lost", "nothing has written yet")))

# -- lost-increments -----------------------------------------------------------------------

WRONG.append(Wrong("lost-increments", "one critical section, but a bare KeyError", {
    # Counts right, but an unknown id escapes as KeyError instead of SessionNotFound.
    "SessionManager.increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        now = self._clock()
        with self._lock:
            self._check_open()
            record = self._sessions[session_id]
            record.access_count += 1
            record.last_accessed = now
            return record.access_count
    ''',
}, checks.STILL_BUGGY, ("contract", "KeyError", "SessionNotFound", "unknown session id")))

WRONG.append(Wrong("lost-increments", "return the count through get_session, under the lock", {
    "SessionManager.increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        now = self._clock()
        with self._lock:
            record = self._require(session_id)
            record.access_count += 1
            record.last_accessed = now
            return self.get_session(session_id).access_count
    ''',
}, checks.HANGS, ("deadlock", "self._lock", "increment_access", "get_session", "manager.py:")))

WRONG.append(Wrong("lost-increments", "a per-session lock created check-then-act", {
    "SessionManager.__init__": init("self._access_locks = {}"),
    "SessionManager.increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        if session_id not in self._access_locks:
            self._access_locks[session_id] = threading.Lock()
        with self._access_locks[session_id]:
            with self._lock:
                record = self._require(session_id)
            count = record.access_count + 1
            record.last_accessed = self._clock()
            record.access_count = count
            return count
    ''',
}, checks.STILL_BUGGY, ("2 increments, counted 1", "lost")))

WRONG.append(Wrong("lost-increments", "an atomic itertools.count per session, stored outside the lock", {
    # next() on an itertools.count is atomic; storing its value afterwards is not ordered.
    "SessionManager.increment_access": '''
    def increment_access(self, session_id):
        import itertools

        check_session_id(session_id)
        with self._lock:
            record = self._require(session_id)
            counter = record.__dict__.setdefault("counter", itertools.count(record.access_count + 1))
        count = next(counter)
        record.last_accessed = self._clock()
        record.access_count = count
        return count
    ''',
}, checks.STILL_BUGGY, ("2 increments, counted 1", "lost")))

# -- cleanup-leak --------------------------------------------------------------------------

WRONG.append(Wrong("cleanup-leak", "park failed releases in another list", {
    # The queue empties; the sessions that stored nothing pile up in _retry_later instead.
    "SessionManager.__init__": init("self._retry_later = []"),
    "SessionManager._run_cleanup": '''
    def _run_cleanup(self):
        """Release every deleted session in the cleanup queue. Call with the lock held."""
        for _ in range(len(self._cleanup_queue)):
            record = self._cleanup_queue.popleft()
            if not self._release(record):
                # Nothing was released: park it out of the queue, to retry some other time.
                self._failed_cleanups += 1
                self._retry_later.append(record)
    ''',
}, checks.STILL_BUGGY, ("bytes per deleted session", "cleanup queue is empty")))

WRONG.append(Wrong("cleanup-leak", "remember the ids of failed releases", {
    "SessionManager.__init__": init("self._unreleased = set()"),
    "SessionManager._run_cleanup": '''
    def _run_cleanup(self):
        """Release every deleted session in the cleanup queue. Call with the lock held."""
        while self._cleanup_queue:
            record = self._cleanup_queue.popleft()
            if not self._release(record):
                self._failed_cleanups += 1
                self._unreleased.add(record.session_id)  # only the id, for a later retry
    ''',
}, checks.STILL_BUGGY, ("bytes per deleted session", "cleanup queue is empty")))

WRONG.append(Wrong("cleanup-leak", "put a failed release back at the front and stop", {
    "SessionManager._run_cleanup": '''
    def _run_cleanup(self):
        """Release every deleted session in the cleanup queue. Call with the lock held."""
        while self._cleanup_queue:
            record = self._cleanup_queue.popleft()
            if not self._release(record):
                # Nothing released: keep it first in line and try again at the next logout.
                self._failed_cleanups += 1
                self._cleanup_queue.appendleft(record)
                break
    ''',
}, checks.STILL_BUGGY, ("still queued", "never released")))

WRONG.append(Wrong("cleanup-leak", "lock the queue inside the cleanup", {
    # _run_cleanup runs with self._lock held already (delete_session, close).
    "SessionManager._run_cleanup": '''
    def _run_cleanup(self):
        """Release every deleted session in the cleanup queue."""
        with self._lock:  # the queue is shared: guard it
            while self._cleanup_queue:
                self._release(self._cleanup_queue.popleft())
    ''',
}, checks.HANGS, ("deadlock", "self._lock", "_run_cleanup", "manager.py:")))

# -- stats-drift ---------------------------------------------------------------------------

WRONG.append(Wrong("stats-drift", "a stats lock, taken in the opposite order by get_stats", {
    "SessionManager.__init__": init("# Guards the counters read by get_stats.", "self._stats_lock = threading.Lock()"),
    "SessionManager.delete_session": '''
    def delete_session(self, session_id):
        check_session_id(session_id)
        with self._lock:
            record = self._require(session_id)
            del self._sessions[session_id]
            self._cleanup_queue.append(record)
            self._run_cleanup()
            with self._stats_lock:
                self._active_sessions -= 1
        log.info("logout: session %s for user %r", session_tag(session_id), record.user_id)
    ''',
    "SessionManager.get_stats": '''
    def get_stats(self):
        with self._stats_lock:
            with self._lock:
                return Stats(
                    total_sessions=self._total_sessions,
                    active_sessions=self._active_sessions,
                    cache_hits=self._cache_hits,
                    cache_misses=self._cache_misses,
                    failed_cleanups=self._failed_cleanups,
                )
    ''',
}, checks.HANGS, ("deadlock", "self._stats_lock", "self._lock", "delete_session", "get_stats", "manager.py:")))

WRONG.append(Wrong("stats-drift", "a double-checked lock", {
    # Checked outside the lock, checked again inside; the second tab returns quietly.
    "SessionManager.delete_session": '''
    def delete_session(self, session_id):
        check_session_id(session_id)
        if session_id not in self._sessions:
            raise SessionNotFound(session_id)
        with self._lock:
            self._check_open()
            record = self._sessions.pop(session_id, None)
            if record is None:
                return  # another tab logged it out meanwhile
            self._cleanup_queue.append(record)
            self._run_cleanup()
            self._active_sessions -= 1
        log.info("logout: session %s for user %r", session_tag(session_id), record.user_id)
    ''',
}, checks.STILL_BUGGY, ("2 of the 2 logouts", "SessionNotFound")))

WRONG.append(Wrong("stats-drift", "count the store in get_stats, leave logout alone", {
    # The dashboard figure is right now; a logout clicked in two tabs still succeeds twice.
    "SessionManager.get_stats": '''
    def get_stats(self):
        with self._lock:
            return Stats(
                total_sessions=self._total_sessions,
                active_sessions=len(self._sessions),
                cache_hits=self._cache_hits,
                cache_misses=self._cache_misses,
                failed_cleanups=self._failed_cleanups,
            )
    ''',
}, checks.STILL_BUGGY, ("2 of the 2 logouts", "SessionNotFound")))

# -- id-collision --------------------------------------------------------------------------

WRONG.append(Wrong("id-collision", "a hex counter under the lock", new_id('''
    with self._lock:
        self._next_id += 1
        number = self._next_id
    return "{:032x}".format(number)  # 32 hex digits, like a real token
'''), checks.STILL_BUGGY, ("counter", "predicted")))

WRONG.append(Wrong("id-collision", "the sha256 of a counter", new_id('''
    import hashlib

    with self._lock:
        number = self._next_id
        self._next_id = number + 1
    return hashlib.sha256(str(number).encode()).hexdigest()  # 256 bits: nobody guesses that
'''), checks.STILL_BUGGY, ("sha256", "counter", "predicted")))

WRONG.append(Wrong("id-collision", "uuid1", new_id('''
    import uuid

    return uuid.uuid1().hex
'''), checks.STILL_BUGGY, ("uuid1", "login time", "predicted")))

WRONG.append(Wrong("id-collision", "time_ns with a sequence number", new_id('''
    with self._lock:
        self._next_id += 1
        number = self._next_id
    return "{}-{}".format(time.time_ns(), number)
'''), checks.STILL_BUGGY, ("clock", "nanoseconds", "predicted")))

WRONG.append(Wrong("id-collision", "128 bits from the global random", new_id('''
    import random

    return "{:032x}".format(random.getrandbits(128))
'''), checks.STILL_BUGGY, ("random", "Mersenne Twister", "predicted")))

WRONG.append(Wrong("id-collision", "a private random.Random, 128 bits at a time", new_id('''
    with self._lock:
        bits = self._random.getrandbits(128)
    return "{:032x}".format(bits)
''', "import random", "", "self._random = random.Random()  # seeded from os.urandom"),
    checks.STILL_BUGGY, ("random", "Mersenne Twister", "predicted")))

WRONG.append(Wrong("id-collision", "32-bit tokens from secrets, drawn again when taken", new_id('''
    import secrets

    while True:
        token = secrets.token_hex(4)  # 4 billion ids: plenty for our users
        if token not in self._sessions:
            return token
'''), checks.STILL_BUGGY, ("32 bits", "128")))

WRONG.append(Wrong("id-collision", "retry the counter until the id is unused", new_id('''
    while True:
        session_id = "sess-{:06d}".format(self._next_id)
        self._next_id += 1
        if session_id not in self._sessions:
            return session_id
'''), checks.STILL_BUGGY, ("were both given session id",)))

# -- shared-snapshot -----------------------------------------------------------------------

WRONG.append(Wrong("shared-snapshot", "logout swaps the dict, but updates now edit it in place", {
    # A logout no longer changes a snapshot; the update that lost-updates taught to work in
    # place, under the lock, does.
    "SessionManager.update_session": '''
    def update_session(self, session_id, key, value):
        check_session_id(session_id)
        check_key(key)
        check_value(value)
        now = self._clock()
        with self._lock:
            record = self._require(session_id)
            check_metadata_size({**record.metadata, key: value})
            record.metadata[key] = value
            record.last_accessed = now
    ''',
    "SessionManager._release": '''
    def _release(self, record):
        freed = len(record.metadata)
        record.metadata = {}  # a fresh dict: snapshots keep the old one
        record.is_authenticated = False
        return freed
    ''',
}, checks.STILL_BUGGY, ("snapshot", "update_session", "changed")))

WRONG.append(Wrong("shared-snapshot", "copy the metadata after releasing the lock", {
    "SessionManager.get_session": '''
    def get_session(self, session_id):
        check_session_id(session_id)
        with self._lock:
            self._check_open()
            record = self._sessions.get(session_id)
            if record is None:
                self._cache_misses += 1
                raise SessionNotFound(session_id)
            self._cache_hits += 1
        return record.snapshot()  # copying takes time: not under the lock
    ''',
    "_Record.snapshot": '''
    def snapshot(self):
        return Session(
            session_id=self.session_id,
            user_id=self.user_id,
            username=self.username,
            is_authenticated=self.is_authenticated,
            access_count=self.access_count,
            metadata=MappingProxyType(dict(self.metadata)),
            created_at=self.created_at,
            last_accessed=self.last_accessed,
        )
    ''',
}, checks.STILL_BUGGY, ("snapshot", "wiped")))

WRONG.append(Wrong("shared-snapshot", "copy under a lock taken twice", {
    "SessionManager.get_session": '''
    def get_session(self, session_id):
        check_session_id(session_id)
        with self._lock:
            self._check_open()
            record = self._sessions.get(session_id)
            if record is None:
                self._cache_misses += 1
                raise SessionNotFound(session_id)
            self._cache_hits += 1
            return self._copy(record)

    def _copy(self, record):
        """A snapshot of record, copied under the lock so that no logout changes it."""
        import dataclasses

        with self._lock:
            return dataclasses.replace(record.snapshot(), metadata=MappingProxyType(dict(record.metadata)))
    ''',
}, checks.HANGS, ("deadlock", "self._lock", "_copy", "manager.py:")))

WRONG.append(Wrong("shared-snapshot", "a moment's sleep before logout clears the data", {
    "SessionManager._release": '''
    def _release(self, record):
        time.sleep(0.001)  # let pages still rendering this session finish first
        freed = len(record.metadata)
        record.metadata.clear()
        record.is_authenticated = False
        return freed
    ''',
}, checks.STILL_BUGGY, ("snapshot", "rows")))


# == Correct fixes ========================================================================

RIGHT: list[Right] = []

RIGHT.append(Right("lost-updates", "a re-entrant lock and a helper that takes it again", {
    "SessionManager.__init__": init(lock="threading.RLock()"),
    "SessionManager.update_session": '''
    def update_session(self, session_id, key, value):
        check_session_id(session_id)
        check_key(key)
        check_value(value)
        now = self._clock()
        with self._lock:
            record = self._require(session_id)
            metadata = dict(record.metadata)
            metadata[key] = value
            check_metadata_size(metadata)
            self._store(record, metadata, now)

    def _store(self, record, metadata, now):
        """Store a session's new metadata; takes the (re-entrant) lock itself."""
        with self._lock:
            record.metadata = metadata
            record.last_accessed = now
    ''',
}, stress=True))

RIGHT.append(Right("lost-updates", "a per-session lock made with setdefault under the manager lock", {
    "SessionManager.__init__": init("# One lock per session, for its updates; taken before self._lock, never after.",
                                    "self._session_locks = {}"),
    "SessionManager.update_session": '''
    def update_session(self, session_id, key, value):
        check_session_id(session_id)
        check_key(key)
        check_value(value)
        with self._lock:
            self._require(session_id)
            session_lock = self._session_locks.setdefault(session_id, threading.Lock())
        with session_lock:
            with self._lock:
                record = self._require(session_id)
                metadata = dict(record.metadata)
            metadata[key] = value
            check_metadata_size(metadata)
            now = self._clock()
            with self._lock:
                record.metadata = metadata
                record.last_accessed = now
    ''',
}))

RIGHT.append(Right("lost-updates", "an optimistic version check under the lock", {
    "SessionManager.update_session": '''
    def update_session(self, session_id, key, value):
        check_session_id(session_id)
        check_key(key)
        check_value(value)
        while True:
            with self._lock:
                record = self._require(session_id)
                version = getattr(record, "version", 0)
                metadata = dict(record.metadata)
            metadata[key] = value
            check_metadata_size(metadata)
            now = self._clock()
            with self._lock:
                if getattr(record, "version", 0) == version:  # nobody stored meanwhile
                    record.metadata = metadata
                    record.last_accessed = now
                    record.version = version + 1
                    return
    ''',
}))

# One increment per session at a time, by a condition variable. frontrun 0.7's cooperative
# Condition stalls the second execution of any wait()/notify pair, so the search cannot finish;
# real threads do. Not a RIGHT case: the honest verdict is UNPROVEN (see its test below).
CONDITION_FIX = {
    "SessionManager.__init__": init("# Guards _counting: the sessions whose count is being changed.",
                                    "self._counted = threading.Condition()", "self._counting = set()"),
    "SessionManager.increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        with self._counted:
            while session_id in self._counting:
                self._counted.wait()
            self._counting.add(session_id)
        try:
            with self._lock:
                record = self._require(session_id)
            count = record.access_count + 1
            record.last_accessed = self._clock()
            record.access_count = count
            return count
        finally:
            with self._counted:
                self._counting.discard(session_id)
                self._counted.notify_all()
    ''',
}

WRONG.append(Wrong("lost-increments", "a condition variable that nobody notifies", {
    **CONDITION_FIX,
    "SessionManager.increment_access": CONDITION_FIX["SessionManager.increment_access"].replace(
        "                self._counted.notify_all()\n", ""),
}, checks.HANGS, ("did not finish", "self._counted.wait()")))

RIGHT.append(Right("lost-increments", "a per-session lock made with setdefault under the manager lock", {
    "SessionManager.__init__": init("# One lock per session, for its count; taken before self._lock, never after.",
                                    "self._access_locks = {}"),
    "SessionManager.increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        with self._lock:
            self._require(session_id)
            access_lock = self._access_locks.setdefault(session_id, threading.Lock())
        with access_lock:
            with self._lock:
                record = self._require(session_id)
            count = record.access_count + 1
            record.last_accessed = self._clock()
            record.access_count = count
            return count
    ''',
}, stress=True))

RIGHT.append(Right("lost-increments", "a re-entrant lock and a helper that reads the count", {
    "SessionManager.__init__": init(lock="threading.RLock()"),
    "SessionManager.increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        now = self._clock()
        with self._lock:
            record = self._require(session_id)
            record.access_count += 1
            record.last_accessed = now
            return self._count_of(session_id)

    def _count_of(self, session_id):
        """A live session's access count; takes the (re-entrant) lock itself."""
        with self._lock:
            return self._require(session_id).access_count
    ''',
}))

RIGHT.append(Right("lost-increments", "read, then count again from the current value under the lock", {
    "SessionManager.increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        with self._lock:
            record = self._require(session_id)
        now = self._clock()
        with self._lock:
            count = record.access_count + 1  # whatever was counted meanwhile
            record.access_count = count
            record.last_accessed = now
        return count
    ''',
}))

RIGHT.append(Right("cleanup-leak", "swap in a fresh queue and release all of the old one", {
    "SessionManager._run_cleanup": '''
    def _run_cleanup(self):
        """Release every deleted session in the cleanup queue. Call with the lock held."""
        pending, self._cleanup_queue = self._cleanup_queue, deque()
        for record in pending:
            self._release(record)  # a session that stored nothing is released too
    ''',
}, stress=True))

RIGHT.append(Right("cleanup-leak", "requeue only a session whose data is still there", {
    "SessionManager._run_cleanup": '''
    def _run_cleanup(self):
        """Release every deleted session in the cleanup queue. Call with the lock held."""
        for _ in range(len(self._cleanup_queue)):
            record = self._cleanup_queue.popleft()
            self._release(record)
            if record.metadata or record.is_authenticated:  # the release really failed
                self._failed_cleanups += 1
                self._cleanup_queue.append(record)
    ''',
}))

RIGHT.append(Right("stats-drift", "a re-entrant lock around find, remove and count", {
    "SessionManager.__init__": init(lock="threading.RLock()"),
    "SessionManager.delete_session": '''
    def delete_session(self, session_id):
        check_session_id(session_id)
        with self._lock:
            record = self._require(session_id)
            self._forget(session_id, record)
        log.info("logout: session %s for user %r", session_tag(session_id), record.user_id)

    def _forget(self, session_id, record):
        """Remove a session and count it out; takes the (re-entrant) lock itself."""
        with self._lock:
            del self._sessions[session_id]
            self._cleanup_queue.append(record)
            self._run_cleanup()
            self._active_sessions -= 1
    ''',
}, stress=True))

RIGHT.append(Right("stats-drift", "count the store, and let the remove under the lock decide", {
    "SessionManager.delete_session": '''
    def delete_session(self, session_id):
        check_session_id(session_id)
        with self._lock:
            record = self._require(session_id)
        log.info("logout: session %s for user %r", session_tag(session_id), record.user_id)
        with self._lock:
            self._check_open()
            if self._sessions.get(session_id) is not record:
                raise SessionNotFound(session_id)  # another tab logged it out meanwhile
            del self._sessions[session_id]
            self._cleanup_queue.append(record)
            self._run_cleanup()
    ''',
    "SessionManager.get_stats": '''
    def get_stats(self):
        with self._lock:
            return Stats(
                total_sessions=self._total_sessions,
                active_sessions=len(self._sessions),
                cache_hits=self._cache_hits,
                cache_misses=self._cache_misses,
                failed_cleanups=self._failed_cleanups,
            )
    ''',
}))

RIGHT.append(Right("id-collision", "itertools.count under the lock, plus a secrets token", new_id('''
    import secrets

    with self._lock:
        number = next(self._numbers)
    return "{}-{}".format(number, secrets.token_urlsafe(24))
''', "import itertools", "", "self._numbers = itertools.count(1)"), stress=True))

RIGHT.append(Right("id-collision", "160 bits from random.SystemRandom", new_id('''
    import random

    return "{:040x}".format(random.SystemRandom().getrandbits(160))
''')))

RIGHT.append(Right("id-collision", "the base64 of 24 bytes of os.urandom", new_id('''
    import base64
    import os

    return base64.urlsafe_b64encode(os.urandom(24)).decode("ascii")
''')))

RIGHT.append(Right("shared-snapshot", "copy the metadata in get_session, under the lock", {
    "SessionManager.get_session": '''
    def get_session(self, session_id):
        import dataclasses

        check_session_id(session_id)
        with self._lock:
            self._check_open()
            record = self._sessions.get(session_id)
            if record is None:
                self._cache_misses += 1
                raise SessionNotFound(session_id)
            self._cache_hits += 1
            # copied while the lock is held: no logout can clear it halfway
            return dataclasses.replace(record.snapshot(), metadata=MappingProxyType(dict(record.metadata)))
    ''',
}, stress=True))

RIGHT.append(Right("shared-snapshot", "a deep copy in the snapshot", {
    "_Record.snapshot": '''
    def snapshot(self):
        import copy

        return Session(
            session_id=self.session_id,
            user_id=self.user_id,
            username=self.username,
            is_authenticated=self.is_authenticated,
            access_count=self.access_count,
            metadata=MappingProxyType(copy.deepcopy(self.metadata)),
            created_at=self.created_at,
            last_accessed=self.last_accessed,
        )
    ''',
}))


def _id(case: Wrong | Right) -> str:
    return f"{case.slug}: {case.name}"


def _params(cases: list) -> list:
    return [pytest.param(case, id=_id(case), marks=[pytest.mark.xfail(strict=True, reason=case.judge_gap)]
                         if case.judge_gap else []) for case in cases]


def test_every_exercise_has_three_new_wrong_and_two_new_correct_fixes():
    from sessionlab import catalogue

    slugs = [bug.slug for bug in catalogue.BUGS if bug.track == 1]
    for slug in slugs:  # counting only the cases the judge gets right today
        assert sum(case.slug == slug and not case.judge_gap for case in WRONG) >= 3, slug
        assert sum(case.slug == slug and not case.judge_gap for case in RIGHT) >= 2, slug
        assert any(case.slug == slug and case.stress and not case.judge_gap for case in RIGHT), slug
    # New: none of them is a variant tests/test_fixes.py already shows the judge.
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        seen = importlib.import_module("test_fixes")
    finally:
        sys.path.remove(str(Path(__file__).parent))
    known = [dict(seen.CORRECT[slug]) for slug in seen.CORRECT] + [
        dict(replacements) for wrong in seen.WRONG.values() for replacements in wrong.values()]
    normal = [{name: textwrap.dedent(text).strip() for name, text in known_one.items()} for known_one in known]
    for case in WRONG + RIGHT:
        mine = {name: textwrap.dedent(text).strip() for name, text in case.replacements.items()}
        assert mine not in normal, f"{_id(case)} is already in tests/test_fixes.py"


@pytest.mark.parametrize("case", _params(WRONG))
def test_a_new_wrong_fix_is_rejected_for_its_class(tmp_path, case):
    started = time.perf_counter()
    verdict = checks.judge(case.slug, variant(tmp_path, "wrong", case.replacements), stress_too=False)
    elapsed = time.perf_counter() - started
    assert verdict.status != checks.FIXED, f"{_id(case)} was accepted: {verdict.evidence}"
    assert verdict.status == case.status, f"{_id(case)}: {verdict.status}: {verdict.evidence}"
    assert verdict.evidence.startswith(f"{case.slug}: ")
    missing = [words for words in case.says if words.lower() not in verdict.evidence.lower()]
    assert not missing, f"{_id(case)}: the evidence does not say {missing}: {verdict.evidence}"
    if case.status == checks.HANGS:
        assert elapsed < HANG_VERDICT_SECONDS, f"{_id(case)}: HANGS took {elapsed:.1f} s to decide"
        # which check hung, and where each thread waits
        hung = [result for result in verdict.results if result.outcome == checks.HUNG]
        assert hung and hung[0].detail.startswith("HANGS"), hung


@pytest.mark.parametrize("case", _params(RIGHT))
def test_a_new_correct_fix_is_accepted(tmp_path, case):
    verdict = checks.judge(case.slug, variant(tmp_path, "right", case.replacements), stress_too=case.stress)
    assert verdict.status == checks.FIXED, f"{_id(case)}: a correct fix was judged {verdict.status}: " \
                                           f"{verdict.evidence}"
    ran = [result.check.kind for result in verdict.results]
    assert (checks.STRESS in ran) == case.stress


# == A race inside an installed third-party package ======================================
#
# A manager that keeps its access counts in a small cache library, the way a team would use
# cachelib's SimpleCache: the manager's own code has no race; the library's inc() reads, makes
# a call, and writes. frontrun traces only code outside site-packages unless told otherwise, so
# only because the lab traces the implementation's dependencies does the search see inside it.

TINYCACHE = '''"""tinycache: a tiny in-memory cache. Safe to share between threads."""

import threading
import time

__version__ = "{version}"


class SimpleCache:
    """Keys to values, in memory."""

    def __init__(self):
        self._store = {{}}
        self._written = {{}}  # key -> when it was last written
{lock}
    def get(self, key, default=None):
        return self._store.get(key, default)

    def set(self, key, value):
        self._store[key] = value
        self._touch(key)

    def inc(self, key, delta=1):
        """Add delta to the number stored at key (0 when missing); return the new number."""
{inc}
    def _touch(self, key):
        self._written[key] = time.monotonic()
'''

RACY_RELEASE = TINYCACHE.format(version="1.0", lock="", inc='''\
        value = self.get(key, 0)
        self._touch(key)
        self.set(key, value + delta)
        return value + delta
''')

PATCHED_RELEASE = TINYCACHE.format(version="1.0.1", lock='''\
        # Guards inc: a read and a write of the same key, as one step.
        self._lock = threading.Lock()
''', inc='''\
        with self._lock:
            value = self.get(key, 0)
            self._touch(key)
            self.set(key, value + delta)
            return value + delta
''')


class InstalledPackage:
    """A throwaway package installed into this virtualenv's site-packages, under a name of its own."""

    def __init__(self) -> None:
        self.name = f"tinycache_{uuid.uuid4().hex[:12]}"
        self.site = Path(sysconfig.get_paths()["purelib"])
        self.folder = self.site / self.name
        self.dist_info = self.site / f"{self.name}-1.0.dist-info"

    def install(self, release: str) -> None:
        """Install (or upgrade to) a release: the package's source text."""
        version = release.split('__version__ = "', 1)[1].split('"', 1)[0]
        self.forget()
        shutil.rmtree(self.folder / "__pycache__", ignore_errors=True)
        self.folder.mkdir(exist_ok=True)
        (self.folder / "__init__.py").write_text(release, encoding="utf-8")
        self.dist_info.mkdir(exist_ok=True)
        (self.dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {self.name}\nVersion: {version}\n", encoding="utf-8")
        (self.dist_info / "INSTALLER").write_text("sessionlab-tests\n", encoding="utf-8")
        importlib.invalidate_caches()

    def forget(self) -> None:
        for key in [key for key in sys.modules if key == self.name or key.startswith(self.name + ".")]:
            del sys.modules[key]

    def remove(self) -> None:
        self.forget()
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.dist_info, ignore_errors=True)
        importlib.invalidate_caches()


@pytest.fixture
def tinycache():
    package = InstalledPackage()
    try:
        yield package
    finally:
        package.remove()


def cache_manager(folder: Path, package: str) -> impls.Implementation:
    """The reference manager, with access counts kept in the package's SimpleCache."""
    shutil.copytree(ROOT / "fixed", folder, ignore=shutil.ignore_patterns("__pycache__"))
    module = folder / workspace.MODULE
    text = module.read_text(encoding="utf-8")
    for old, new in (("import logging\n", "import dataclasses\nimport logging\n"),
                     ("from sessionlab.api import (",
                      f"from {package} import SimpleCache\n\nfrom sessionlab.api import ("),
                     ("        self._failed_cleanups = 0\n", "        self._failed_cleanups = 0\n"
                      "        # Access counts by session id; the cache is thread-safe, says its README.\n"
                      "        self._accesses = SimpleCache()\n")):
        assert old in text, f"fixed/{workspace.MODULE} no longer has {old!r}"
        text = text.replace(old, new, 1)
    module.write_text(text, encoding="utf-8")
    workspace.replace_functions(module, {name: textwrap.indent(textwrap.dedent(source), "    ") for name, source in {
        "SessionManager.get_session": '''
        def get_session(self, session_id):
            check_session_id(session_id)
            with self._lock:
                self._check_open()
                record = self._sessions.get(session_id)
                if record is None:
                    self._cache_misses += 1
                    raise SessionNotFound(session_id)
                self._cache_hits += 1
                snapshot = record.snapshot()
            return dataclasses.replace(snapshot, access_count=self._accesses.get(session_id, 0))
        ''',
        "SessionManager.increment_access": '''
        def increment_access(self, session_id):
            check_session_id(session_id)
            now = self._clock()
            with self._lock:
                record = self._require(session_id)
                record.last_accessed = now
            return self._accesses.inc(session_id)
        ''',
    }.items()})
    return impls.load(str(folder))


def test_a_race_inside_an_installed_package_is_found(tmp_path, tinycache):
    tinycache.install(RACY_RELEASE)
    implementation = cache_manager(tmp_path / "racy", tinycache.name)
    assert implementation.module.manager.SimpleCache.__module__ == tinycache.name
    assert sys.modules[tinycache.name].__file__.startswith(str(tinycache.site))  # really installed

    report = race.explore("lost-increments", implementation)

    assert report.held is False, report.text()
    assert "2 increments, counted 1" in report.message, report.message
    assert tinycache.name in report.scope, report.scope
    # The interleaving shows the package's own lines: where the race really is.
    text = " ".join(report.text().split())
    assert "value = self.get(key, 0)" in text and "self._store[key] = value" in text, text


def test_without_tracing_dependencies_the_search_cannot_see_that_race(tmp_path, tinycache):
    tinycache.install(RACY_RELEASE)
    implementation = cache_manager(tmp_path / "racy", tinycache.name)
    previous = exploration.TRACING
    exploration.configure(exploration.Tracing(dependencies=False))
    try:
        blind = race.explore("lost-increments", implementation)
    finally:
        exploration.configure(previous)
    assert exploration.TRACING == previous
    # Blind to the package, the search "holds", and says what it could not see.
    assert blind.held and blind.complete, blind.text()
    assert f"not traced: {tinycache.name}" in blind.scope, blind.scope
    # Tracing restored, the same code breaks again: the tracing is what made the search honest.
    assert race.explore("lost-increments", implementation).held is False


def test_with_the_package_fixed_the_search_holds_and_names_it_as_traced(tmp_path, tinycache):
    tinycache.install(RACY_RELEASE)
    assert race.explore("lost-increments", cache_manager(tmp_path / "racy", tinycache.name)).held is False

    tinycache.install(PATCHED_RELEASE)  # the package's bug-fix release
    implementation = cache_manager(tmp_path / "patched", tinycache.name)
    assert sys.modules[tinycache.name].__version__ == "1.0.1"
    report = race.explore("lost-increments", implementation)

    assert report.held and report.complete, report.text()
    text = " ".join(report.text().split())  # as read, whatever the line wrapping
    assert "HOLDS" in text and "the search was complete" in text, text
    traced = f"complete over the code of {implementation.name}, {tinycache.name}"
    assert traced in text and traced in report.message, text
    assert "not traced" not in text, text


def test_the_command_line_narrows_and_widens_what_is_traced(tmp_path, tinycache, capsys):
    from sessionlab.cli import main

    tinycache.install(RACY_RELEASE)
    implementation = cache_manager(tmp_path / "racy", tinycache.name)
    race_of = ["race", "lost-increments", "--impl", implementation.name, "--json"]

    def explored(*options: str) -> dict:
        main([*race_of, *options])
        return json.loads(capsys.readouterr().out)[0]

    assert explored()["held"] is False
    narrowed = explored("--no-trace-deps")
    assert narrowed["held"] is True and f"not traced: {tinycache.name}" in narrowed["scope"], narrowed
    widened = explored("--no-trace-deps", "--trace", tinycache.name[:4] + "*")
    assert widened["held"] is False, widened
    assert exploration.TRACING == exploration.Tracing()  # each command's choice ends with it


def test_a_result_the_contract_does_not_allow_is_an_error_that_says_so(tmp_path):
    implementation = variant(tmp_path, "none", {"SessionManager.get_stats": '''
    def get_stats(self):
        return None
    '''})
    verdict = checks.judge("stats-drift", implementation, stress_too=False)
    assert verdict.status == checks.ERROR, verdict.evidence
    assert "could not use what your code returned" in verdict.evidence, verdict.evidence
    assert "'NoneType' object has no attribute" in verdict.evidence, verdict.evidence


def test_a_correct_fix_the_search_cannot_finish_is_unproven_never_fixed(tmp_path):
    verdict = checks.judge("lost-increments", variant(tmp_path, "condition", CONDITION_FIX), stress_too=False)
    assert verdict.status == checks.UNPROVEN, verdict.evidence
    assert "the search could not finish: a run stalled" in verdict.evidence, verdict.evidence
    assert "self._counted.wait()" in verdict.evidence, verdict.evidence
    assert "200 schedules drawn at random held" in verdict.evidence, verdict.evidence
    assert "nothing is proven" in verdict.evidence, verdict.evidence
