"""The contract every session manager in the lab implements.

Tests and tools speak only to what is defined here: the value types a manager
returns, the errors it raises, the limits on what it accepts, and one
``health_check`` that serves every implementation.

Validation lives here too, so that ``buggy`` and ``fixed`` reject bad input in
exactly the same way: a bad argument raises ``InvalidInput`` before a manager
touches its state, so bad input never changes anything.

Validation trusts nothing about a value but its exact type: it checks
``type(value)``, never ``isinstance`` (which a ``__class__`` property fools), and
refuses subclasses of str, int and float, whose ``__eq__``, ``__hash__``,
``__len__`` or ``__str__`` could say one thing to the check and another to the
store later. It never calls a value's own ``__repr__``: an error describes a
rejected value by its type and, for plain built-in scalars, a bounded preview.
Refusing rather than converting keeps every manager safe that calls the checks,
whether or not it uses what they return (a learner's rewrite often does not).
"""

from __future__ import annotations

import hashlib
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
    "IllegalTransition",
    "InvalidInput",
    "MetadataValue",
    "Progress",
    "Session",
    "SessionError",
    "SessionExpired",
    "SessionManager",
    "SessionNotFound",
    "Stats",
    "StoreDamaged",
    "StoreError",
    "StoreFull",
    "StoreLocked",
    "NotASessionStore",
    "check_key",
    "check_metadata_size",
    "check_name",
    "check_session_id",
    "check_value",
    "health_check",
    "session_tag",
]

# Limits on what a manager accepts.
MAX_NAME_LENGTH = 128  # user_id and username
MAX_SESSION_ID_LENGTH = 128
MAX_KEY_LENGTH = 64
MAX_VALUE_LENGTH = 4096  # characters, for string values
MAX_METADATA_KEYS = 64
_MAX_INT = 2**63 - 1

LEAK_THRESHOLD = 1000  # health_check flags a leak once this many deleted sessions wait for cleanup

_SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]+")

# Refused in user ids, user names and metadata keys: C0 and C1 controls (Unicode category
# Cc: a newline or an escape would forge or hide log lines), the line and paragraph
# separators U+2028/U+2029, the bidirectional embeddings, overrides and isolates (which
# reorder what a log reader sees) and lone surrogates (which UTF-8 cannot encode: a log
# handler or a database would fail on them).
_UNPRINTABLE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
# A name made of these alone shows nothing: white space, format characters (zero-width, bidi, tags), fillers.
_INVISIBLE_RE = re.compile("[\\s\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                           "\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e0fff]*")

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


class IllegalTransition(SessionError, ValueError):
    """A status change the session lifecycle does not allow (completed back to pending...)."""


class StoreError(SessionError):
    """The session store cannot be used: not a database, corrupt, read-only, missing, too new."""


class StoreLocked(StoreError):
    """Another process held the store's write lock for longer than the manager waits."""


class StoreFull(StoreError):
    """The disk, or the store's size limit, is full: nothing of the failed write was kept."""


class StoreDamaged(StoreError):
    """Stored data cannot be read back (a damaged page or row); nothing was changed."""


class NotASessionStore(StoreError):
    """The file is not a session store of this lab (another program's data): it is left untouched."""


# -- Values a manager returns ----------------------------------------------


@dataclass(frozen=True)
class Session:
    """A snapshot of one session, taken when it was read.

    A snapshot never changes after it is returned: a later write to the
    session, by any thread, is visible only in a later snapshot.

    Snapshots compare equal when every field does, and hash consistently with
    that (metadata by its items), so they can be kept in sets and dict keys. A
    snapshot whose metadata is a live view of a manager's store (the
    shared-snapshot bug) breaks that promise too: its hash changes with the store.
    """

    session_id: str
    user_id: str
    username: str
    is_authenticated: bool
    access_count: int
    metadata: Mapping[str, MetadataValue]
    created_at: float
    last_accessed: float

    def __hash__(self) -> int:
        # The generated hash would fail: a mapping (MappingProxyType) is not hashable.
        return hash((self.session_id, self.user_id, self.username, self.is_authenticated, self.access_count,
                     frozenset(self.metadata.items()), self.created_at, self.last_accessed))


@dataclass(frozen=True)
class Progress:
    """How far a session's work has come (persistent track)."""

    total: int  # files to process, once known
    processed: int
    current_file: str | None
    failed_files: tuple[str, ...]


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
    problems: tuple[str, ...] = ()  # what the manager says stops its background work (a failing sweeper)

    @property
    def discrepancy(self) -> int:
        return self.active_sessions_reported - self.active_sessions_actual

    @property
    def healthy(self) -> bool:
        return self.discrepancy == 0 and not self.memory_leak_detected and not self.problems


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
    """Compare what the manager reports with what it holds. A manager with background work may say
    what stops it: ``health_problems()``, a tuple of plain sentences that name no session id."""
    queue_size = manager.get_cleanup_queue_size()
    problems = getattr(manager, "health_problems", None)
    return HealthStatus(
        active_sessions_reported=manager.get_stats().active_sessions,
        active_sessions_actual=manager.get_active_count(),
        cleanup_queue_size=queue_size,
        memory_leak_detected=queue_size > LEAK_THRESHOLD,
        problems=tuple(str(problem) for problem in problems()) if callable(problems) else (),
    )


def session_tag(session_id: str) -> str:
    """A short tag that names a session in logs without giving its id away (a session id is a secret).

    The first 8 hex digits of the id's SHA-256: log lines of one session can be followed, but the tag
    cannot be turned back into an id with as much entropy as fixed's (buggy's counter can be guessed anyway).
    """
    if type(session_id) is not str:
        return "(not a session id)"
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()[:8]


# -- Validation ---------------------------------------------------------------

_PREVIEW = 40  # an error message shows at most this many characters of a rejected value
_TYPE_NAME = type.__dict__["__name__"].__get__  # type's own getter: a metaclass cannot override it
_SIZED = (list, tuple, dict, set, frozenset, bytearray)


def _type_name(cls: type) -> str:
    name = str.__str__(_TYPE_NAME(cls))
    if len(name) > _PREVIEW:
        name = name[: _PREVIEW - 3] + "..."
    return name if name.isidentifier() else ascii(name)


def _describe(value: object) -> str:
    """Name a rejected value in bounded time and memory, never calling its own methods.

    Plain built-in scalars get a preview of at most _PREVIEW characters (cut before
    repr, so a huge value costs nothing); anything else only its type, and its
    size for built-in containers. A subclass of a scalar type says so.
    """
    cls = type(value)
    if cls is str or cls is bytes:
        text = repr(value[:_PREVIEW]) + ("..." if len(value) > _PREVIEW else "")
        return f"{cls.__name__} of length {len(value)} {text}" if len(value) > _PREVIEW else f"{cls.__name__} {text}"
    if cls is int:
        return f"int {value!r}" if value.bit_length() <= 128 else f"int of {value.bit_length()} bits"
    if cls is float or cls is bool or value is None:
        return f"{cls.__name__} {value!r}"
    if any(cls is sized for sized in _SIZED):  # not `in`: that calls a metaclass's __eq__
        count = len(value)
        return f"{cls.__name__} of {count} item{'' if count == 1 else 's'}"
    for base in (str, int, float, bytes):
        if issubclass(cls, base):
            return f"{_type_name(cls)} (a {base.__name__} subclass)"
    return _type_name(cls)


def _plain_str(field: str, value: object) -> str:
    """Return value if it is exactly a str; refuse anything else, subclasses included."""
    if type(value) is str:
        return value
    if issubclass(type(value), str):
        raise InvalidInput(f"{field} must be a plain str, not a subclass: got {_describe(value)}")
    raise InvalidInput(f"{field} must be a string, got {_describe(value)}")


def _printable(field: str, value: str) -> None:
    """Refuse the characters of _UNPRINTABLE_RE in a plain str of bounded length."""
    found = _UNPRINTABLE_RE.search(value)
    if found is not None:
        raise InvalidInput(f"{field} must not contain control characters: found {ascii(found.group())} "
                           f"at position {found.start()}")


def check_name(field: str, value: object) -> str:
    """Check a user_id or username: a non-empty printable string of bounded length."""
    value = _plain_str(field, value)
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidInput(f"{field} is {len(value)} characters long; the limit is {MAX_NAME_LENGTH}")
    if _INVISIBLE_RE.fullmatch(value):
        raise InvalidInput(f"{field} must not be empty or blank (white space or invisible characters only)")
    _printable(field, value)
    return value


def check_session_id(session_id: object) -> str:
    """Check that a session id is well formed (not that it exists)."""
    session_id = _plain_str("session_id", session_id)
    if not session_id:
        raise InvalidInput("session_id must not be empty")
    if len(session_id) > MAX_SESSION_ID_LENGTH:
        raise InvalidInput(f"session_id is {len(session_id)} characters long; the limit is {MAX_SESSION_ID_LENGTH}")
    if not _SESSION_ID_RE.fullmatch(session_id):
        raise InvalidInput(f"malformed session_id {session_id!r}: only letters, digits, '-' and '_' are allowed")
    return session_id


def check_key(key: object) -> str:
    """Check a metadata key: a non-empty printable string of bounded length."""
    key = _plain_str("metadata key", key)
    if not key:
        raise InvalidInput("metadata key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(f"metadata key is {len(key)} characters long; the limit is {MAX_KEY_LENGTH}")
    _printable("metadata key", key)
    return key


def check_value(value: object) -> MetadataValue:
    """Check a metadata value: a JSON scalar of bounded size (exactly str, int, float, bool or None).
    Strings may hold any text UTF-8 can encode (newlines included), not lone surrogates."""
    cls = type(value)
    if value is None or cls is bool:
        return value
    if cls is int:
        if not -_MAX_INT <= value <= _MAX_INT:
            raise InvalidInput("metadata integer does not fit in 64 bits")
        return value
    if cls is float:
        if not math.isfinite(value):
            raise InvalidInput(f"metadata float must be finite, got {value!r}")
        return value
    if cls is str:
        if len(value) > MAX_VALUE_LENGTH:
            raise InvalidInput(f"metadata value is {len(value)} characters long; the limit is {MAX_VALUE_LENGTH}")
        found = _SURROGATE_RE.search(value)
        if found is not None:
            raise InvalidInput(f"metadata value holds a lone surrogate at position {found.start()}: "
                               f"it is not text UTF-8 can encode")
        return value
    if issubclass(cls, (str, int, float)):
        raise InvalidInput(f"metadata value must be a plain str, int, float, bool or None, not a subclass: "
                           f"got {_describe(value)}")
    raise InvalidInput(f"metadata value must be str, int, float, bool or None, got {_describe(value)}")


def check_metadata_size(metadata: Mapping[str, object]) -> None:
    """Check that a session's metadata, as it would be stored, is within limits."""
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidInput(f"a session holds at most {MAX_METADATA_KEYS} metadata keys")
