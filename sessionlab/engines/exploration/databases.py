"""SQLite as shared state of the search: every statement is seen, and a wait for its lock is a step.

frontrun's SQL detection sees the statements run through sqlite3's own cursor.
Two things a store on SQLite commonly does get past it, both measured on
Django's database session engine:

- A connection opened through ``sqlite3.dbapi2.connect`` (Django's) is not
  traced at all: frontrun patches ``sqlite3.connect`` alone.
- A cursor class of the store's own (Django's ``SQLiteCursorWrapper``, passed
  as ``connection.cursor(factory=...)``) is used as it is, untraced: none of the
  store's statements is seen, and two requests' read-modify-write of one row
  looks like no shared state at all.
- A thread the scheduler paused inside a transaction holds SQLite's write lock;
  the other thread's next write waits for it inside SQLite, for the
  connection's busy timeout (5 s by default, 30 s in the persistent store), where
  the scheduler cannot see it: the search hangs, or gives up.

While a search runs, ``seeing_sqlite()`` traces connections opened either way, gives
the store's cursor classes frontrun's tracing too, and opens every connection with no busy timeout: a
write that finds the database locked fails at once inside frontrun's traced
execute, which retries it after a cooperative sleep, so the thread that holds
the lock runs in between. Waiting and retrying is what SQLite's busy handler
does, so what the store sees is the same.
"""

from __future__ import annotations

import sqlite3
from sqlite3 import dbapi2
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

try:
    from frontrun import _sql_cursor
except ImportError:  # no search runs without frontrun (search.frontrun_available says why)
    _sql_cursor = None

# The traced subclass of each of the store's cursor classes, made once.
_traced_cursors: dict[tuple[type, type], type] = {}


def _traced_cursor(factory: type, traced: type) -> type:
    """The store's cursor class over frontrun's traced sqlite3 cursor.

    The store's class runs first (Django's turns %s into ?) and its call of
    sqlite3's execute reaches frontrun's, which sees the statement as sqlite3
    runs it. Traced above the store's class instead, the store's own Python
    code would run inside frontrun's handling of the statement, and the
    scheduler waits on itself (measured: every run of Django's save stalled).
    """
    if (factory, traced) not in _traced_cursors:
        _traced_cursors[factory, traced] = type(f"Seen{factory.__name__}", (factory, traced), {})
    return _traced_cursors[factory, traced]


def _with_store_cursors(make_class: Callable[..., type]) -> Callable[..., type]:
    def connection_class(base_cls: type = sqlite3.Connection) -> type:
        traced = make_class(base_cls)
        plain = traced.cursor
        default = plain.__defaults__[0] if plain.__defaults__ else None

        def cursor(self: Any, factory: type | None = None) -> Any:
            if factory is None or default is None or issubclass(factory, default):
                return plain(self) if factory is None else plain(self, factory)
            return plain(self, _traced_cursor(factory, default))

        traced.cursor = cursor
        return traced

    return connection_class


def _without_busy_wait(connect: Callable[..., Any]) -> Callable[..., Any]:
    def seen(database: Any, timeout: float = 5.0, *args: Any, **kwargs: Any) -> Any:
        return connect(database, 0.0, *args, **kwargs)

    return seen


def _through_sqlite3_connect(*args: Any, **kwargs: Any) -> Any:
    return sqlite3.connect(*args, **kwargs)  # frontrun's, while the search runs


@contextmanager
def seeing_sqlite(enabled: bool = True) -> Iterator[None]:
    """While the block runs, a store's own cursors are traced and no connection waits in SQLite."""
    if not enabled or _sql_cursor is None:
        yield
        return
    make_class = _sql_cursor._make_traced_sqlite3_connection_class
    connect, dbapi2_connect = sqlite3.connect, dbapi2.connect
    _sql_cursor._make_traced_sqlite3_connection_class = _with_store_cursors(make_class)
    sqlite3.connect = _without_busy_wait(connect)
    # frontrun patches sqlite3.connect alone; Django connects through sqlite3.dbapi2.connect.
    dbapi2.connect = _through_sqlite3_connect
    try:
        yield
    finally:
        _sql_cursor._make_traced_sqlite3_connection_class = make_class
        sqlite3.connect, dbapi2.connect = connect, dbapi2_connect
