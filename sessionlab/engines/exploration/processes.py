"""Two processes on one SQLite file, interleaved statement by statement.

Processes share nothing but the file, so what can interleave is their SQL
statements. ``explore`` runs one call (the first process's) and, at each
statement it is about to run, the whole of another call on a second connection
to the same file (the second process's), then checks the outcome: one execution
per statement boundary. SQLite runs one write transaction at a time, so at a
boundary where the first call holds the write lock the other process would
wait for its commit: the second call is tried with a short lock wait, and
when it times out there the boundary is counted, not judged. The search is complete
over the interleavings in which the second call runs whole between two
statements of the first, the shape of every lost update between two processes
(both read before either writes).

Both calls run in this thread, on two managers that each open their own
connection: the lab finds each manager's ``sqlite3.Connection`` among its
attributes and follows its statements with ``set_trace_callback``, which SQLite
calls as each statement starts. frontrun's process mode would schedule the same
statements, but it does not model SQLite's database-wide write lock: a process
it schedules into another's ``BEGIN IMMEDIATE`` blocks inside SQLite, and the
search ends in a timeout on correct code as on buggy code.
"""

from __future__ import annotations

import re
import sqlite3
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sessionlab.engines.exploration.search import Inconclusive
from sessionlab.figure import Figure

# How deep the lab looks among a manager's attributes for its connection.
_SEARCH_DEPTH = 3
# How long the second process waits for the write lock while the first holds it: long enough
# for any statement of its own, far too short for the first to commit (it is paused).
WAIT_MS = 100
NORMAL_WAIT_MS = 30_000


@dataclass
class Execution:
    """One execution: the statements each process ran, in order, and what the calls returned."""

    statements: list[tuple[str, str]] = field(default_factory=list)  # (process, sql)
    returned: dict[str, Any] = field(default_factory=dict)
    inserted_at: int | None = None  # the first process's statement the second ran before


@dataclass(frozen=True)
class Outcome:
    figure: Figure  # of the first execution that broke, or of the last one
    explored: int  # executions run
    boundaries: int  # statement boundaries of the first call
    waits: int  # boundaries inside its transaction, where the other process would wait
    seconds: float
    execution: Execution | None = None  # the one that broke

    @property
    def held(self) -> bool:
        return self.figure.held

    def scope(self) -> str:
        runnable = self.boundaries - self.waits
        return (f"every one of the {self.explored} executions: the other process's whole call before each of the "
                f"{runnable} statements of this one where it can run, and after the last (before the other "
                f"{self.waits} it would wait for this one's commit)")


def connection_of(manager: Any) -> sqlite3.Connection:
    """The sqlite3 connection a manager keeps, found among its attributes."""
    seen: set[int] = set()

    def search(obj: Any, depth: int) -> sqlite3.Connection | None:
        if isinstance(obj, sqlite3.Connection):
            return obj
        if depth == 0 or id(obj) in seen or not hasattr(obj, "__dict__"):
            return None
        seen.add(id(obj))
        for value in vars(obj).values():
            found = search(value, depth - 1)
            if found is not None:
                return found
        return None

    found = search(manager, _SEARCH_DEPTH)
    if found is None:
        raise Inconclusive("the manager keeps no sqlite3 connection among its attributes, so the lab cannot "
                           "follow its statements")
    return found


def _call(function: Callable[[Any], Any], manager: Any) -> Any:
    """What the call returned, or the exception it raised (an outcome the check judges)."""
    try:
        return function(manager)
    except Exception as exc:
        return exc


def _run(open_manager: Callable[[], Any], first: Callable[[Any], Any], second: Callable[[Any], Any],
         at: int | None) -> Execution:
    """The first call, with the whole second call run as its statement number `at` starts.

    If the first holds SQLite's write lock there, the second cannot run: its connection waits
    only WAIT_MS for the lock, fails, and the boundary is counted as one where it would wait.
    """
    execution = Execution()
    a, b = open_manager(), open_manager()
    try:
        conn_a, conn_b = connection_of(a), connection_of(b)
        count = 0

        def follow_a(sql: str) -> None:
            nonlocal count
            count += 1
            if count == at and execution.inserted_at is None:
                execution.inserted_at = count
                mark = len(execution.statements)
                conn_b.execute(f"PRAGMA busy_timeout = {WAIT_MS}")
                returned = _call(second, b)
                conn_b.execute(f"PRAGMA busy_timeout = {NORMAL_WAIT_MS}")
                if _waited(returned):
                    execution.inserted_at = -count  # the first holds the write lock: the second would wait
                    del execution.statements[mark:]
                else:
                    execution.returned["second"] = returned
            execution.statements.append(("first", sql))

        conn_a.set_trace_callback(follow_a)
        conn_b.set_trace_callback(lambda sql: sql.startswith("PRAGMA busy_timeout")
                                  or execution.statements.append(("second", sql)))
        execution.returned["first"] = _call(first, a)
        if "second" not in execution.returned:  # after the first call: one after the other
            execution.returned["second"] = _call(second, b)
    finally:
        for manager in (a, b):
            try:
                connection_of(manager).set_trace_callback(None)
            except Exception:
                pass
            manager.close()
    return execution


def _waited(returned: Any) -> bool:
    """Whether a call failed because another connection held the database's write lock."""
    text = f"{returned} {getattr(returned, '__cause__', '') or ''} {getattr(returned, '__context__', '') or ''}"
    return isinstance(returned, Exception) and "locked" in text.lower()


def explore(open_manager: Callable[[], Any], setup: Callable[[], None], first: Callable[[Any], Any],
            second: Callable[[Any], Any], check: Callable[[Execution], Figure]) -> Outcome:
    """Run second whole at each statement boundary of first, on a fresh file each time; check each."""
    started = time.perf_counter()
    setup()
    dry = _run(open_manager, first, second, None)
    boundaries = sum(1 for who, _ in dry.statements if who == "first")
    explored, waits, figure = 1, 0, check(dry)
    if not figure.held:
        return Outcome(figure, explored, boundaries, waits, time.perf_counter() - started, dry)
    for at in range(1, boundaries + 1):
        setup()
        execution = _run(open_manager, first, second, at)
        if execution.inserted_at is None or execution.inserted_at < 0:
            waits += 1
            continue
        explored += 1
        figure = check(execution)
        if not figure.held:
            return Outcome(figure, explored, boundaries, waits, time.perf_counter() - started, execution)
    return Outcome(figure, explored, boundaries, waits, time.perf_counter() - started)


def interleaving(execution: Execution, width: int = 80, hide: dict[str, str] | None = None) -> str:
    """The statements of an execution, one per line (wrapped to width), under the process that ran
    it; each text in hide (a session id: a secret even in a scenario) shown as its replacement."""
    lines = []
    for who, sql in execution.statements:
        text = _COLUMNS.sub(_fewer_columns, " ".join(sql.split()))
        for secret, shown in (hide or {}).items():
            text = text.replace(secret, shown)
        head = f"  {'process 1' if who == 'first' else 'process 2'}  "
        lines += textwrap.wrap(text, max(40, width), initial_indent=head, subsequent_indent=" " * len(head),
                               break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)


_COLUMNS = re.compile(r"^SELECT (.+?) FROM ", re.IGNORECASE)


def _fewer_columns(match: re.Match[str]) -> str:
    """A long column list as the columns that count, the others as an ellipsis."""
    columns = [column.strip() for column in match.group(1).split(",")]
    if len(columns) <= 2:
        return match.group(0)
    kept = [column for column in columns if "count" in column.lower()]
    return f"SELECT {', '.join(kept + ['...']) if kept else '...'} FROM "
