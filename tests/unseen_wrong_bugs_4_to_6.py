"""Wrong fixes the judge must reject, for bugs 4 to 6, each with the class it belongs to."""

from __future__ import annotations

from unseen_cases import Wrong, init, new_id  # noqa: F401
from unseen_wrong_bugs_1_to_3 import WRONG

from sessionlab.judge import checks  # noqa: F401

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
'''), checks.STILL_BUGGY, ("32 bits", "at least 64")))

WRONG.append(Wrong("id-collision", "48-bit tokens from os.urandom", new_id('''
    import os

    return os.urandom(6).hex()  # 281 trillion ids
'''), checks.STILL_BUGGY, ("48 bits", "at least 64", "2^47 tries")))

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

WRONG.append(Wrong("shared-snapshot", "a deep copy of the live session, made after the lock is released", {
    # Every field and the metadata are copied, but a logout can run between the release and the copy.
    "SessionManager.get_session": '''
    def get_session(self, session_id):
        import copy

        check_session_id(session_id)
        with self._lock:
            self._check_open()
            record = self._sessions.get(session_id)
            if record is None:
                self._cache_misses += 1
                raise SessionNotFound(session_id)
            self._cache_hits += 1
        return copy.deepcopy(record).snapshot()  # a deep copy takes time: not under the lock
    ''',
}, checks.STILL_BUGGY, ("snapshot", "released its lock", "copy it while the lock is held")))

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

