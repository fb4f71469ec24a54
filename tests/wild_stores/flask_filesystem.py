"""Sessions in Flask-Session's server-side store, used the way a Flask view uses them.

Written against Flask 3.1, Flask-Session 0.8 (``SESSION_TYPE = "cachelib"``)
and cachelib 0.17 (``FileSystemCache``: one file per session in a folder). Each call is one request, run
as Flask runs one around a view: the app's session interface opens the
session from the request's cookie, the view changes it, and the interface
saves the whole session back into the response. Each manager is one
application with its own store. The counters of ``get_stats`` are the
application's own bookkeeping.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from types import MappingProxyType

from cachelib import FileSystemCache
from flask import Flask
from flask_session import Session as FlaskSession
from flask_session.base import ServerSideSession

from sessionlab.api import (
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

FRAMEWORK = f"Flask {version('flask')}, Flask-Session {version('flask-session')} on cachelib's FileSystemCache"
COOKIE = "session"


def _new_app(folder: str) -> Flask:
    """The application: server-side sessions in files, in a cachelib store on this folder."""
    app = Flask(__name__)
    app.config.update(
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=FileSystemCache(folder, threshold=0, default_timeout=0),
        SESSION_PERMANENT=False,
        SESSION_COOKIE_NAME=COOKIE,
    )
    FlaskSession(app)
    return app


class SessionManager:
    """Sessions in Flask-Session's cachelib store; each call is one request."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._folder = tempfile.TemporaryDirectory(prefix="sessions-")
        self._app = _new_app(self._folder.name)
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
        with self._request(None, login=True) as new:
            new.update({"user_id": user_id, "username": username, "access_count": 0, "metadata": {},
                        "created_at": now, "last_accessed": now})
            session_id = new.sid
        with self._lock:
            self._total_sessions += 1
            self._active_sessions += 1
        return session_id

    def get_session(self, session_id: str) -> Session:
        try:
            with self._request(session_id) as current:
                data = dict(current)
        except SessionNotFound:
            with self._lock:
                self._cache_misses += 1
            raise
        with self._lock:
            self._cache_hits += 1
        return Session(session_id, data["user_id"], data["username"], True, data["access_count"],
                       MappingProxyType(dict(data["metadata"])), data["created_at"], data["last_accessed"])

    def update_session(self, session_id: str, key: str, value: MetadataValue) -> None:
        check_key(key)
        check_value(value)
        now = self._clock()
        with self._request(session_id) as current:
            metadata = dict(current["metadata"])
            metadata[key] = value
            check_metadata_size(metadata)
            current["metadata"] = metadata
            current["last_accessed"] = now

    def increment_access(self, session_id: str) -> int:
        now = self._clock()
        with self._request(session_id) as current:
            count = current["access_count"] + 1
            current["access_count"] = count
            current["last_accessed"] = now
        return count

    def delete_session(self, session_id: str) -> None:
        with self._request(session_id) as current:
            current.clear()  # logout: Flask-Session deletes an emptied session when it saves it
        with self._lock:
            self._active_sessions -= 1

    def get_stats(self) -> Stats:
        with self._lock:
            return Stats(self._total_sessions, self._active_sessions, self._cache_hits, self._cache_misses, 0)

    def get_active_count(self) -> int:
        with self._lock:
            return self._active_sessions

    def get_cleanup_queue_size(self) -> int:
        return 0  # a deleted session leaves the store at once: nothing waits to be released

    def close(self) -> None:
        self._closed = True
        self._folder.cleanup()

    def __enter__(self) -> SessionManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise SessionError("the session manager is closed")

    @contextmanager
    def _request(self, session_id: str | None, login: bool = False) -> Iterator[ServerSideSession]:
        """One request with this session's cookie (a login has none), as Flask runs it around a view: the app's
        session interface opens the session from the cookie, the block is the view, and the
        interface saves the session into the response (not when the view raised)."""
        if not login:
            check_session_id(session_id)
        self._check_open()
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
                   "wsgi.url_scheme": "http"}
        if not login:
            environ["HTTP_COOKIE"] = f"{COOKIE}={session_id}"
        interface = self._app.session_interface
        current = interface.open_session(self._app, self._app.request_class(environ))
        if not login and (current.sid != session_id or "user_id" not in current):
            raise SessionNotFound(session_id)
        yield current
        interface.save_session(self._app, current, self._app.response_class())
