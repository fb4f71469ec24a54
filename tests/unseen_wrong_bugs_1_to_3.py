"""Wrong fixes the judge must reject, for bugs 1 to 3, each with the class it belongs to."""

from __future__ import annotations

from unseen_cases import Wrong, init, new_id  # noqa: F401

from sessionlab.judge import checks  # noqa: F401

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

