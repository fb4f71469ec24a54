"""What crosses the boundary between the lab and its worker processes, and how statements read.

A call's result comes back from a worker process as plain data: a Session
as a dict of what it shows, an exception as ``Raised`` (its class, its message,
and where in the implementation's files it was raised). ``interleaving`` lays
out the statements of an execution under the process that ran each.
"""

from __future__ import annotations

import re
import sqlite3
import textwrap
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sessionlab.api import SessionError
from sessionlab.engines.exploration.search import Inconclusive
from sessionlab.implementations import CodeError

# How deep the lab looks among a manager's attributes for its connection.
_SEARCH_DEPTH = 3
_MISSING = object()


@dataclass(frozen=True)
class Raised:
    """An exception a worker's call raised: its class name, message, and where."""

    kind: str
    message: str
    contract: bool  # a SessionError: an answer the contract defines
    kinds: tuple[str, ...] = ()  # the names of its classes, most specific first
    file: str = ""
    line: int = 0
    function: str = ""
    source: str = ""

    @classmethod
    def of(cls, exc: BaseException, files: frozenset[str] = frozenset()) -> Raised:
        where = CodeError.of(exc, files) if files else CodeError(str(exc))
        if files and not where.file:
            where = CodeError.of(exc)
        kinds = tuple(klass.__name__ for klass in type(exc).__mro__ if klass not in (object, BaseException))
        return cls(type(exc).__name__, str(exc), isinstance(exc, SessionError), kinds, where.file, where.line,
                   where.function, where.source)

    def is_a(self, name: str) -> bool:
        return name in self.kinds

    def as_error(self) -> CodeError:
        return CodeError(f"{self.kind}: {self.message}".rstrip(": "), self.file, self.line, self.function,
                         self.source)

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}" if self.message else self.kind


def encode(value: Any) -> Any:
    """A call's result as plain data a pipe can carry."""
    if hasattr(value, "session_id") and hasattr(value, "metadata"):
        return {"user_id": value.user_id, "username": value.username, "access_count": value.access_count,
                "metadata": dict(value.metadata), "is_authenticated": value.is_authenticated}
    if isinstance(value, MappingProxyType):
        return dict(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple: Stats, Progress
        return tuple(encode(item) for item in value)
    if isinstance(value, (tuple, list)):
        return type(value)(encode(item) for item in value)
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, BaseException):
        return Raised.of(value)
    return value


def connection_of(manager: Any, default: Any = _MISSING) -> sqlite3.Connection:
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
        if default is not _MISSING:
            return default
        raise Inconclusive("the manager keeps no sqlite3 connection among its attributes, so the lab cannot "
                           "follow its statements")
    return found


def interleaving(statements: list[tuple[int, str]], width: int = 80, hide: dict[str, str] | None = None,
                 names: tuple[str, ...] = ()) -> str:
    """The statements, one per line (wrapped to width), under the process that ran each; each text
    in hide (a session id: a secret even in a scenario) shown as its replacement."""
    lines = []
    for who, sql in statements:
        text = _COLUMNS.sub(_fewer_columns, " ".join(sql.split()))
        for secret, shown in (hide or {}).items():
            text = text.replace(secret, shown)
        name = names[who] if who < len(names) else f"process {who + 1}"
        head = f"  {name}  "
        lines += textwrap.wrap(text, max(40, width), initial_indent=head,
                               subsequent_indent=" " * len(head), break_long_words=False, break_on_hyphens=False)
    return "\n".join(lines)


_COLUMNS = re.compile(r"^SELECT (.+?) FROM ", re.IGNORECASE)


def _fewer_columns(match: re.Match[str]) -> str:
    """A long column list as the columns that count, the others as an ellipsis."""
    columns = [column.strip() for column in match.group(1).split(",")]
    if len(columns) <= 2:
        return match.group(0)
    kept = [column for column in columns if "count" in column.lower()]
    return f"SELECT {', '.join(kept + ['...']) if kept else '...'} FROM "
