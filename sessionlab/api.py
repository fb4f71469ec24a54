"""The contract every session manager in the lab implements.

Tests and tools speak only to what is defined here: the value types a manager
returns, the errors it raises, the limits on what it accepts, and one
``health_check`` that serves every implementation.

Validation lives here too, so that ``buggy`` and ``fixed`` reject bad input in
exactly the same way: a bad argument raises ``InvalidInput`` before a manager
touches its state, so bad input never changes anything.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, Union, runtime_checkable

__all__ = [
    "LEAK_THRESHOLD",
    "MAX_KEY_LENGTH",
    "MAX_METADATA_KEYS",
    "MAX_NAME_LENGTH",
    "MAX_SESSION_ID_LENGTH",
    "MAX_VALUE_LENGTH",
    "HealthStatus",
    "InvalidInput",
    "MetadataValue",
    "Session",
    "SessionError",
    "SessionExpired",
    "SessionManager",
    "SessionNotFound",
    "Stats",
    "check_key",
    "check_metadata_size",
    "check_name",
    "check_session_id",
    "check_value",
    "health_check",
]

# Limits on what a manager accepts.
MAX_NAME_LENGTH = 128  # user_id and username
MAX_SESSION_ID_LENGTH = 128
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 4096  # characters, for string values
MAX_METADATA_KEYS = 64
_MAX_INT = 2**63 - 1

# health_check flags a leak once this many deleted sessions wait for cleanup.
LEAK_THRESHOLD = 1000

_SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]+")

MetadataValue = Union[str, int, float, bool, None]


# -- Errors -------------------------------------------------------------------


class SessionError(Exception):
    """Base class of every error a session manager raises on purpose."""


class SessionNotFound(SessionError, KeyError):
    """No live session has this id (never created, or already deleted)."""

    def __init__(self, session_id: str):
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        return f"no session with id {self.session_id!r}"


class InvalidInput(SessionError, ValueError):
    """An argument is of the wrong type, malformed or too large."""


class SessionExpired(SessionError):
    """The session existed but its time to live has passed."""


# -- Values a manager returns ----------------------------------------------


@dataclass(frozen=True)
class Session:
    """A snapshot of one session, taken when it was read.

    A snapshot never changes after it is returned: a later write to the
    session, by any thread, is visible only in a later snapshot.
    """

    session_id: str
    user_id: str
    username: str
    is_authenticated: bool
    access_count: int
    metadata: Mapping[str, MetadataValue]
    created_at: float
    last_accessed: float


@dataclass(frozen=True)
class Stats:
    """Counters a manager keeps about itself."""

    total_sessions: int  # sessions ever created
    active_sessions: int  # sessions created and not yet deleted, as counted
    cache_hits: int  # lookups that found their session
    cache_misses: int  # lookups of ids that have no session
    failed_cleanups: int  # cleanup attempts that did not release their session


@dataclass(frozen=True)
class HealthStatus:
    """What ``health_check`` found."""

    active_sessions_reported: int  # what get_stats() says
    active_sessions_actual: int  # what get_active_count() counts
    cleanup_queue_size: int
    memory_leak_detected: bool

    @property
    def discrepancy(self) -> int:
        return self.active_sessions_reported - self.active_sessions_actual

    @property
    def healthy(self) -> bool:
        return self.discrepancy == 0 and not self.memory_leak_detected


# -- The manager -------------------------------------------------------------


@runtime_checkable
class SessionManager(Protocol):
    """A thread-safe store of login sessions.

    Every method may be called from any number of threads at once.
    """

    def create_session(self, user_id: str, username: str) -> str:
        """Log a user in; return the new session's id."""

    def get_session(self, session_id: str) -> Session:
        """Return a snapshot of the session. Raises SessionNotFound."""

    def update_session(self, session_id: str, key: str, value: MetadataValue) -> None:
        """Set one metadata key. Raises SessionNotFound, InvalidInput."""

    def increment_access(self, session_id: str) -> int:
        """Count one access; return the new access count."""

    def delete_session(self, session_id: str) -> None:
        """Log the session out. Raises SessionNotFound if it is not live."""

    def get_stats(self) -> Stats: ...

    def get_active_count(self) -> int:
        """The number of live sessions, counted from the store itself."""

    def get_cleanup_queue_size(self) -> int:
        """How many deleted sessions still wait to be released."""

    def close(self) -> None:
        """Release the sessions waiting for cleanup; later session calls raise SessionError.

        get_stats, get_active_count and get_cleanup_queue_size still answer after
        close, so a closed manager can still be inspected (health_check works).
        Closing twice is harmless.
        """

    def __enter__(self) -> SessionManager: ...

    def __exit__(self, *exc_info: object) -> None: ...


def health_check(manager: SessionManager) -> HealthStatus:
    """Compare what the manager reports with what it holds."""
    queue_size = manager.get_cleanup_queue_size()
    return HealthStatus(
        active_sessions_reported=manager.get_stats().active_sessions,
        active_sessions_actual=manager.get_active_count(),
        cleanup_queue_size=queue_size,
        memory_leak_detected=queue_size > LEAK_THRESHOLD,
    )


# -- Validation ---------------------------------------------------------------


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def check_name(field: str, value: object) -> str:
    """Check a user_id or username: a non-empty string of bounded length."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string, got {_describe(value)}")
    if not value.strip():
        raise InvalidInput(f"{field} must not be empty or blank")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(f"{field} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}")
    return value


def check_session_id(session_id: object) -> str:
    """Check that a session id is well formed (not that it exists)."""
    if not isinstance(session_id, str):
        raise InvalidInput(f"session_id must be a string, got {_describe(session_id)}")
    if not session_id:
        raise InvalidInput("session_id must not be empty")
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        raise InvalidInput(
            f"session_id is {len(session_id)} characters long; the limit is {MAX_SESSION_ID_LENGTH}"
        )
    if not _SESSION_ID_RE.fullmatch(session_id):
        raise InvalidInput(
            f"malformed session_id {session_id!r}: only letters, digits, '-' and '_' are allowed"
        )
    return session_id


def check_key(key: object) -> str:
    """Check a metadata key: a non-empty string of bounded length."""
    if not isinstance(key, str):
        raise InvalidInput(f"metadata key must be a string, got {_describe(key)}")
    if not key:
        raise InvalidInput("metadata key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"metadata key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}")
    return key


def check_value(value: object) -> MetadataValue:
    """Check a metadata value: a JSON scalar of bounded size."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -_MAX_INT <= value <= _MAX_INT:
            raise InvalidInput("metadata integer does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"metadata float must be finite, got {value!r}")
        return value
    if isinstance(value, str):
        if len(value) > MAX_VALUE_LENGTH:
            raise InvalidInput(
                f"metadata value is {len(value)} characters long; the limit is {MAX_VALUE_LENGTH}"
            )
        return value
    raise InvalidInput(
        f"metadata value must be str, int, float, bool or None, got {_describe(value)}"
    )


def check_metadata_size(metadata: Mapping[str, object]) -> None:
    """Check that a session's metadata, as it would be stored, is within limits."""
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidInput(f"a session holds at most {MAX_METADATA_KEYS} metadata keys")
