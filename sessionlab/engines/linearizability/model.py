"""The sequential specification of a session manager: what a correct one does, one call at a time.

A correct manager, however many threads call it, must behave as if its calls
ran one after another in some order; this module says what each call does when
it runs alone. Timestamps (created_at, last_accessed) are not modelled.

Two forms of the same specification:

* ``step(state, operation, args)`` is pure: it takes one session's state
  (``None`` while no live session has that id) and returns the state after the
  call and the call's outcome. The linearizability checker searches with it.
* ``SessionModel`` is a small mutable store with the manager's methods, for
  driving a real manager and the model side by side.

Session ids are chosen by the implementation, so the model's create_session
takes the id the implementation returned. Handing out the id of a session that
is still live is a contract violation, which the model reports by raising
``ContractViolation``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sessionlab.api import (
    InvalidInput,
    MetadataValue,
    SessionError,
    SessionNotFound,
    check_key,
    check_metadata_size,
    check_name,
    check_session_id,
    check_value,
)

__all__ = [
    "OPERATIONS",
    "ContractViolation",
    "Outcome",
    "SessionModel",
    "SessionState",
    "step",
]


class ContractViolation(AssertionError):
    """The implementation did something no correct manager does, whatever the order of calls."""


@dataclass(frozen=True)
class SessionState:
    """What one live session holds, as the contract defines it."""

    user_id: str
    username: str
    is_authenticated: bool = True
    access_count: int = 0
    # (key, value) pairs sorted by key: a tuple, so that states can be compared and hashed.
    metadata: tuple[tuple[str, MetadataValue], ...] = ()

    @classmethod
    def of(cls, session: Any) -> SessionState:
        """The state a Session snapshot shows."""
        return cls(
            user_id=session.user_id,
            username=session.username,
            is_authenticated=session.is_authenticated,
            access_count=session.access_count,
            metadata=_frozen(session.metadata),
        )

    def metadata_dict(self) -> dict[str, MetadataValue]:
        return dict(self.metadata)


@dataclass(frozen=True)
class Outcome:
    """What a call does when it runs alone: a value, or the name of the error it raises."""

    value: Any = None
    error: str | None = None  # class name: "SessionNotFound" or "InvalidInput"


def _frozen(metadata: Mapping[str, MetadataValue]) -> tuple[tuple[str, MetadataValue], ...]:
    return tuple(sorted(metadata.items()))


def _require(state: SessionState | None, session_id: str) -> SessionState:
    if state is None:
        raise SessionNotFound(session_id)
    return state


# -- One function per operation: (state, *args) -> (new state, return value) ---------


def create_session(state: SessionState | None, session_id: str, user_id: str, username: str):
    """Log a user in under the id the implementation returned."""
    check_name("user_id", user_id)
    check_name("username", username)
    try:
        check_session_id(session_id)
    except InvalidInput as error:
        raise ContractViolation(f"create_session returned a malformed id: {error}") from None
    if state is not None:
        raise ContractViolation(
            f"create_session({user_id!r}, {username!r}) returned {session_id!r}, the id of a live "
            f"session (user {state.user_id!r}): two logins share one session"
        )
    return SessionState(user_id, username), session_id


def get_session(state: SessionState | None, session_id: str):
    check_session_id(session_id)
    state = _require(state, session_id)
    return state, state


def update_session(state: SessionState | None, session_id: str, key: str, value: MetadataValue):
    check_session_id(session_id)
    check_key(key)
    check_value(value)
    state = _require(state, session_id)
    metadata = dict(state.metadata)
    metadata[key] = value
    check_metadata_size(metadata)
    return replace(state, metadata=_frozen(metadata)), None


def increment_access(state: SessionState | None, session_id: str):
    check_session_id(session_id)
    state = _require(state, session_id)
    count = state.access_count + 1
    return replace(state, access_count=count), count


def delete_session(state: SessionState | None, session_id: str):
    check_session_id(session_id)
    _require(state, session_id)
    return None, None


OPERATIONS = {
    "create_session": create_session,
    "get_session": get_session,
    "update_session": update_session,
    "increment_access": increment_access,
    "delete_session": delete_session,
}


def step(state: SessionState | None, operation: str, args: tuple) -> tuple[SessionState | None, Outcome]:
    """Run one call on one session's state; return the new state and the call's outcome.

    args are those of SessionModel's method of the same name (create_session
    takes the returned id first). A call that raises leaves the state as it
    was. Raises ContractViolation if no correct manager could have made the call
    succeed (a create that returned a live id).
    """
    try:
        new_state, value = OPERATIONS[operation](state, *args)
    except SessionError as error:
        return state, Outcome(error=type(error).__name__)
    return new_state, Outcome(value)


class SessionModel:
    """A correct session manager, for one thread: the specification as a store."""

    def __init__(self, states: Mapping[str, SessionState | None] | None = None):
        """Start empty, or with the given sessions live (an id mapped to None is not live)."""
        self._sessions: dict[str, SessionState] = {
            session_id: state for session_id, state in (states or {}).items() if state is not None
        }

    @property
    def session_ids(self) -> frozenset[str]:
        """The ids of the live sessions."""
        return frozenset(self._sessions)

    @property
    def states(self) -> dict[str, SessionState]:
        """A copy of every live session's state, by id."""
        return dict(self._sessions)

    def create_session(self, session_id: str, user_id: str, username: str) -> str:
        """Record a login the implementation answered with session_id.

        The names are checked first, as a manager does: bad names raise
        InvalidInput whatever id is passed.
        """
        return self._apply(session_id, create_session, session_id, user_id, username)

    def get_session(self, session_id: str) -> SessionState:
        """The state get_session must show (every field of the snapshot but the timestamps)."""
        return self._apply(session_id, get_session, session_id)

    def update_session(self, session_id: str, key: str, value: MetadataValue) -> None:
        self._apply(session_id, update_session, session_id, key, value)

    def increment_access(self, session_id: str) -> int:
        """Count one access; return the new count."""
        return self._apply(session_id, increment_access, session_id)

    def delete_session(self, session_id: str) -> None:
        self._apply(session_id, delete_session, session_id)

    def get_active_count(self) -> int:
        return len(self._sessions)

    def _apply(self, session_id: object, operation, *args: Any) -> Any:
        key = session_id if isinstance(session_id, str) else None
        new_state, value = operation(self._sessions.get(key), *args)
        if new_state is None:
            self._sessions.pop(key, None)
        else:
            self._sessions[key] = new_state
        return value
