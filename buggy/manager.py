"""An in-memory store of login sessions, shared by all the threads of a server."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType

from sessionlab.api import (
    MetadataValue,
    Session,
    SessionError,
    SessionNotFound,
    Stats,
    check_key,
    check_metadata_size,
    check_name,
    check_session_id,
    check_value,
    session_tag,
)

log = logging.getLogger(__name__)


@dataclass
class _Record:
    """One session as the manager stores it."""

    session_id: str
    user_id: str
    username: str
    created_at: float
    last_accessed: float
    is_authenticated: bool = True
    access_count: int = 0
    metadata: dict[str, MetadataValue] = field(default_factory=dict)

    def snapshot(self) -> Session:
        """Return a Session holding this record's current values."""
        return Session(
            session_id=self.session_id,
            user_id=self.user_id,
            username=self.username,
            is_authenticated=self.is_authenticated,
            access_count=self.access_count,
            metadata=MappingProxyType(self.metadata),
            created_at=self.created_at,
            last_accessed=self.last_accessed,
        )


class SessionManager:
    """Creates, reads, updates and deletes sessions for any number of threads."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        # Guards everything below: the store, the cleanup queue and the counters.
        self._lock = threading.Lock()
        self._sessions: dict[str, _Record] = {}
        self._cleanup_queue: deque[_Record] = deque()
        self._closed = False
        self._total_sessions = 0
        self._active_sessions = 0
        self._cache_hits = 0
        self._cache_misses = 0
        self._failed_cleanups = 0
        self._next_id = 1

    def create_session(self, user_id: str, username: str) -> str:
        check_name("user_id", user_id)
        check_name("username", username)
        now = self._clock()
        session_id = self._new_session_id()
        record = _Record(session_id, user_id, username, created_at=now, last_accessed=now)
        with self._lock:
            self._check_open()
            self._sessions[session_id] = record
            self._total_sessions += 1
            self._active_sessions += 1
        log.info("login: session %s for user %r", session_tag(session_id), user_id)
        return session_id

    def get_session(self, session_id: str) -> Session:
        check_session_id(session_id)
        with self._lock:
            self._check_open()
            record = self._sessions.get(session_id)
            if record is None:
                self._cache_misses += 1
                raise SessionNotFound(session_id)
            self._cache_hits += 1
            return record.snapshot()

    def update_session(self, session_id: str, key: str, value: MetadataValue) -> None:
        check_session_id(session_id)
        check_key(key)
        check_value(value)
        with self._lock:
            record = self._require(session_id)
            metadata = dict(record.metadata)
        metadata[key] = value
        check_metadata_size(metadata)
        now = self._clock()
        with self._lock:
            record.metadata = metadata
            record.last_accessed = now

    def increment_access(self, session_id: str) -> int:
        check_session_id(session_id)
        with self._lock:
            record = self._require(session_id)
        count = record.access_count + 1
        record.last_accessed = self._clock()
        record.access_count = count
        return count

    def delete_session(self, session_id: str) -> None:
        check_session_id(session_id)
        with self._lock:
            record = self._require(session_id)
        log.info("logout: session %s for user %r", session_tag(session_id), record.user_id)
        with self._lock:
            self._sessions.pop(session_id, None)
            self._cleanup_queue.append(record)
            self._run_cleanup()
        self._active_sessions -= 1

    def get_stats(self) -> Stats:
        with self._lock:
            return Stats(
                total_sessions=self._total_sessions,
                active_sessions=self._active_sessions,
                cache_hits=self._cache_hits,
                cache_misses=self._cache_misses,
                failed_cleanups=self._failed_cleanups,
            )

    def get_active_count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def get_cleanup_queue_size(self) -> int:
        with self._lock:
            return len(self._cleanup_queue)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._run_cleanup()

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _new_session_id(self) -> str:
        number = self._next_id
        session_id = "sess-{:06d}".format(number)
        self._next_id = number + 1
        return session_id

    def _check_open(self) -> None:
        """Raise SessionError once the manager is closed. Call with the lock held."""
        if self._closed:
            raise SessionError("the session manager is closed")

    def _require(self, session_id: str) -> _Record:
        """Return the live record for session_id. Call with the lock held."""
        self._check_open()
        try:
            return self._sessions[session_id]
        except KeyError:
            raise SessionNotFound(session_id) from None

    def _run_cleanup(self) -> None:
        """Release every deleted session in the cleanup queue. Call with the lock held."""
        for _ in range(len(self._cleanup_queue)):
            record = self._cleanup_queue.popleft()
            if not self._release(record):
                # Nothing was released: keep it queued and try again next time.
                self._failed_cleanups += 1
                self._cleanup_queue.append(record)

    def _release(self, record: _Record) -> int:
        """Drop the data a deleted session holds; return how many entries were freed.

        Call with the lock held.
        """
        freed = len(record.metadata)
        record.metadata.clear()
        record.is_authenticated = False
        return freed
