"""Fixes of the persistent track's bugs that no other test shows the judge: wrong ones of the classes a
held-out run caught the judge out on, and correct ones unlike the reference and tests/persistent_variants.py.

Each case is the new source of some methods of PersistentSessionManager in a copy of buggy/persistent.py
(tests/variants.py); tests/test_persistent_unseen.py shows each flaw, and each correct fix holding, on
the real code, apart from the judge.
"""

from __future__ import annotations

from unseen_cases import Right, Wrong

from sessionlab.judge import checks

P = "PersistentSessionManager."


def persistent_init(*extra: str, db_lock: str = "threading.Lock()", cache_lock: str = "threading.Lock()") -> str:
    """buggy's PersistentSessionManager.__init__ with other locks and some more attributes (set before the
    sweeper starts)."""
    lines = "".join(f"    {line}\n" for line in extra)
    return f'''
def __init__(self, path=None, *, ttl=1800.0, sweep_interval=60.0, clock=time.time, lock_timeout=30.0):
    for name, value in (("ttl", ttl), ("sweep_interval", sweep_interval), ("lock_timeout", lock_timeout)):
        if type(value) not in (int, float) or not 0 < value < 2**31:
            raise InvalidInput(f"{{name}} must be a positive number of seconds, below 2**31")
    self._clock = clock
    self._ttl = float(ttl)
    self._temporary = path is None
    if path is None:
        handle, path = tempfile.mkstemp(prefix="sessions-", suffix=".sqlite3")
        os.close(handle)
    self._path = Path(path)
    self._db = _open(self._path, float(lock_timeout))
    # Guards self._db: one statement or transaction at a time on this connection.
    # Taken before self._cache_lock whenever both are held.
    self._db_lock = {db_lock}
    # Guards self._cache, self._data_version and the hit and miss counters.
    self._cache_lock = {cache_lock}
    self._cache = {{}}
    self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
    self._cache_hits = 0
    self._cache_misses = 0
    self._closed = False
    self._final = (Stats(0, 0, 0, 0, 0), 0, 0)  # what the stats were at close
{lines}    self._stop = threading.Event()
    # Guards self._sweeps_failed and self._sweep_failure: the sweeper writes them, health_problems reads.
    self._failures_lock = threading.Lock()
    self._sweeps_failed = 0  # sweeps failed in a row
    self._sweep_failure = ""  # why the last one failed, never with an id
    self._sweeper = threading.Thread(target=self._sweep, args=(float(sweep_interval),),
                                     name="session-sweeper", daemon=True)
    self._sweeper.start()
'''


ONE_RLOCK = persistent_init(db_lock="threading.RLock()  # the cache's lock as well: one lock for both",
                            cache_lock="self._db_lock")

# Pieces several cases share: the update's database work, get_session's body, the reference's get_session.
_UPDATE_HEAD = '''
def update_session(self, session_id, key, value):
    check_session_id(session_id)
    check_key(key)
    check_value(value)
    now = self._clock()
'''
_WRITE_METADATA = '''
with self._transaction():
    self._require_live(session_id)
    metadata = json.loads(self._db.execute(
        "SELECT metadata FROM sessions WHERE session_id = ?", (session_id,)).fetchone()[0])
    metadata[key] = value
    check_metadata_size(metadata)
    self._db.execute("UPDATE sessions SET metadata = ?, last_update = ? WHERE session_id = ?",
                     (json.dumps(metadata), now, session_id))
'''
_READ_THROUGH = '''
self._check_open()
self._forget_others_writes()
cached = self._cache.get(session_id)
if cached is not None:
    self._cache_hits += 1
    return cached
self._cache_misses += 1
snapshot = self._read(session_id)
self._cache[session_id] = snapshot
return snapshot
'''


def _at(indent: int, text: str) -> str:
    return "".join(" " * indent + line if line.strip() else line for line in text.strip("\n").splitlines(True)) + "\n"


def update(body: str) -> str:
    """update_session: the checks and the timestamp, then body (written at 4 spaces, where {write} is
    the transaction that writes the metadata, at the indent of the line it stands on)."""
    lines = []
    for line in body.strip("\n").splitlines():
        if line.strip() == "{write}":
            lines.append(_at(len(line) - len(line.lstrip()), _WRITE_METADATA).rstrip("\n"))
        else:
            lines.append(line)
    return _UPDATE_HEAD + "\n".join(lines) + "\n"


def get_session(head: str, indent: int = 8) -> str:
    """get_session: head (the lines that take the locks, at 4 spaces), then the read-through body."""
    start = "\ndef get_session(self, session_id):\n    check_session_id(session_id)\n"
    return start + head.strip("\n").rstrip() + "\n" + _at(indent, _READ_THROUGH)


REFERENCE_GET = get_session('''
    with self._db_lock:
        with self._cache_lock:
''', 12)

WRONG: list[Wrong] = []
RIGHT: list[Right] = []

DEADLOCK_WORDS = ("deadlock", "self._db_lock", "self._cache_lock")

# == stale-cache ===========================================================================

# "Hold both locks around the whole update, as get_session does": cache then database, the reverse of a count.
WRONG.append(Wrong("stale-cache", "both locks around the whole update, the cache lock first", {
    P + "update_session": update('''
    with self._cache_lock:
        with self._db_lock:
            self._check_open()
            {write}
            self._cache[session_id] = self._read(session_id)
    log.debug("update: session %s, key %r", session_tag(session_id), key)
    '''),
}, checks.HANGS, (*DEADLOCK_WORDS, "update_session")))

# "Invalidate, don't update: drop the cached copy, then write; the next read fetches the new value."
WRONG.append(Wrong("stale-cache", "evict the cached session first, then write the database", {
    P + "update_session": update('''
    with self._cache_lock:
        self._cache.pop(session_id, None)
    with self._db_lock:
        self._check_open()
        {write}
    log.debug("update: session %s, key %r", session_tag(session_id), key)
    '''),
}, checks.STILL_BUGGY, ("cache", "database")))

# "Updates reach the cache out of order: number them, and let only the newest one write the cache."
WRONG.append(Wrong("stale-cache", "only the newest update (by a sequence number) writes the cache, after the lock", {
    P + "__init__": persistent_init("# The last update's number, guarded by self._db_lock; per session, the number of",
                                    "# the update the cache holds, guarded by self._cache_lock.",
                                    "self._update_number = 0", "self._cache_numbers = {}"),
    P + "update_session": update('''
    with self._db_lock:
        self._check_open()
        {write}
        snapshot = self._read(session_id)
        self._update_number += 1
        mine = self._update_number
    log.debug("update: session %s, key %r", session_tag(session_id), key)
    with self._cache_lock:
        # An older update that arrives late must not overwrite a newer one.
        if mine > self._cache_numbers.get(session_id, 0):
            self._cache_numbers[session_id] = mine
            self._cache[session_id] = snapshot
    '''),
}, checks.STILL_BUGGY, ("cache", "database")))

# "Take the cache lock first everywhere I write the cache": update and increment now match get_session.
WRONG.append(Wrong("stale-cache", "the cache lock first in update_session, and in increment_access too", {
    P + "update_session": update('''
    with self._cache_lock:
        with self._db_lock:
            self._check_open()
            {write}
            self._cache[session_id] = self._read(session_id)
    log.debug("update: session %s, key %r", session_tag(session_id), key)
    '''),
    P + "increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        now = self._clock()
        with self._cache_lock:
            with self._db_lock:
                self._check_open()
                count = self._read(session_id).access_count + 1
                self._write("UPDATE sessions SET access_count = ?, last_update = ? WHERE session_id = ?",
                            (count, now, session_id))
                self._cache[session_id] = self._read(session_id)
        return count
    ''',
}, checks.HANGS, (*DEADLOCK_WORDS, "update_session")))

# "Two saves of one session must not overlap: a lock per session around the update."
WRONG.append(Wrong("stale-cache", "a lock per session around the update; the cache still written after the db lock", {
    P + "__init__": persistent_init("# One lock per session, for its updates; taken before self._db_lock.",
                                    "self._update_locks = {}"),
    P + "update_session": update('''
    with self._cache_lock:
        update_lock = self._update_locks.setdefault(session_id, threading.Lock())
    with update_lock:
        with self._db_lock:
            self._check_open()
            {write}
            snapshot = self._read(session_id)
        log.debug("update: session %s, key %r", session_tag(session_id), key)
        with self._cache_lock:
            self._cache[session_id] = snapshot
    '''),
}, checks.STILL_BUGGY, ("cache", "database", "increment_access")))

# "Write the database, then just forget the cached copy: every fill reads the database under its lock."
RIGHT.append(Right("stale-cache", "invalidate the cached session after the write, outside the lock", {
    P + "update_session": update('''
    with self._db_lock:
        self._check_open()
        {write}
    log.debug("update: session %s, key %r", session_tag(session_id), key)
    with self._cache_lock:
        self._cache.pop(session_id, None)
    '''),
}))

# "One re-entrant lock for the cache and the database: then one critical section is all there is."
RIGHT.append(Right("stale-cache", "one re-entrant lock for the cache and the database, held for the whole update", {
    P + "__init__": ONE_RLOCK,
    P + "update_session": update('''
    with self._db_lock:  # the cache's lock too
        self._check_open()
        {write}
        self._cache[session_id] = self._read(session_id)
    log.debug("update: session %s, key %r", session_tag(session_id), key)
    '''),
}))

# "Whatever order the writes came in, re-read the row under both locks and cache what the database holds."
RIGHT.append(Right("stale-cache", "cache what the database holds, re-read under both locks in a second section", {
    P + "update_session": update('''
    with self._db_lock:
        self._check_open()
        {write}
    log.debug("update: session %s, key %r", session_tag(session_id), key)
    with self._db_lock:
        if self._closed:
            return
        with self._cache_lock:
            try:
                self._cache[session_id] = self._read(session_id)
            except (SessionNotFound, SessionExpired):
                self._cache.pop(session_id, None)
    '''),
}))

# == expiry-race ===========================================================================

_SELECT_IDLE = ('"SELECT session_id{also} FROM sessions WHERE deleted = 0 AND status IN (?, ?) "\n'
                '                "AND last_update < ?", (*_EXPIRING, cutoff)')


def _select(also: str = "") -> str:
    return _SELECT_IDLE.format(also=also)


# "A request in between counts an access: expire only the sessions whose count did not move."
WRONG.append(Wrong("expiry-race", "expire only the sessions whose access count did not change since the SELECT", {
    P + "expire_sessions": f'''
    def expire_sessions(self):
        cutoff = self._clock() - self._ttl
        with self._db_lock:
            self._check_open()
            idle = self._db.execute(
                {_select(", access_count")}).fetchall()
        if idle:
            log.info("expiring up to %d sessions", len(idle))
        expired = []
        with self._db_lock:
            self._check_open()
            with self._transaction():
                for session_id, seen in idle:
                    if self._db.execute("UPDATE sessions SET status = 'expired' WHERE session_id = ? "
                                        "AND access_count = ?", (session_id, seen)).rowcount:
                        expired.append(session_id)
                self._db.execute("DELETE FROM sessions WHERE deleted = 1")
            with self._cache_lock:
                for session_id in expired:
                    self._cache.pop(session_id, None)
        return len(expired)
    ''',
    # A save beside the sweep is lost, and so is a status change (set_status leaves the count
    # as it was): the pair searches find either first.
}, checks.STILL_BUGGY, ("expire_sessions",)))

# "Hold the database lock across the SELECT and the UPDATE: no request can come in between."
WRONG.append(Wrong("expiry-race", "one hold of the threading lock across the SELECT and the UPDATE", {
    P + "expire_sessions": f'''
    def expire_sessions(self):
        cutoff = self._clock() - self._ttl
        with self._db_lock:  # no other request runs during the sweep
            self._check_open()
            expired = [row[0] for row in self._db.execute(
                {_select()}).fetchall()]
            if expired:
                log.info("expired %d sessions", len(expired))
            with self._transaction():
                self._db.executemany("UPDATE sessions SET status = 'expired' WHERE session_id = ?",
                                     [(session_id,) for session_id in expired])
                self._db.execute("DELETE FROM sessions WHERE deleted = 1")
            with self._cache_lock:
                for session_id in expired:
                    self._cache.pop(session_id, None)
        return len(expired)
    ''',
}, checks.STILL_BUGGY, ("process", "expired")))

# "Look at each candidate again just before expiring it."
WRONG.append(Wrong("expiry-race", "re-check each candidate in Python, outside the transaction that expires it", {
    P + "expire_sessions": f'''
    def expire_sessions(self):
        cutoff = self._clock() - self._ttl
        with self._db_lock:
            self._check_open()
            candidates = [row[0] for row in self._db.execute(
                {_select()}).fetchall()]
        expired = []
        with self._db_lock:
            self._check_open()
            for session_id in candidates:
                row = self._db.execute("SELECT status, last_update FROM sessions WHERE session_id = ? "
                                       "AND deleted = 0", (session_id,)).fetchone()
                if row is None or row[0] not in _EXPIRING or row[1] >= cutoff:
                    continue  # touched since: not idle any more
                self._write("UPDATE sessions SET status = 'expired' WHERE session_id = ?", (session_id,))
                expired.append(session_id)
            self._write("DELETE FROM sessions WHERE deleted = 1", ())
            with self._cache_lock:
                for session_id in expired:
                    self._cache.pop(session_id, None)
        if expired:
            log.info("expired %d sessions", len(expired))
        return len(expired)
    ''',
}, checks.STILL_BUGGY, ("process", "expired")))

# "One statement decides and expires; any session that is not expired yet and is idle goes."
WRONG.append(Wrong("expiry-race", "one atomic UPDATE that also expires completed and failed sessions", {
    P + "expire_sessions": '''
    def expire_sessions(self):
        cutoff = self._clock() - self._ttl
        with self._db_lock:
            self._check_open()
            with self._transaction():
                expired = [row[0] for row in self._db.execute(
                    "UPDATE sessions SET status = 'expired' WHERE deleted = 0 AND status != 'expired' "
                    "AND last_update < ? RETURNING session_id", (cutoff,)).fetchall()]
                self._db.execute("DELETE FROM sessions WHERE deleted = 1")
            with self._cache_lock:
                for session_id in expired:
                    self._cache.pop(session_id, None)
        if expired:
            log.info("expired %d sessions", len(expired))
        return len(expired)
    ''',
}, checks.STILL_BUGGY, ("completed", "expired")))

# "Expire what was selected, then bring back the ones a request touched meanwhile."
WRONG.append(Wrong("expiry-race", "expire, then put the sessions touched meanwhile back as pending", {
    P + "expire_sessions": f'''
    def expire_sessions(self):
        cutoff = self._clock() - self._ttl
        with self._db_lock:
            self._check_open()
            expired = [row[0] for row in self._db.execute(
                {_select()}).fetchall()]
        if expired:
            log.info("expired %d sessions", len(expired))
        with self._db_lock:
            self._check_open()
            with self._transaction():
                self._db.executemany("UPDATE sessions SET status = 'expired' WHERE session_id = ?",
                                     [(session_id,) for session_id in expired])
                # Touched since the SELECT: it was not idle after all.
                self._db.execute("UPDATE sessions SET status = 'pending' WHERE status = 'expired' "
                                 "AND last_update >= ?", (cutoff,))
                self._db.execute("DELETE FROM sessions WHERE deleted = 1")
            with self._cache_lock:
                for session_id in expired:
                    self._cache.pop(session_id, None)
        return len(expired)
    ''',
}, checks.STILL_BUGGY, ("expire_sessions()",)))

# "Every write moves last_update: expire a session only if its last_update is still the one I selected."
RIGHT.append(Right("expiry-race", "compare-and-set on last_update, one row at a time", {
    P + "expire_sessions": f'''
    def expire_sessions(self):
        cutoff = self._clock() - self._ttl
        with self._db_lock:
            self._check_open()
            idle = self._db.execute(
                {_select(", last_update")}).fetchall()
        expired = []
        with self._db_lock:
            self._check_open()
            with self._transaction():
                for session_id, seen in idle:
                    if self._db.execute("UPDATE sessions SET status = 'expired' WHERE session_id = ? AND deleted = 0 "
                                        "AND status IN (?, ?) AND last_update = ?",
                                        (session_id, *_EXPIRING, seen)).rowcount:
                        expired.append(session_id)
                self._db.execute("DELETE FROM sessions WHERE deleted = 1")
            with self._cache_lock:
                for session_id in expired:
                    self._cache.pop(session_id, None)
        if expired:
            log.info("expired %d sessions", len(expired))
        return len(expired)
    ''',
}))

# "Keep the two steps, but let each UPDATE state the whole condition again: SQLite checks it atomically."
RIGHT.append(Right("expiry-race", "each UPDATE by id restates the whole idle condition", {
    P + "expire_sessions": f'''
    def expire_sessions(self):
        cutoff = self._clock() - self._ttl
        with self._db_lock:
            self._check_open()
            candidates = [row[0] for row in self._db.execute(
                {_select()}).fetchall()]
        with self._db_lock:
            self._check_open()
            with self._transaction():
                expired = [session_id for session_id in candidates if self._db.execute(
                    "UPDATE sessions SET status = 'expired' WHERE session_id = ? AND deleted = 0 "
                    "AND status IN (?, ?) AND last_update < ?", (session_id, *_EXPIRING, cutoff)).rowcount]
                self._db.execute("DELETE FROM sessions WHERE deleted = 1")
            with self._cache_lock:
                for session_id in expired:
                    self._cache.pop(session_id, None)
        if expired:
            log.info("expired %d sessions", len(expired))
        return len(expired)
    ''',
}))

# "One UPDATE decides; I do not need the ids if I empty the whole cache."
RIGHT.append(Right("expiry-race", "one UPDATE by condition, then the whole cache emptied", {
    P + "expire_sessions": '''
    def expire_sessions(self):
        cutoff = self._clock() - self._ttl
        with self._db_lock:
            self._check_open()
            with self._transaction():
                expired = self._db.execute(
                    "UPDATE sessions SET status = 'expired' WHERE deleted = 0 AND status IN (?, ?) "
                    "AND last_update < ?", (*_EXPIRING, cutoff)).rowcount
                self._db.execute("DELETE FROM sessions WHERE deleted = 1")
            if expired:
                with self._cache_lock:
                    self._cache.clear()  # simpler than finding which ones
        if expired:
            log.info("expired %d sessions", expired)
        return expired
    ''',
}))

# == lock-order-deadlock ===================================================================

# "get_session is fixed; the stats read the cache's counters, so their lock comes first there."
WRONG.append(Wrong("lock-order-deadlock", "get_session fixed, but get_stats takes the cache lock first", {
    P + "get_session": REFERENCE_GET,
    P + "get_stats": '''
    def get_stats(self):
        # The stats read the cache's hit and miss counters: their lock first, then the database's.
        with self._cache_lock:
            with self._db_lock:
                return self._counts()[0]
    ''',
    P + "_counts": '''
    def _counts(self):
        """The stats, the live sessions and the deleted rows awaiting purge; once closed, as they
        were at close. Call with self._db_lock held (and self._cache_lock, for exact counters)."""
        if self._closed:
            return self._final
        total, active, deleted = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(deleted = 0 AND status != 'expired'), 0), "
            "COALESCE(SUM(deleted = 1), 0) FROM sessions").fetchone()
        stats = Stats(total_sessions=total, active_sessions=active, cache_hits=self._cache_hits,
                      cache_misses=self._cache_misses, failed_cleanups=0)
        return stats, active, deleted
    ''',
}, checks.STILL_BUGGY, (*DEADLOCK_WORDS, "get_session", "get_stats")))

# "The textbook: take locks in one global order, by address." Writers still take database, then cache.
WRONG.append(Wrong("lock-order-deadlock", "the two locks sorted by id()", {
    P + "get_session": get_session('''
    # Always take the two locks in one global order: by id(), as the textbook says.
    first, second = sorted((self._db_lock, self._cache_lock), key=id)
    with first:
        with second:
    ''', 12),
}, checks.STILL_BUGGY, (*DEADLOCK_WORDS, "get_session")))

# "One global order, by name": "cache" sorts before "db", the reverse of every writer.
WRONG.append(Wrong("lock-order-deadlock", "the two locks sorted by name", {
    P + "get_session": get_session('''
    locks = {"db": self._db_lock, "cache": self._cache_lock}
    first, second = (locks[name] for name in sorted(locks))  # one global order, alphabetical
    with first:
        with second:
    ''', 12),
}, checks.STILL_BUGGY, (*DEADLOCK_WORDS, "get_session")))

# "Never wait forever: a read that cannot get the database within a second fails, and the user retries."
WRONG.append(Wrong("lock-order-deadlock", "acquire(timeout=1.0), StoreError when it runs out", {
    P + "get_session": get_session('''
    with self._cache_lock:
        if not self._db_lock.acquire(timeout=1.0):
            raise StoreError("the session store is busy: try again")
        try:
    ''', 12) + '''\
        finally:
            self._db_lock.release()
''',
}, checks.STILL_BUGGY, ("get_session", "StoreError")))

# "A hit needs no database: serve it under the cache lock alone; only a miss takes both, database first."
WRONG.append(Wrong("lock-order-deadlock", "cache hits under the cache lock alone, not noticing other processes", {
    P + "get_session": get_session('''
    with self._cache_lock:
        self._check_open()
        cached = self._cache.get(session_id)
        if cached is not None:
            self._cache_hits += 1
            return cached
    with self._db_lock:
        with self._cache_lock:
    ''', 12),
}, checks.STILL_BUGGY, ("cache", "process")))

# "get_session is fixed; a logout should vanish from the cache at once, so delete takes the cache lock first."
WRONG.append(Wrong("lock-order-deadlock", "get_session fixed, but delete_session takes the cache lock first", {
    P + "get_session": REFERENCE_GET,
    P + "delete_session": '''
    def delete_session(self, session_id):
        check_session_id(session_id)
        with self._cache_lock:
            self._cache.pop(session_id, None)  # gone from the cache before anything else
            with self._db_lock:
                self._check_open()
                with self._transaction():
                    row = self._db.execute("UPDATE sessions SET deleted = 1 WHERE session_id = ? AND deleted = 0 "
                                           "RETURNING user_id", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFound(session_id)
        log.info("logout: session %s for user %r", session_tag(session_id), row[0])
    ''',
}, checks.STILL_BUGGY, (*DEADLOCK_WORDS, "get_session", "delete_session")))

# "Never wait for the database while holding the cache: try it, and if it is taken, let go and retry."
RIGHT.append(Right("lock-order-deadlock", "try the database lock without waiting, back off and retry", {
    P + "get_session": get_session('''
    while True:
        with self._cache_lock:
            if self._db_lock.acquire(blocking=False):
                try:
    ''', 20) + '''\
                finally:
                    self._db_lock.release()
        time.sleep(0.001)  # the database lock is taken: let its holder have the cache lock
''',
}))

# "Two locks are one too many: one re-entrant lock guards the cache and the database."
RIGHT.append(Right("lock-order-deadlock", "one re-entrant lock for the cache and the database", {
    P + "__init__": ONE_RLOCK,
    P + "get_session": get_session('''
    with self._db_lock:  # the cache's lock too
    ''', 8),
}))

# "Take both through one helper, so there is one order and it is written once."
RIGHT.append(Right("lock-order-deadlock", "both locks through one helper that fixes the order", {
    P + "get_session": get_session('''
    with self._both_locks():
    ''', 8) + '''\

def _both_locks(self):
    """The database lock, then the cache lock: the one order every path takes both in."""
    import contextlib

    stack = contextlib.ExitStack()
    stack.enter_context(self._db_lock)
    stack.enter_context(self._cache_lock)
    return stack
''',
}))

# == cross-process-increment ===============================================================

_READ_AND_WRITE = '''
count = self._read(session_id).access_count + 1
self._write("UPDATE sessions SET access_count = ?, last_update = ? WHERE session_id = ?",
            (count, now, session_id))
'''

# "A lock every manager shares, on the class: then every worker counts one at a time."
WRONG.append(Wrong("cross-process-increment", "a lock shared as a class attribute", {
    P + "increment_access": f'''
    # Shared by every manager, so that every worker counts one at a time.
    _increment_lock = threading.Lock()

    def increment_access(self, session_id):
        check_session_id(session_id)
        now = self._clock()
        with self._increment_lock:
            with self._db_lock:
                self._check_open()
{_at(16, _READ_AND_WRITE)}                self._refresh(session_id)
        return count
    ''',
}, checks.STILL_BUGGY, ("2 processes", "lost")))

# "Read, read again to be sure, and write only where the count is still what I read."
WRONG.append(Wrong("cross-process-increment", "a re-check loop in Python, no retry when no row changed", {
    P + "increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        now = self._clock()
        with self._db_lock:
            self._check_open()
            while True:
                seen = self._read(session_id).access_count
                if self._read(session_id).access_count == seen:  # nobody counted in between
                    break
            self._write("UPDATE sessions SET access_count = ?, last_update = ? "
                        "WHERE session_id = ? AND access_count = ?", (seen + 1, now, session_id, seen))
            self._refresh(session_id)
        return seen + 1
    ''',
}, checks.STILL_BUGGY, ("2 processes", "lost")))

# "The cache already knows the count: no SELECT needed, and the write is in a transaction."
WRONG.append(Wrong("cross-process-increment", "count from the cached session", {
    P + "increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        now = self._clock()
        count = self.get_session(session_id).access_count + 1
        with self._db_lock:
            self._check_open()
            with self._transaction():
                self._require_live(session_id)
                self._db.execute("UPDATE sessions SET access_count = ?, last_update = ? WHERE session_id = ?",
                                 (count, now, session_id))
            self._refresh(session_id)
        return count
    ''',
}, checks.STILL_BUGGY, ("2 processes", "lost")))

# "A lock of its own for counting, around the read and the write."
WRONG.append(Wrong("cross-process-increment", "a threading lock of its own around the read and the write", {
    P + "__init__": persistent_init("# Guards increment_access: one count at a time, read to write.",
                                    "self._count_lock = threading.Lock()"),
    P + "increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        with self._count_lock:
            now = self._clock()
            with self._db_lock:
                self._check_open()
                count = self._read(session_id).access_count + 1
            with self._db_lock:
                self._check_open()
                self._write("UPDATE sessions SET access_count = ?, last_update = ? WHERE session_id = ?",
                            (count, now, session_id))
                self._refresh(session_id)
        return count
    ''',
}, checks.STILL_BUGGY, ("2 processes", "lost")))

# "One atomic UPDATE; and a user who comes back after expiry is active again, so renew the session."
WRONG.append(Wrong("cross-process-increment", "one UPDATE that also counts an expired session and renews it", {
    P + "increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        now = self._clock()
        with self._db_lock:
            self._check_open()
            with self._transaction():
                self._row(session_id)  # it exists and is not deleted
                count = self._db.execute(
                    "UPDATE sessions SET access_count = access_count + 1, last_update = ?, "
                    "status = CASE status WHEN 'expired' THEN 'pending' ELSE status END "
                    "WHERE session_id = ? RETURNING access_count", (now, session_id)).fetchone()[0]
            self._refresh(session_id)
        return count
    ''',
}, checks.STILL_BUGGY, ("SessionExpired",)))

# "Count in SQL, then read the count back to return it."
WRONG.append(Wrong("cross-process-increment", "one UPDATE counts; the count is read back after the commit", {
    P + "increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        now = self._clock()
        with self._db_lock:
            self._check_open()
            with self._transaction():
                self._require_live(session_id)
                self._db.execute("UPDATE sessions SET access_count = access_count + 1, last_update = ? "
                                 "WHERE session_id = ?", (now, session_id))
            count = self._read(session_id).access_count
            self._refresh(session_id)
        return count
    ''',
}, checks.STILL_BUGGY, ("returned [2, 2]",)))

# "A lock file beside the database: flock is shared by every process that opens it."
RIGHT.append(Right("cross-process-increment", "a lock file (fcntl.flock on path + '.lock') around the read and write", {
    P + "increment_access": '''
    def increment_access(self, session_id):
        import fcntl

        check_session_id(session_id)
        now = self._clock()
        with self._db_lock:
            self._check_open()
            with open(f"{self._path}.lock", "a") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)  # one increment at a time, in every process
                count = self._read(session_id).access_count + 1
                self._write("UPDATE sessions SET access_count = ?, last_update = ? WHERE session_id = ? "
                            "AND deleted = 0 AND status != 'expired'", (count, now, session_id))
            self._refresh(session_id)
        return count
    ''',
}))

# "Read and write in one BEGIN IMMEDIATE; if another process holds the file, back off and try again."
RIGHT.append(Right("cross-process-increment", "a transaction retried on 'database is locked', with backoff", {
    P + "increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        now = self._clock()
        with self._db_lock:
            self._check_open()
            self._db.execute("PRAGMA busy_timeout = 10")  # fail fast, and retry below
            try:
                delay = 0.001
                while True:
                    try:
                        with self._transaction():
                            count = self._read(session_id).access_count + 1
                            self._db.execute("UPDATE sessions SET access_count = ?, last_update = ? "
                                             "WHERE session_id = ?", (count, now, session_id))
                        break
                    except StoreError as exc:
                        if "locked" not in str(exc):
                            raise
                        time.sleep(delay)
                        delay = min(delay * 2, 0.05)
            finally:
                self._db.execute("PRAGMA busy_timeout = 30000")
            self._refresh(session_id)
        return count
    ''',
}))

# "Compare-and-set: write count + 1 only where the count is still what I read; if no row changed, read again."
RIGHT.append(Right("cross-process-increment", "compare-and-set, retried until one row changed", {
    P + "increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        now = self._clock()
        with self._db_lock:
            self._check_open()
            while True:
                seen = self._read(session_id).access_count
                changed = self._db.execute(
                    "UPDATE sessions SET access_count = ?, last_update = ? WHERE session_id = ? AND access_count = ? "
                    "AND deleted = 0 AND status != 'expired'", (seen + 1, now, session_id, seen)).rowcount
                if changed == 1:
                    break
            self._refresh(session_id)
        return seen + 1
    ''',
}))

# "Add one in SQL and read the new count back, both inside one BEGIN IMMEDIATE."
RIGHT.append(Right("cross-process-increment", "add one in SQL, read it back in the same transaction", {
    P + "increment_access": '''
    def increment_access(self, session_id):
        check_session_id(session_id)
        now = self._clock()
        with self._db_lock:
            self._check_open()
            with self._transaction():
                self._require_live(session_id)
                self._db.execute("UPDATE sessions SET access_count = access_count + 1, last_update = ? "
                                 "WHERE session_id = ?", (now, session_id))
                count = self._db.execute("SELECT access_count FROM sessions WHERE session_id = ?",
                                         (session_id,)).fetchone()[0]
            self._refresh(session_id)
        return count
    ''',
}))

# == close-order ===========================================================================

_CLOSE_DB = '''
with self._db_lock:
    if self._closed:
        return
    self._final = self._counts()
    self._closed = True
    self._db.close()
log.info("closed the session store %s", self._path.name)
'''
_REMOVE_TEMPORARY = '''
if self._temporary:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{self._path}{suffix}").unlink(missing_ok=True)
'''


def close(before: str, after: str = "") -> str:
    """close(): before (at 4 spaces), the database closed as buggy/ closes it, after, the temporary file removed."""
    return ("\ndef close(self):\n" + before.strip("\n") + "\n" + _at(4, _CLOSE_DB) + (after.strip("\n") + "\n")
            * bool(after.strip()) + _at(4, _REMOVE_TEMPORARY))


_SWEEP_LOCKED = '''
def _sweep(self, interval):
    """The sweeper thread: expire sessions every interval until close() stops it."""
    while not self._stop.wait(interval):
        with self._sweep_lock:
{recheck}            self.expire_sessions()
'''

# "Stop it, give it a moment to finish its sweep, then close: a sweep takes a few milliseconds."
WRONG.append(Wrong("close-order", "stop, join with a 50 ms timeout, then close", {
    P + "close": close('''
    self._stop.set()
    if self._sweeper is not threading.current_thread():
        self._sweeper.join(0.05)  # a sweep takes a few milliseconds
    '''),
}, checks.STILL_BUGGY, ("sweeper", "closed")))

# "A sweep lock: close() takes it, so it never runs in the middle of a sweep."
WRONG.append(Wrong("close-order", "a sweep lock around each sweep and around close, no re-check of the stop flag", {
    P + "__init__": persistent_init("# Held for each sweep and by close(): close never runs in the middle of a sweep.",
                                    "self._sweep_lock = threading.Lock()"),
    P + "_sweep": _SWEEP_LOCKED.format(recheck=""),
    P + "close": '''
    def close(self):
        with self._sweep_lock:  # never in the middle of a sweep
            self._stop.set()
            with self._db_lock:
                if self._closed:
                    return
                self._final = self._counts()
                self._closed = True
                self._db.close()
        log.info("closed the session store %s", self._path.name)
        if self._sweeper is not threading.current_thread():
            self._sweeper.join()
''' + _at(8, _REMOVE_TEMPORARY),
}, checks.STILL_BUGGY, ("sweeper", "closed")))

# "Stop the sweeper and wait for it, always, before the database goes."
WRONG.append(Wrong("close-order", "stop and join first, even from the sweeper's own thread", {
    P + "close": close('''
    self._stop.set()
    self._sweeper.join()  # the sweeper is done before the database goes
    '''),
}, checks.STILL_BUGGY, ("close()", "RuntimeError")))

# "Wait for the sweeper to finish first; then close; then tell it to stop."
WRONG.append(Wrong("close-order", "join first, close the database, set the stop flag last", {
    P + "close": close('''
    if self._sweeper is not threading.current_thread():
        self._sweeper.join()
    ''', '''
    self._stop.set()
    '''),
}, checks.HANGS, ("did not finish", "join")))

# "The sweeper is a daemon thread: tell it to stop and close; it dies with the process anyway."
WRONG.append(Wrong("close-order", "stop, no join (the sweeper is a daemon), close", {
    P + "close": close('''
    self._stop.set()  # a daemon thread: no need to wait for it
    '''),
}, checks.STILL_BUGGY, ("sweeper", "closed")))

# "Join in short steps, so a stuck sweeper shows up in a debugger, until it has really ended."
RIGHT.append(Right("close-order", "stop, then join in 50 ms steps until the sweeper has ended", {
    P + "close": close('''
    self._stop.set()
    if self._sweeper is not threading.current_thread():
        while self._sweeper.is_alive():
            self._sweeper.join(0.05)
    '''),
}))

# "A sweep lock, re-entrant, and the sweep looks at the stop flag again once it holds it."
RIGHT.append(Right("close-order", "a re-entrant sweep lock, the stop flag re-checked under it", {
    P + "__init__": persistent_init("# Held for each sweep and by close() while it stops the sweeper.",
                                    "self._sweep_lock = threading.RLock()"),
    P + "_sweep": _SWEEP_LOCKED.format(recheck='''\
            if self._stop.is_set():  # close() came first
                return
'''),
    P + "close": close('''
    with self._sweep_lock:  # no sweep runs now, and none starts after
        self._stop.set()
    ''', '''
    if self._sweeper is not threading.current_thread():
        self._sweeper.join()
    '''),
}))

# "The sweeper says when it has ended; close() waits for that, then closes."
RIGHT.append(Right("close-order", "the sweeper sets an event as it ends; close waits for it", {
    P + "__init__": persistent_init("# Set by the sweeper as it ends.", "self._stopped = threading.Event()"),
    P + "_sweep": '''
    def _sweep(self, interval):
        """The sweeper thread: expire sessions every interval until close() stops it."""
        try:
            while not self._stop.wait(interval):
                self.expire_sessions()
        finally:
            self._stopped.set()
    ''',
    P + "close": close('''
    self._stop.set()
    if self._sweeper is not threading.current_thread():
        self._stopped.wait()
    '''),
}))
