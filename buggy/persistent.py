"""Sessions kept in SQLite, shared by the threads of a process and by processes.

Any number of processes may open the same file; each opens one connection, used
by one thread at a time. A write-through cache of session snapshots sits in
front of the database. Its guarantee: get_session never returns a value older
than the database's. Writes by this manager go to the database and then to the
cache inside one critical section; writes by other processes are noticed through
``PRAGMA data_version``, which changes when another connection commits, and
empty the cache before it is read.

A session's status moves along its lifecycle only: pending, in_progress, then
completed or failed; a pending or in-progress session whose last update is older
than the time to live is expired by the sweeper, a background thread that runs
every sweep_interval seconds (expire_sessions runs it on demand). Every write
refreshes the last-update time; reads do not. delete_session marks the row
deleted; the sweeper purges deleted rows later.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sessionlab.api import (
    IllegalTransition,
    InvalidInput,
    MetadataValue,
    Progress,
    Session,
    SessionError,
    SessionExpired,
    SessionNotFound,
    Stats,
    NotASessionStore,
    StoreDamaged,
    StoreError,
    StoreFull,
    StoreLocked,
    check_key,
    check_metadata_size,
    check_name,
    check_session_id,
    check_value,
    session_tag,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
# Version 1: the sessions. Version 2: the count of sessions ever created, which a purge does not lower,
# counted by a trigger in the INSERT's own transaction (a version-1 file starts it at its rows).
_SCHEMA = ("""
CREATE TABLE IF NOT EXISTS sessions (
    session_id   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    username     TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending',
    access_count INTEGER NOT NULL DEFAULT 0,
    metadata     TEXT NOT NULL DEFAULT '{}',
    created_at   REAL NOT NULL,
    last_update  REAL NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    total        INTEGER NOT NULL DEFAULT 0,
    processed    INTEGER NOT NULL DEFAULT 0,
    current_file TEXT,
    failed_files TEXT NOT NULL DEFAULT '[]',
    capture_path TEXT,
    keylog_path  TEXT
)
""", "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
           "INSERT OR IGNORE INTO counters VALUES ('created', (SELECT COUNT(*) FROM sessions))",
           "CREATE TRIGGER IF NOT EXISTS count_created AFTER INSERT ON sessions "
           "BEGIN UPDATE counters SET value = value + 1 WHERE name = 'created'; END")
_COLUMN_NAMES = frozenset({"session_id", "user_id", "username", "status", "access_count", "metadata", "created_at",
                           "last_update", "deleted", "total", "processed", "current_file", "failed_files",
                           "capture_path", "keylog_path"})
_COLUMNS = "session_id, user_id, username, status, access_count, metadata, created_at, last_update"

STATUSES = ("pending", "in_progress", "completed", "failed", "expired")
# The lifecycle: the statuses each status may move to. Expiry is the sweeper's alone.
_NEXT = {"pending": ("in_progress", "failed"), "in_progress": ("completed", "failed"),
         "completed": (), "failed": (), "expired": ()}
_EXPIRING = ("pending", "in_progress")
# A failed sweep is retried after RETRY_FIRST seconds, then twice as long each time, up to the
# sweep interval; health_problems reports the sweeper once its last FAILING_SWEEPS sweeps failed.
RETRY_FIRST = 1.0
FAILING_SWEEPS = 3
# A write that finds another process's write lock tries again after LOCK_POLL_FIRST seconds, then
# twice as long each time up to LOCK_POLL_MOST (SQLite's own wait on each try), until the lock timeout.
LOCK_POLL_FIRST = 0.002
LOCK_POLL_MOST = 0.05


class PersistentSessionManager:
    """Creates, reads, updates and deletes sessions kept in one SQLite file."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, ttl: float = 1800.0,
                 sweep_interval: float = 60.0, clock: Callable[[], float] = time.time, lock_timeout: float = 30.0):
        """lock_timeout: how long a write waits for another process's write lock before StoreError."""
        for name, value in (("ttl", ttl), ("sweep_interval", sweep_interval), ("lock_timeout", lock_timeout)):
            if type(value) not in (int, float) or not 0 < value < 2**31:
                raise InvalidInput(f"{name} must be a positive number of seconds, below 2**31")
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise InvalidInput("path must be a str or a path")
        if not callable(clock):
            raise InvalidInput("clock must be a function that returns the time in seconds")
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
        self._db_lock = threading.Lock()
        # Guards self._cache, self._data_version and the hit and miss counters.
        self._cache_lock = threading.Lock()
        self._cache: dict[str, Session] = {}
        self._data_version = self._db.execute("PRAGMA data_version").fetchone()[0]
        self._cache_hits = 0
        self._cache_misses = 0
        self._closed = False
        self._final = (Stats(0, 0, 0, 0, 0), 0, 0)  # what the stats were at close
        self._stop = threading.Event()
        # Guards self._sweeps_failed and self._sweep_failure: the sweeper writes them, health_problems reads.
        self._failures_lock = threading.Lock()
        self._sweeps_failed = 0  # sweeps failed in a row
        self._sweep_failure = ""  # why the last one failed, never with an id
        self._sweeper = threading.Thread(target=self._sweep, args=(float(sweep_interval),),
                                         name="session-sweeper", daemon=True)
        self._sweeper.start()

    # -- The track-1 contract ------------------------------------------------------------

    def create_session(self, user_id: str, username: str) -> str:
        check_name("user_id", user_id)
        check_name("username", username)
        now = self._clock()
        session_id = secrets.token_urlsafe(24)
        with self._db_lock:
            self._check_open()
            self._write("INSERT INTO sessions (session_id, user_id, username, created_at, last_update) "
                        "VALUES (?, ?, ?, ?, ?)", (session_id, user_id, username, now, now))
            with self._cache_lock:
                self._cache[session_id] = _snapshot((session_id, user_id, username, "pending", 0, "{}", now, now))
        log.info("login: session %s for user %r", session_tag(session_id), user_id)
        return session_id

    def get_session(self, session_id: str) -> Session:
        check_session_id(session_id)
        with self._cache_lock:
            with self._db_lock:
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

    def update_session(self, session_id: str, key: str, value: MetadataValue) -> None:
        check_session_id(session_id)
        check_key(key)
        check_value(value)
        now = self._clock()
        with self._db_lock:
            self._check_open()
            with self._transaction():
                self._require_live(session_id)
                metadata = _decoded(self._db.fetch_one(
                    "SELECT metadata FROM sessions WHERE session_id = ?", (session_id,))[0], dict)
                metadata[key] = value
                check_metadata_size(metadata)
                self._db.execute("UPDATE sessions SET metadata = ?, last_update = ? WHERE session_id = ?",
                                 (json.dumps(metadata), now, session_id))
            snapshot = self._read(session_id)
        log.debug("update: session %s, key %r", session_tag(session_id), key)
        with self._cache_lock:
            self._cache[session_id] = snapshot

    def increment_access(self, session_id: str) -> int:
        check_session_id(session_id)
        now = self._clock()
        with self._db_lock:
            self._check_open()
            count = self._read(session_id).access_count + 1
            self._write("UPDATE sessions SET access_count = ?, last_update = ? WHERE session_id = ?",
                        (count, now, session_id))
            self._refresh(session_id)
        return count

    def delete_session(self, session_id: str) -> None:
        check_session_id(session_id)
        with self._db_lock:
            self._check_open()
            with self._transaction():
                row = self._db.fetch_one("UPDATE sessions SET deleted = 1 WHERE session_id = ? AND deleted = 0 "
                                         "RETURNING user_id", (session_id,))
            with self._cache_lock:
                self._cache.pop(session_id, None)
        if row is None:
            raise SessionNotFound(session_id)
        log.info("logout: session %s for user %r", session_tag(session_id), row[0])

    def get_stats(self) -> Stats:
        with self._db_lock:
            return self._counts()[0]

    def get_active_count(self) -> int:
        with self._db_lock:
            return self._counts()[1]

    def get_cleanup_queue_size(self) -> int:
        """Deleted sessions whose rows wait for the sweeper's purge."""
        with self._db_lock:
            return self._counts()[2]

    def close(self) -> None:
        with self._db_lock:
            if self._closed:
                return
            try:
                self._final = self._counts()
            except StoreError:
                log.warning("closing the session store %s: its counts could not be read", self._path.name)
            self._closed = True
            self._db.close()
        log.info("closed the session store %s", self._path.name)
        self._stop.set()
        if self._sweeper is not threading.current_thread():
            self._sweeper.join()
        if self._temporary:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self._path}{suffix}").unlink(missing_ok=True)

    def __enter__(self) -> PersistentSessionManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- The persistent track ------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    def session_exists(self, session_id: str) -> bool:
        """Whether a session with this id exists and is not deleted (an expired one exists)."""
        check_session_id(session_id)
        with self._db_lock:
            self._check_open()
            return self._db.execute("SELECT 1 FROM sessions WHERE session_id = ? AND deleted = 0",
                                    (session_id,)).fetchone() is not None

    def get_status(self, session_id: str) -> str:
        check_session_id(session_id)
        with self._db_lock:
            self._check_open()
            return self._row(session_id)[3]

    def set_status(self, session_id: str, status: str) -> None:
        """Move a session along its lifecycle; IllegalTransition for any other move."""
        check_session_id(session_id)
        if type(status) is not str or status not in STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(STATUSES)}")
        now = self._clock()
        with self._db_lock:
            self._check_open()
            with self._transaction():
                row = self._row(session_id)
                _snapshot(row)  # StoreDamaged, before anything is written, for a row that cannot be read back
                current = row[3]
                if status not in _NEXT[current]:
                    raise IllegalTransition(f"a session that is {current} cannot become {status}")
                self._db.execute("UPDATE sessions SET status = ?, last_update = ? WHERE session_id = ?",
                                 (status, now, session_id))
            self._refresh(session_id)

    def set_total(self, session_id: str, total: int) -> None:
        check_session_id(session_id)
        if type(total) is not int or not 0 <= total < 2**63:
            raise InvalidInput("total must be a whole number, 0 or more")
        self._write_live(session_id, "total = ?", (total,))

    def record_progress(self, session_id: str, *, processed: int = 1, current_file: str | None = None,
                        failed_file: str | None = None) -> None:
        """Count processed files, in one UPDATE: no concurrent call is lost."""
        check_session_id(session_id)
        if type(processed) is not int or not 0 <= processed < 2**31:
            raise InvalidInput("processed must be a whole number, 0 or more")
        for name, value in (("current_file", current_file), ("failed_file", failed_file)):
            if value is not None:
                check_name(name, value)
        self._write_live(session_id, "processed = processed + ?, current_file = COALESCE(?, current_file), "
                         "failed_files = CASE WHEN ? IS NULL THEN failed_files "
                         "ELSE json_insert(failed_files, '$[#]', ?) END",
                         (processed, current_file, failed_file, failed_file))

    def get_progress(self, session_id: str) -> Progress:
        check_session_id(session_id)
        with self._db_lock:
            self._check_open()
            self._row(session_id)
            total, processed, current, failed = self._db.fetch_one(
                "SELECT total, processed, current_file, failed_files FROM sessions WHERE session_id = ?",
                (session_id,))
        return Progress(total, processed, current, tuple(_decoded(failed, list)))

    def record_files(self, session_id: str, capture_path: str, keylog_path: str) -> None:
        """Record where a stopped session's capture and key log were written."""
        check_session_id(session_id)
        check_name("capture_path", capture_path)
        check_name("keylog_path", keylog_path)
        self._write_live(session_id, "capture_path = ?, keylog_path = ?", (capture_path, keylog_path))

    def get_files(self, session_id: str) -> tuple[str | None, str | None]:
        check_session_id(session_id)
        with self._db_lock:
            self._check_open()
            self._row(session_id)
            return tuple(self._db.fetch_one("SELECT capture_path, keylog_path FROM sessions WHERE session_id = ?",
                                            (session_id,)))

    def expire_sessions(self) -> int:
        """Expire every pending or in-progress session not updated within the ttl; purge deleted rows."""
        cutoff = self._clock() - self._ttl
        with self._db_lock:
            self._check_open()
            expired = [row[0] for row in self._db.execute(
                "SELECT session_id FROM sessions WHERE deleted = 0 AND status IN (?, ?) "
                "AND last_update < ?", (*_EXPIRING, cutoff)).fetchall()]
        if expired:
            log.info("expired %d sessions", len(expired))
        with self._db_lock:
            self._check_open()
            with self._transaction():
                self._db.executemany("UPDATE sessions SET status = 'expired' WHERE session_id = ?",
                                     [(session_id,) for session_id in expired])
                self._db.execute("DELETE FROM sessions WHERE deleted = 1")
            with self._cache_lock:
                for session_id in expired:
                    self._cache.pop(session_id, None)
        return len(expired)

    # -- Helpers -------------------------------------------------------------------------

    def health_problems(self) -> tuple[str, ...]:
        """What stops the sweeper: it has stopped, or its last FAILING_SWEEPS sweeps failed."""
        with self._failures_lock:
            failed, reason = self._sweeps_failed, self._sweep_failure
        if self._stop.is_set():
            return ()  # closed: the sweeper is meant to be stopped
        if not self._sweeper.is_alive():
            return ("the session sweeper has stopped: sessions no longer expire",)
        if failed >= FAILING_SWEEPS:
            return (f"the session sweeper failed its last {failed} sweeps: {reason}",)
        return ()

    def _sweep(self, interval: float) -> None:
        """The sweeper thread: expire sessions every interval until close() stops it. A failed
        sweep is logged once and retried, sooner at first, then every interval."""
        delay, failing = interval, False
        while not self._stop.wait(delay):
            try:
                self.expire_sessions()
            except Exception as exc:
                if self._closed:
                    raise  # a sweep under a closed manager is no failure of the store: close() let it run
                delay, failing = self._sweep_failed(exc, interval), True
            else:
                if failing:
                    delay, failing = interval, self._sweep_recovered()

    def _sweep_failed(self, exc: Exception, interval: float) -> float:
        """Note a failed sweep; how long to wait before the next."""
        reason = str(exc) if isinstance(exc, StoreError) else type(exc).__name__  # a StoreError names no id
        with self._failures_lock:
            self._sweeps_failed += 1
            self._sweep_failure = reason
            failed = self._sweeps_failed
        if failed == 1:
            log.warning("a sweep of the session store %s failed (%s); retrying", self._path.name, reason)
        return min(interval, RETRY_FIRST * 2 ** (failed - 1))

    def _sweep_recovered(self) -> bool:
        """Note a sweep that succeeded after failed ones; False: the sweeper is failing no more."""
        with self._failures_lock:
            failed, self._sweeps_failed, self._sweep_failure = self._sweeps_failed, 0, ""
        log.warning("the sweeps of the session store %s succeed again, after %d failed", self._path.name, failed)
        return False

    def _check_open(self) -> None:
        """Raise SessionError once the manager is closed. Call with self._db_lock held."""
        if self._closed:
            raise SessionError("the session manager is closed")

    def _counts(self) -> tuple[Stats, int, int]:
        """The stats, the live sessions and the deleted rows awaiting purge; once closed, as they
        were at close. Call with self._db_lock held."""
        if self._closed:
            return self._final
        total, active, deleted = self._db.execute(
            "SELECT (SELECT value FROM counters WHERE name = 'created'), "
            "COALESCE(SUM(deleted = 0 AND status != 'expired'), 0), "
            "COALESCE(SUM(deleted = 1), 0) FROM sessions").fetchone()
        with self._cache_lock:
            stats = Stats(total_sessions=total, active_sessions=active, cache_hits=self._cache_hits,
                          cache_misses=self._cache_misses, failed_cleanups=0)
        return stats, active, deleted

    def _transaction(self) -> _Transaction:
        """BEGIN IMMEDIATE ... COMMIT: no other process writes in between. Call with self._db_lock held:
        it is let go while another process holds the write lock, and the manager is open once it is back."""
        return _Transaction(self._db, self._db_lock, self._check_open)

    def _write(self, sql: str, parameters: tuple) -> None:
        """One statement in its own transaction. Call with self._db_lock held."""
        with self._transaction():
            self._db.execute(sql, parameters)

    def _write_live(self, session_id: str, assignments: str, parameters: tuple) -> None:
        now = self._clock()
        with self._db_lock:
            self._check_open()
            with self._transaction():
                self._read(session_id)  # SessionExpired, or StoreDamaged for a row that cannot be read back
                self._db.execute(f"UPDATE sessions SET {assignments}, last_update = ? WHERE session_id = ?",
                                 (*parameters, now, session_id))
            self._refresh(session_id)

    def _row(self, session_id: str) -> tuple:
        """The row of a session that is not deleted, or SessionNotFound. Call with self._db_lock held."""
        row = self._db.fetch_one(f"SELECT {_COLUMNS} FROM sessions WHERE session_id = ? AND deleted = 0",
                                 (session_id,))
        if row is None:
            raise SessionNotFound(session_id)
        return row

    def _require_live(self, session_id: str) -> None:
        """SessionNotFound or SessionExpired unless the session can be used. Call with self._db_lock held."""
        if self._row(session_id)[3] == "expired":
            raise SessionExpired(f"session {session_tag(session_id)} has expired")

    def _read(self, session_id: str) -> Session:
        """The session as stored, as a snapshot. Call with self._db_lock held."""
        row = self._row(session_id)
        if row[3] == "expired":
            raise SessionExpired(f"session {session_tag(session_id)} has expired")
        return _snapshot(row)

    def _refresh(self, session_id: str) -> None:
        """Put the stored session in the cache. Call with self._db_lock held."""
        snapshot = self._read(session_id)
        with self._cache_lock:
            self._cache[session_id] = snapshot

    def _forget_others_writes(self) -> None:
        """Empty the cache if another connection committed since it was filled.
        Call with self._db_lock and self._cache_lock held."""
        version = self._db.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._data_version = version
            self._cache.clear()


class _Store:
    """A connection whose every failure is a StoreError naming its cause, never a bare sqlite3 error."""

    def __init__(self, db: sqlite3.Connection, lock_timeout: float):
        self._db, self._lock_timeout = db, lock_timeout

    def execute(self, sql: str, parameters: tuple = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, parameters)
        except sqlite3.Error as exc:
            raise _store_error(exc, self._lock_timeout) from None

    def fetch_one(self, sql: str, parameters: tuple = ()) -> tuple | None:
        """The first row: a row SQLite cannot hand back (text that is not UTF-8) is a StoreDamaged too."""
        try:
            return self._db.execute(sql, parameters).fetchone()
        except sqlite3.Error as exc:
            raise _store_error(exc, self._lock_timeout) from None

    def executemany(self, sql: str, rows: list[tuple]) -> sqlite3.Cursor:
        try:
            return self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise _store_error(exc, self._lock_timeout) from None

    @property
    def in_transaction(self) -> bool:
        return self._db.in_transaction

    @property
    def lock_timeout(self) -> float:
        return self._lock_timeout

    def close(self) -> None:
        self._db.close()


class _Transaction:
    """BEGIN IMMEDIATE on enter, COMMIT (or ROLLBACK on an error) on exit. While another process holds
    the file's write lock, the manager's lock is let go between tries: its other threads' cached reads
    and stats go on, and only the writers wait, up to the lock timeout."""

    def __init__(self, db: _Store, lock: threading.Lock | None = None, check_open: Callable[[], None] | None = None):
        self._db, self._lock, self._check_open = db, lock, check_open

    def __enter__(self) -> None:
        deadline, pause = time.monotonic() + self._db.lock_timeout, LOCK_POLL_FIRST
        while True:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                return
            except StoreLocked:
                if time.monotonic() + pause > deadline:
                    raise
            self._wait(pause)
            pause = min(2 * pause, LOCK_POLL_MOST)

    def _wait(self, seconds: float) -> None:
        """Sleep with the manager's lock let go; raise SessionError if it was closed meanwhile."""
        if self._lock is None:
            time.sleep(seconds)
            return
        self._lock.release()
        try:
            time.sleep(seconds)
        finally:
            self._lock.acquire()
        self._check_open()

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> None:
        if kind is None:
            try:
                self._db.execute("COMMIT")
                return
            except StoreError:
                self._roll_back()
                raise
        self._roll_back()

    def _roll_back(self) -> None:
        """ROLLBACK, unless SQLite has rolled back already (it does on a full disk): the error that
        ended the transaction is the one to report, never "cannot rollback"."""
        if not self._db.in_transaction:
            return
        try:
            self._db.execute("ROLLBACK")
        except StoreError as exc:
            log.warning("a rollback of the session store failed too: %s", exc)


def _snapshot(row: tuple) -> Session:
    session_id, user_id, username, _, access_count, metadata, created_at, last_update = row
    return Session(session_id=session_id, user_id=user_id, username=username, is_authenticated=True,
                   access_count=access_count, metadata=MappingProxyType(_decoded(metadata, dict)),
                   created_at=created_at, last_accessed=last_update)


def _decoded(text: str, kind: type[dict] | type[list]) -> Any:
    """A stored JSON object or array; StoreDamaged if the row was damaged (never saying the text:
    it may hold anything)."""
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        value = None
    if type(value) is not kind:
        raise StoreDamaged("a stored session cannot be read back: its data is damaged")
    return value


def _open(path: Path, lock_timeout: float = 30.0) -> _Store:
    """Open (creating if needed) and migrate a session database; StoreError if it cannot be used.
    A file that holds another program's data is refused before anything in it is changed."""
    if not path.parent.is_dir():
        raise StoreError(f"cannot open {path}: the folder {path.parent} does not exist")
    try:
        db = _Store(sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                    timeout=min(lock_timeout, LOCK_POLL_MOST)), lock_timeout)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open {path}: {exc}") from None
    try:
        version, tables, columns = db.execute(
            "SELECT (SELECT user_version FROM pragma_user_version), (SELECT COUNT(*) FROM sqlite_master), "
            "(SELECT group_concat(name) FROM pragma_table_info('sessions'))").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path} holds sessions of schema version {version}; this code knows "
                             f"versions up to {SCHEMA_VERSION}: upgrade the code, not the file")
        if (version == 0 and tables) or (version and not _COLUMN_NAMES <= set((columns or "").split(","))):
            raise NotASessionStore(f"{path} is not a session database (it holds other tables): left untouched")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        if version < SCHEMA_VERSION:
            with _Transaction(db):
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("SELECT COUNT(*) FROM sessions").fetchone()
    except StoreError as exc:
        db.close()
        raise type(exc)(str(exc).replace("the session store failed", f"cannot use {path}")) from None
    return db


def _store_error(exc: sqlite3.Error, lock_timeout: float) -> StoreError:
    """The StoreError that names what went wrong, by SQLite's error code; never a value from a row."""
    code = getattr(exc, "sqlite_errorname", "")
    text = str(exc)
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text:
        return StoreLocked(f"the session store is locked by another process: its write lock was held past "
                           f"the {lock_timeout:g} s this store waits (database is locked)")
    if code.startswith("SQLITE_FULL") or "database or disk is full" in text:
        return StoreFull("the session store failed: database or disk is full; nothing of the write was kept")
    if code.startswith("SQLITE_NOTADB") or "not a database" in text:
        return NotASessionStore("the session store failed: it is not a session database (file is not a database)")
    if code.startswith("SQLITE_CORRUPT") or "malformed" in text:
        return StoreDamaged("the session store failed: the database is corrupt (database disk image is malformed)")
    if "Could not decode" in text:
        return StoreDamaged("a stored session cannot be read back: its text is not UTF-8")
    if code.startswith("SQLITE_READONLY") or "readonly" in text:
        return StoreError("the session store failed: the file is read-only (attempt to write a readonly database)")
    return StoreError(f"the session store failed: {text}")
