"""Correct fixes unlike the reference, which the judge must accept."""

from __future__ import annotations

from unseen_cases import Right, init, new_id  # noqa: F401

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

RIGHT.append(Right("id-collision", "uuid4, 122 random bits: accepted with a warning", new_id('''
    import uuid

    return str(uuid.uuid4())
''')))

RIGHT.append(Right("id-collision", "64 bits from secrets, the floor: accepted with a warning", new_id('''
    import secrets

    return secrets.token_hex(8)
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


