"""What a user might reach for instead of a session manager: the baselines of ``sessionlab bench``.

Both keep the lab's contract for the calls the benchmark makes (create, get,
update, increment, delete) and both are correct: one lock guards everything.
Neither validates its input or keeps stats; they are the floor of what a
correct store costs.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from sessionlab.api import Session, SessionNotFound


class DictWithOneLock:
    """Sessions in a dict of dicts, one lock around every call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards self._store and everything in it
        self._store: dict[str, dict[str, Any]] = {}

    def create_session(self, user_id: str, username: str) -> str:
        session_id = secrets.token_urlsafe(24)
        now = time.time()
        with self._lock:
            self._store[session_id] = {"user_id": user_id, "username": username, "count": 0, "metadata": {},
                                       "created": now, "accessed": now}
        return session_id

    def _require(self, session_id: str) -> dict[str, Any]:
        try:
            return self._store[session_id]
        except KeyError:
            raise SessionNotFound(session_id) from None

    def get_session(self, session_id: str) -> Session:
        with self._lock:
            record = self._require(session_id)
            return Session(session_id, record["user_id"], record["username"], True, record["count"],
                           MappingProxyType(dict(record["metadata"])), record["created"], record["accessed"])

    def update_session(self, session_id: str, key: str, value: Any) -> None:
        now = time.time()
        with self._lock:
            record = self._require(session_id)
            record["metadata"][key] = value
            record["accessed"] = now

    def increment_access(self, session_id: str) -> int:
        now = time.time()
        with self._lock:
            record = self._require(session_id)
            record["count"] += 1
            record["accessed"] = now
            return record["count"]

    def delete_session(self, session_id: str) -> None:
        with self._lock:
            self._require(session_id)
            del self._store[session_id]

    def close(self) -> None:
        pass


class TTLCacheWithOneLock(DictWithOneLock):
    """The same, on cachetools.TTLCache (sessions expire after 30 minutes), one lock around it."""

    def __init__(self) -> None:
        super().__init__()
        import cachetools

        self._store = cachetools.TTLCache(maxsize=1_000_000, ttl=1800)  # guarded by self._lock


def available() -> list[tuple[str, Callable[[], Any]]]:
    """(name, factory) of the baselines this machine can run."""
    found: list[tuple[str, Callable[[], Any]]] = [("dict + lock", DictWithOneLock)]
    try:
        import cachetools  # noqa: F401  (only whether it is there)
    except ImportError:
        return found
    return found + [("TTLCache + lock", TTLCacheWithOneLock)]
