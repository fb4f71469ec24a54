"""A history of a session manager: every call, its thread, its outcome and its times.

An ``Operation`` is one call as a thread saw it; ``recording`` makes them, and
``checker`` decides whether a list of them is linearizable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessionlab.engines.linearizability.model import SessionState

RECORDED_OPERATIONS = (
    "create_session",
    "get_session",
    "update_session",
    "increment_access",
    "delete_session",
)

# Errors the contract defines for these calls: a call that raised one of them is complete.
CONTRACT_ERRORS = frozenset({"SessionNotFound", "InvalidInput"})



@dataclass(frozen=True, slots=True)
class Operation:
    """One call as a thread saw it: what it asked, what it got, and when."""

    thread: str
    name: str  # one of RECORDED_OPERATIONS
    args: tuple
    result: Any = None  # the return value (a get_session Session is copied when it returns)
    error: str | None = None  # the class name of the exception raised, if one was
    invoked_ns: int = 0  # time.perf_counter_ns() before the call
    returned_ns: int = 0  # time.perf_counter_ns() after it returned or raised

    @property
    def pending(self) -> bool:
        """True if the call raised an error the contract does not define: its effect is unknown."""
        return self.error is not None and self.error not in CONTRACT_ERRORS

    @property
    def session_id(self) -> Any:
        """The session this call belongs to: the id a create returned, else the id it was given."""
        if self.name == "create_session":
            return self.result
        return self.args[0] if self.args else None

    def call(self) -> str:
        """The call as source text: update_session('s1', 'theme', 'dark')."""
        return f"{self.name}({', '.join(map(repr, self.args))})"

    def outcome(self) -> str:
        """What the call returned or raised, in words."""
        if self.error is not None:
            return f"raised {self.error}"
        if self.name == "get_session":
            return f"returned {_describe_session(self.result)}"
        if self.result is None:
            return "succeeded"
        return f"returned {self.result!r}"


def _describe_state(state: SessionState | None, session_id: Any) -> str:
    if state is None:
        return "no live session" if session_id is None else f"no live session {session_id!r}"
    name = f"user {state.user_id!r} ({state.username!r})"
    if not state.is_authenticated:
        name += ", not authenticated"
    return f"{name}, access_count {state.access_count}, metadata {state.metadata_dict()!r}"


def _describe_session(session: Any) -> str:
    try:
        return f"a session holding {_describe_state(SessionState.of(session), None)}"
    except (AttributeError, TypeError):
        return repr(session)


