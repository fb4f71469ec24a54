"""The sequential specification of the persistent manager: lifecycle, expiry, progress, files.

What a correct PersistentSessionManager does, one call at a time, on the whole
store (a sweep touches every session, so the state is not split by session).
The clock stands still while the calls run: every write sets the last update
to ``now``, and a sweep expires the pending and in-progress sessions whose last
update is older than ``now - ttl``. A deleted session stays in the store until
the next sweep purges it; total_sessions counts every session ever created.

``apply(store, call)`` is pure: it returns the store after the call and the
call's outcome, a value or the name of the error the contract raises.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

EXPIRING = ("pending", "in_progress")
NEXT = {"pending": ("in_progress", "failed"), "in_progress": ("completed", "failed"),
        "completed": (), "failed": (), "expired": ()}


@dataclass(frozen=True)
class Record:
    """One session as the store holds it."""

    user_id: str
    username: str
    status: str = "pending"
    access_count: int = 0
    metadata: tuple[tuple[str, Any], ...] = ()
    last_update: float = 0.0
    deleted: bool = False
    processed: int = 0
    current_file: str | None = None
    failed_files: tuple[str, ...] = ()
    files: tuple[str | None, str | None] = (None, None)

    def view(self) -> dict[str, Any]:
        """What get_session shows of it (the fields the pairs compare)."""
        return {"user_id": self.user_id, "username": self.username, "access_count": self.access_count,
                "metadata": dict(self.metadata), "is_authenticated": True}


Store = tuple[tuple[str, Record], ...]  # (session id, record), in the order they were created


@dataclass(frozen=True)
class Call:
    """A call as the pairs make it: the operation, its session, and its arguments."""

    operation: str  # create, get, update, increment, delete, stats, status, progress, files, sweep
    session_id: str = ""
    args: tuple = ()


@dataclass(frozen=True)
class Expected:
    value: Any = None
    error: str = ""  # SessionNotFound, SessionExpired, IllegalTransition


def _records(store: Store) -> dict[str, Record]:
    return dict(store)


def _live(records: dict[str, Record], session_id: str) -> Record | Expected:
    record = records.get(session_id)
    if record is None or record.deleted:
        return Expected(error="SessionNotFound")
    return record


def _writable(records: dict[str, Record], session_id: str) -> Record | Expected:
    record = _live(records, session_id)
    if isinstance(record, Record) and record.status == "expired":
        return Expected(error="SessionExpired")
    return record


def stats(store: Store) -> tuple[int, int]:
    """(total_sessions, active_sessions) as the store counts them."""
    records = _records(store)
    active = sum(1 for r in records.values() if not r.deleted and r.status != "expired")
    return len(records), active


def apply(store: Store, call: Call, now: float, ttl: float) -> tuple[Store, Expected]:
    """Run one call on the store; return the new store and what the call gives."""
    records = _records(store)
    op, sid = call.operation, call.session_id
    if op == "create":
        new_id, user_id, username = call.args
        records[new_id] = Record(user_id, username, last_update=now)
        return tuple(records.items()), Expected(new_id)
    if op == "stats":
        total, active = stats(store)
        return store, Expected((total, active, active))
    if op == "sweep":
        expired = [key for key, r in records.items()
                   if not r.deleted and r.status in EXPIRING and r.last_update < now - ttl]
        for key in expired:
            records[key] = replace(records[key], status="expired")
        # The deleted records are purged from the store, and still counted in total_sessions: a
        # deleted record answers as one purged does.
        return tuple(records.items()), Expected(len(expired))
    if op == "get":
        record = _writable(records, sid)
        return store, record if isinstance(record, Expected) else Expected(record.view())
    if op == "delete":
        record = _live(records, sid)
        if isinstance(record, Expected):
            return store, record
        records[sid] = replace(record, deleted=True)
        return tuple(records.items()), Expected(None)
    if op == "status":
        record = _live(records, sid)
        if isinstance(record, Expected):
            return store, record
        (status,) = call.args
        if status not in NEXT[record.status]:
            return store, Expected(error="IllegalTransition")
        records[sid] = replace(record, status=status, last_update=now)
        return tuple(records.items()), Expected(None)
    record = _writable(records, sid)
    if isinstance(record, Expected):
        return store, record
    value: Any = None
    if op == "update":
        key, item = call.args
        record = replace(record, metadata=tuple(sorted({**dict(record.metadata), key: item}.items())))
    elif op == "increment":
        record = replace(record, access_count=record.access_count + 1)
        value = record.access_count
    elif op == "progress":
        processed, current = call.args
        record = replace(record, processed=record.processed + processed,
                         current_file=current if current is not None else record.current_file)
    elif op == "files":
        record = replace(record, files=tuple(call.args))
    else:
        raise ValueError(f"no operation {op!r}")
    records[sid] = replace(record, last_update=now)
    return tuple(records.items()), Expected(value)


def status_of(store: Store, session_id: str) -> str:
    """What get_status answers: the status, or the name of the error."""
    record = _records(store).get(session_id)
    return "SessionNotFound" if record is None or record.deleted else record.status


def progress_of(store: Store, session_id: str) -> Any:
    record = _records(store).get(session_id)
    if record is None or record.deleted:
        return "SessionNotFound"
    return (record.processed, record.current_file, record.failed_files)


def files_of(store: Store, session_id: str) -> Any:
    record = _records(store).get(session_id)
    return "SessionNotFound" if record is None or record.deleted else record.files
