"""Sessions in Django's database session engine on SQLite, used the way a Django view
uses them.

Written against Django 5.2 (``django.contrib.sessions.backends.db``: one row
per session in the ``django_session`` table of a SQLite file). Each call is one
request: it builds a ``SessionStore`` for
the session key, reads the session, changes it, and saves the whole of it
back, which is what ``SessionMiddleware`` does around every view. The
counters of ``get_stats`` are the application's own bookkeeping.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from types import MappingProxyType

import django
from django.conf import settings

_DATABASE = tempfile.TemporaryDirectory(prefix="sessions-")
if not settings.configured:  # the application's settings: sessions in a SQLite database
    settings.configure(
        SECRET_KEY="sessionlab-wild",
        INSTALLED_APPS=["django.contrib.sessions"],
        SESSION_ENGINE="django.contrib.sessions.backends.db",
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": f"{_DATABASE.name}/db.sqlite3"}},
    )
    django.setup()
    from django.core.management import call_command

    call_command("migrate", "sessions", verbosity=0)  # the application's deployment creates the table

from django.contrib.sessions.backends.db import SessionStore  # noqa: E402

from sessionlab.api import (  # noqa: E402
    MetadataValue,
    Session,
    SessionError,
    SessionNotFound,
    Stats,
    check_key,
    check_metadata_size,
    check_name,
    check_session_id,
    check_value,
)

FRAMEWORK = f"Django {django.get_version()}, database session engine on SQLite"


class SessionManager:
    """Sessions in Django's database session engine; each call is one request."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        # Guards the counters below: the application's bookkeeping, not the sessions.
        self._lock = threading.Lock()
        self._total_sessions = 0
        self._active_sessions = 0
        self._cache_hits = 0
        self._cache_misses = 0
        self._closed = False

    def create_session(self, user_id: str, username: str) -> str:
        check_name("user_id", user_id)
        check_name("username", username)
        self._check_open()
        now = self._clock()
        session = SessionStore()
        session.update({"user_id": user_id, "username": username, "access_count": 0, "metadata": {},
                        "created_at": now, "last_accessed": now})
        session.create()
        with self._lock:
            self._total_sessions += 1
            self._active_sessions += 1
        return session.session_key

    def get_session(self, session_id: str) -> Session:
        try:
            session = self._open(session_id)
        except SessionNotFound:
            with self._lock:
                self._cache_misses += 1
            raise
        with self._lock:
            self._cache_hits += 1
        return Session(session_id, session["user_id"], session["username"], True, session["access_count"],
                       MappingProxyType(dict(session["metadata"])), session["created_at"],
                       session["last_accessed"])

    def update_session(self, session_id: str, key: str, value: MetadataValue) -> None:
        check_key(key)
        check_value(value)
        now = self._clock()
        session = self._open(session_id)
        metadata = dict(session["metadata"])
        metadata[key] = value
        check_metadata_size(metadata)
        session["metadata"] = metadata
        session["last_accessed"] = now
        session.save()  # the whole session, as SessionMiddleware saves it after the view

    def increment_access(self, session_id: str) -> int:
        now = self._clock()
        session = self._open(session_id)
        count = session["access_count"] + 1
        session["access_count"] = count
        session["last_accessed"] = now
        session.save()
        return count

    def delete_session(self, session_id: str) -> None:
        session = self._open(session_id)
        session.delete()
        with self._lock:
            self._active_sessions -= 1

    def get_stats(self) -> Stats:
        with self._lock:
            return Stats(self._total_sessions, self._active_sessions, self._cache_hits, self._cache_misses, 0)

    def get_active_count(self) -> int:
        with self._lock:
            return self._active_sessions

    def get_cleanup_queue_size(self) -> int:
        return 0  # a deleted session's row is deleted at once: nothing waits to be released

    def close(self) -> None:
        self._closed = True

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SessionError("the session manager is closed")

    def _open(self, session_id: str) -> SessionStore:
        """The start of a request: the session for this key, loaded, or SessionNotFound."""
        check_session_id(session_id)
        self._check_open()
        session = SessionStore(session_key=session_id)
        if "user_id" not in session:  # the first read loads the session, as a view's first access does
            raise SessionNotFound(session_id)
        return session
