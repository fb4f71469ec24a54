"""Recording histories of a session manager: every call, its thread, its outcome and its times.

``HistoryRecorder().wrap(manager)`` returns a manager that records every
create_session, get_session, update_session, increment_access and
delete_session call (thread, arguments, outcome, invocation and return times).
It takes no lock around the calls, so it hardly changes the interleavings it
records. ``sessionlab.linearizability`` checks what it recorded.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from sessionlab.api import Session
from sessionlab.model import SessionState
from sessionlab.untraced import untraced

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


class HistoryRecorder:
    """Collects the calls made through the managers it wraps, from any number of threads."""

    def __init__(self) -> None:
        # list.append is atomic, so recording threads need no lock of their own.
        self._operations: list[Operation] = []

    def wrap(self, manager: Any) -> RecordingManager:
        """Return a manager that forwards every call to manager and records the per-session ones."""
        return RecordingManager(manager, self)

    def record(self, operation: Operation) -> None:
        self._operations.append(operation)

    @property
    def operations(self) -> list[Operation]:
        """The recorded calls, in the order they were invoked."""
        return sorted(self._operations, key=lambda op: (op.invoked_ns, op.returned_ns))

    def __len__(self) -> int:
        return len(self._operations)

    def clear(self) -> None:
        self._operations.clear()

    def check(self) -> Any:
        """Check the history recorded so far."""
        from sessionlab.linearizability import check

        return check(self._operations)


class RecordingManager:
    """A session manager that records the per-session calls it forwards to another one.

    Under deterministic exploration only the manager's own code is traced: the
    recording itself is no shared state to interleave (see ``sessionlab.untraced``).
    """

    def __init__(self, manager: Any, recorder: HistoryRecorder):
        self.manager = manager
        self._record = recorder.record

    def create_session(self, user_id: str, username: str) -> str:
        return self._call("create_session", (user_id, username))

    def get_session(self, session_id: str) -> Session:
        return self._call("get_session", (session_id,))

    def update_session(self, session_id: str, key: str, value: Any) -> None:
        return self._call("update_session", (session_id, key, value))

    def increment_access(self, session_id: str) -> int:
        return self._call("increment_access", (session_id,))

    def delete_session(self, session_id: str) -> None:
        return self._call("delete_session", (session_id,))

    def __getattr__(self, name: str) -> Any:
        # get_stats, get_active_count, close, ...: forwarded, not recorded.
        return getattr(self.manager, name)

    def __enter__(self) -> RecordingManager:
        self.manager.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> Any:
        return self.manager.__exit__(*exc_info)

    def _call(self, name: str, args: tuple) -> Any:
        method = getattr(self.manager, name)
        thread = threading.current_thread().name
        invoked = time.perf_counter_ns()
        try:
            result = method(*args)
        except BaseException as error:
            returned = time.perf_counter_ns()
            self._record(Operation(thread, name, args, None, type(error).__name__, invoked, returned))
            raise
        seen = result
        if isinstance(result, Session):
            # What the caller saw on return; a snapshot that shares live data may change later.
            seen = replace(result, metadata=MappingProxyType(dict(result.metadata)))
        returned = time.perf_counter_ns()
        self._record(Operation(thread, name, args, seen, None, invoked, returned))
        return result


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


untraced(RecordingManager)
untraced(HistoryRecorder)
