"""Fixes of the persistent track's bugs, as learners write them: correct ones unlike the reference,
and plausible wrong ones. Each is the new source of a function of PersistentSessionManager."""

CORRECT = {
    "stale-cache": {
        # Reuse the helper that refreshes the cache: it runs with the database lock held.
        "PersistentSessionManager.update_session": '''
        def update_session(self, session_id, key, value):
            check_session_id(session_id)
            check_key(key)
            check_value(value)
            now = self._clock()
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    self._require_live(session_id)
                    metadata = json.loads(self._db.execute(
                        "SELECT metadata FROM sessions WHERE session_id = ?", (session_id,)).fetchone()[0])
                    metadata[key] = value
                    check_metadata_size(metadata)
                    self._db.execute("UPDATE sessions SET metadata = ?, last_update = ? WHERE session_id = ?",
                                     (json.dumps(metadata), now, session_id))
                self._refresh(session_id)
            log.debug("update: session %s, key %r", session_tag(session_id), key)
        ''',
    },
    "expiry-race": {
        # Select and expire in one transaction, under one hold of the lock.
        "PersistentSessionManager.expire_sessions": '''
        def expire_sessions(self):
            cutoff = self._clock() - self._ttl
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    expired = [row[0] for row in self._db.execute(
                        "SELECT session_id FROM sessions WHERE deleted = 0 AND status IN (?, ?) "
                        "AND last_update < ?", (*_EXPIRING, cutoff)).fetchall()]
                    self._db.executemany("UPDATE sessions SET status = 'expired' WHERE session_id = ?",
                                         [(session_id,) for session_id in expired])
                    self._db.execute("DELETE FROM sessions WHERE deleted = 1")
                with self._cache_lock:
                    for session_id in expired:
                        self._cache.pop(session_id, None)
            if expired:
                log.info("expired %d sessions", len(expired))
            return len(expired)
        ''',
    },
    "lock-order-deadlock": {
        # The database lock for the whole call; the cache lock twice, never around the database read.
        "PersistentSessionManager.get_session": '''
        def get_session(self, session_id):
            check_session_id(session_id)
            with self._db_lock:
                self._check_open()
                with self._cache_lock:
                    self._forget_others_writes()
                    cached = self._cache.get(session_id)
                    if cached is not None:
                        self._cache_hits += 1
                        return cached
                    self._cache_misses += 1
                snapshot = self._read(session_id)
                with self._cache_lock:
                    self._cache[session_id] = snapshot
                return snapshot
        ''',
    },
    "cross-process-increment": {
        # Read and write back inside one BEGIN IMMEDIATE: no other process writes in between.
        "PersistentSessionManager.increment_access": '''
        def increment_access(self, session_id):
            check_session_id(session_id)
            now = self._clock()
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    count = self._read(session_id).access_count + 1
                    self._db.execute("UPDATE sessions SET access_count = ?, last_update = ? WHERE session_id = ?",
                                     (count, now, session_id))
                self._refresh(session_id)
            return count
        ''',
    },
    "close-order": {
        # Stop and join the sweeper if it still runs, then close; log last.
        "PersistentSessionManager.close": '''
        def close(self):
            self._stop.set()
            if self._sweeper.is_alive() and self._sweeper is not threading.current_thread():
                self._sweeper.join()
            with self._db_lock:
                if self._closed:
                    return
                self._final = self._counts()
                self._closed = True
                self._db.close()
            if self._temporary:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self._path}{suffix}").unlink(missing_ok=True)
            log.info("closed the session store %s", self._path.name)
        ''',
    },
}

WRONG = {
    "stale-cache": {
        # The log line moves inside the lock; the cache write stays outside: a narrower window.
        "log inside the lock, cache after it": {"PersistentSessionManager.update_session": '''
        def update_session(self, session_id, key, value):
            check_session_id(session_id)
            check_key(key)
            check_value(value)
            now = self._clock()
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    self._require_live(session_id)
                    metadata = json.loads(self._db.execute(
                        "SELECT metadata FROM sessions WHERE session_id = ?", (session_id,)).fetchone()[0])
                    metadata[key] = value
                    check_metadata_size(metadata)
                    self._db.execute("UPDATE sessions SET metadata = ?, last_update = ? WHERE session_id = ?",
                                     (json.dumps(metadata), now, session_id))
                snapshot = self._read(session_id)
                log.debug("update: session %s, key %r", session_tag(session_id), key)
            with self._cache_lock:
                self._cache[session_id] = snapshot
        '''},
        # "Write-through": the cache first, then the database, each under its own lock.
        "cache first, then the database": {"PersistentSessionManager.update_session": '''
        def update_session(self, session_id, key, value):
            check_session_id(session_id)
            check_key(key)
            check_value(value)
            now = self._clock()
            current = self.get_session(session_id)
            metadata = dict(current.metadata)
            metadata[key] = value
            check_metadata_size(metadata)
            with self._cache_lock:
                self._cache[session_id] = Session(
                    session_id=session_id, user_id=current.user_id, username=current.username,
                    is_authenticated=True, access_count=current.access_count,
                    metadata=MappingProxyType(metadata), created_at=current.created_at, last_accessed=now)
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    self._require_live(session_id)
                    self._db.execute("UPDATE sessions SET metadata = ?, last_update = ? WHERE session_id = ?",
                                     (json.dumps(metadata), now, session_id))
        '''},
    },
    "expiry-race": {
        # The second step checks the status again, but not whether the session was touched.
        "re-check the status only": {"PersistentSessionManager.expire_sessions": '''
        def expire_sessions(self):
            cutoff = self._clock() - self._ttl
            with self._db_lock:
                self._check_open()
                expired = [row[0] for row in self._db.execute(
                    "SELECT session_id FROM sessions WHERE deleted = 0 AND status IN (?, ?) "
                    "AND last_update < ?", (*_EXPIRING, cutoff)).fetchall()]
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    self._db.executemany("UPDATE sessions SET status = 'expired' WHERE session_id = ? "
                                         "AND status IN (?, ?)", [(s, *_EXPIRING) for s in expired])
                    self._db.execute("DELETE FROM sessions WHERE deleted = 1")
                with self._cache_lock:
                    for session_id in expired:
                        self._cache.pop(session_id, None)
            return len(expired)
        '''},
        # The second step makes sure the session was not logged out meanwhile, and nothing more.
        "re-check that it is not deleted": {"PersistentSessionManager.expire_sessions": '''
        def expire_sessions(self):
            cutoff = self._clock() - self._ttl
            with self._db_lock:
                self._check_open()
                expired = [row[0] for row in self._db.execute(
                    "SELECT session_id FROM sessions WHERE deleted = 0 AND status IN (?, ?) "
                    "AND last_update < ?", (*_EXPIRING, cutoff)).fetchall()]
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    self._db.executemany("UPDATE sessions SET status = 'expired' WHERE session_id = ? "
                                         "AND deleted = 0", [(session_id,) for session_id in expired])
                    self._db.execute("DELETE FROM sessions WHERE deleted = 1")
                with self._cache_lock:
                    for session_id in expired:
                        self._cache.pop(session_id, None)
            return len(expired)
        '''},
    },
    "lock-order-deadlock": {
        # A hit needs only the cache lock; a miss still takes the database lock inside it.
        "only a miss takes both": {"PersistentSessionManager.get_session": '''
        def get_session(self, session_id):
            check_session_id(session_id)
            with self._cache_lock:
                cached = self._cache.get(session_id)
                if cached is not None:
                    self._cache_hits += 1
                    return cached
                with self._db_lock:
                    self._check_open()
                    self._forget_others_writes()
                    self._cache_misses += 1
                    snapshot = self._read(session_id)
                    self._cache[session_id] = snapshot
                    return snapshot
        '''},
        # Re-entrant locks cannot be taken in opposite orders safely either.
        "the same order, but the cache lock taken again inside": {"PersistentSessionManager.get_session": '''
        def get_session(self, session_id):
            check_session_id(session_id)
            with self._cache_lock:
                cached = self._cache.get(session_id)
            if cached is not None:
                with self._cache_lock:
                    self._cache_hits += 1
                return cached
            with self._cache_lock:
                with self._db_lock:
                    self._check_open()
                    self._cache_misses += 1
                    snapshot = self._read(session_id)
                    self._cache[session_id] = snapshot
                    return snapshot
        '''},
    },
    "cross-process-increment": {
        # A deferred BEGIN: both processes read under their own snapshot; the second write fails.
        "a deferred transaction": {"PersistentSessionManager.increment_access": '''
        def increment_access(self, session_id):
            check_session_id(session_id)
            now = self._clock()
            with self._db_lock:
                self._check_open()
                self._db.execute("BEGIN")
                try:
                    count = self._read(session_id).access_count + 1
                    self._db.execute("UPDATE sessions SET access_count = ?, last_update = ? WHERE session_id = ?",
                                     (count, now, session_id))
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._refresh(session_id)
            return count
        '''},
        # Compare-and-set, without looking at whether the UPDATE changed a row.
        "compare-and-set that never checks": {"PersistentSessionManager.increment_access": '''
        def increment_access(self, session_id):
            check_session_id(session_id)
            now = self._clock()
            with self._db_lock:
                self._check_open()
                seen = self._read(session_id).access_count
                self._write("UPDATE sessions SET access_count = ?, last_update = ? "
                            "WHERE session_id = ? AND access_count = ?", (seen + 1, now, session_id, seen))
                self._refresh(session_id)
            return seen + 1
        '''},
    },
    "close-order": {
        # The sweeper is joined before it is told to stop: close() waits forever.
        "join, then stop": {"PersistentSessionManager.close": '''
        def close(self):
            if self._sweeper is not threading.current_thread():
                self._sweeper.join()
            self._stop.set()
            with self._db_lock:
                if self._closed:
                    return
                self._final = self._counts()
                self._closed = True
                self._db.close()
            log.info("closed the session store %s", self._path.name)
        '''},
        # Stopped first, but the log line still sits between closing and joining.
        "stop first, join after the log": {"PersistentSessionManager.close": '''
        def close(self):
            with self._db_lock:
                if self._closed:
                    return
                self._final = self._counts()
                self._closed = True
                self._db.close()
                self._stop.set()
            log.info("closed the session store %s", self._path.name)
            if self._sweeper is not threading.current_thread():
                self._sweeper.join()
        '''},
    },
}
