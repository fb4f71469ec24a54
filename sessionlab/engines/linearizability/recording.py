"""Recording histories of a session manager: every call, its thread, its outcome and its times.

``HistoryRecorder().wrap(manager)`` returns a manager that records every
create_session, get_session, update_session, increment_access and
delete_session call (thread, arguments, outcome, invocation and return times).
It takes no lock around the calls, so it hardly changes the interleavings it
records. ``check()`` asks the linearizability checker about what it recorded.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from sessionlab.api import Session
from sessionlab.engines.linearizability.checker import Verdict, check
from sessionlab.engines.linearizability.history import Operation
from sessionlab.engines.untraced import untraced


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

    def check(self) -> Verdict:
        """Check the history recorded so far."""
        return check(self._operations)


class RecordingManager:
    """A session manager that records the per-session calls it forwards to another one.

    Under deterministic exploration only the manager's own code is traced: the
    recording itself is no shared state to interleave (see ``sessionlab.engines.untraced``).
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


untraced(RecordingManager)
untraced(HistoryRecorder)
