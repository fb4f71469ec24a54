"""The session manager behind a web app, where its bugs show as users feel them.

Routes (JSON in, JSON out):

    POST /login      {"user": ..., "name": ...}  -> 201 {"session": id}; also sets the session cookie
    GET  /api/data   counts an access            -> 200 {"user", "name", "accesses", "preferences"}
    POST /api/data   {"key": ..., "value": ...}  -> 200 {"saved": key}
    POST /logout                                 -> 200 {"logged_out": true}
    GET  /health                                 -> 200 when healthy, 503 when not

The session id travels in the ``X-Session-Id`` header or the ``session`` cookie.
Only the server makes ids; an id that is missing, malformed, unknown, logged out
or expired gets 401 with a JSON error, and never appears in a response to
anyone else, in /health or in a log line. Request bodies are bounded.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from sessionlab.api import InvalidInput, SessionError, SessionExpired, SessionNotFound, check_session_id, health_check

log = logging.getLogger(__name__)

COOKIE = "session"
HEADER = "X-Session-Id"
MAX_BODY = 16 * 1024  # bytes: a login or one preference fits many times over
MAX_DEPTH = 32  # levels of nested arrays and objects in a body: a login or a preference needs 1


def create_app(manager: Any, *, label: str = "", secure_cookie: bool | None = None) -> Flask:
    """A Flask app over one session manager (any implementation of the lab's contract).

    secure_cookie: whether the session cookie carries Secure; None (the default) sets it on a
    request that came over HTTPS (as the WSGI server says: waitress says so for a proxy's
    X-Forwarded-Proto only when that proxy is trusted), True always, for a site served over
    HTTPS only.
    """
    app = Flask("sessionlab.web")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.config["JSON_SORT_KEYS"] = False
    app.url_map.merge_slashes = False  # /api//data is no route: no redirect to a host the client named
    app.extensions["sessionlab"] = {"manager": manager, "label": label}

    def body() -> dict[str, Any]:
        data = _json_body()
        if not isinstance(data, dict):
            raise InvalidInput("the body must be a JSON object")
        return data

    def session_id() -> str:
        """The caller's session id, from the header or the cookie; 401 if there is none usable."""
        given = request.headers.get(HEADER) or request.cookies.get(COOKIE)
        if not given:
            raise SessionNotFound("")
        check_session_id(given)  # InvalidInput for a malformed one: 401 as well, see below
        return given

    @app.post("/login")
    def login() -> Response:
        data = body()
        new = manager.create_session(data.get("user"), data.get("name", data.get("user")))
        response = jsonify(session=new)
        response.status_code = 201
        secure = request.is_secure if secure_cookie is None else secure_cookie
        response.set_cookie(COOKIE, new, httponly=True, samesite="Lax", secure=secure)
        return response

    @app.get("/api/data")
    def read() -> Response:
        caller = session_id()
        # HEAD asks what GET would answer: it reads, and counts no access
        count = manager.increment_access(caller) if request.method != "HEAD" else None
        session = manager.get_session(caller)
        return jsonify(user=session.user_id, name=session.username,
                       accesses=session.access_count if count is None else count,
                       stored_accesses=session.access_count, preferences=dict(session.metadata))

    @app.post("/api/data")
    def save() -> Response:
        caller = session_id()
        data = body()
        manager.update_session(caller, data.get("key"), data.get("value"))
        return jsonify(saved=data.get("key"))

    @app.post("/logout")
    def logout() -> Response:
        manager.delete_session(session_id())
        response = jsonify(logged_out=True)
        response.delete_cookie(COOKIE)
        return response

    @app.get("/health")
    def health() -> Response:
        status = health_check(manager)
        response = jsonify(healthy=status.healthy, active_sessions_reported=status.active_sessions_reported,
                           active_sessions_actual=status.active_sessions_actual, discrepancy=status.discrepancy,
                           cleanup_queue_size=status.cleanup_queue_size, leak=status.memory_leak_detected,
                           problems=list(status.problems), implementation=label)
        response.status_code = 200 if status.healthy else 503
        return response

    @app.after_request
    def private(response: Response) -> Response:
        # Every answer is about one user's session, or the store's health: no cache keeps it,
        # and no browser takes JSON for anything else.
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    _errors(app)
    return app


def _errors(app: Flask) -> None:
    """Every failure as a JSON error with the right status; never a session id, never a traceback."""

    def error(status: int, message: str) -> Response:
        response = jsonify(error=message)
        response.status_code = status
        return response

    @app.errorhandler(SessionExpired)
    def expired(exc: SessionExpired) -> Response:
        return error(401, "your session has expired: log in again")

    @app.errorhandler(SessionNotFound)
    def unknown(exc: SessionNotFound) -> Response:
        return error(401, "no valid session: log in first")

    @app.errorhandler(InvalidInput)
    def invalid(exc: InvalidInput) -> Response:
        if request.endpoint != "login" and not _has_valid_id():
            return error(401, "no valid session: log in first")
        return error(400, str(exc))

    @app.errorhandler(SessionError)
    def refused(exc: SessionError) -> Response:
        log.warning("%s %s refused: %s", request.method, request.path, type(exc).__name__)
        return error(503, "the session store is not available")

    @app.errorhandler(413)
    def too_large(exc: Exception) -> Response:
        return error(413, f"the request body is over {MAX_BODY} bytes")

    @app.errorhandler(404)
    def not_found(exc: Exception) -> Response:
        return error(404, "no such route")

    @app.errorhandler(405)
    def not_allowed(exc: Exception) -> Response:
        return error(405, "method not allowed on this route")

    @app.errorhandler(HTTPException)
    def refused_by_http(exc: HTTPException) -> Response:
        # Whatever else the request got wrong (a client that went away mid-body, a header
        # Werkzeug refuses): its own 4xx, without Werkzeug's HTML page.
        code = exc.code or 400
        return error(code, "the request could not be read" if code == 400 else exc.name.lower())

    @app.errorhandler(Exception)
    def crashed(exc: Exception) -> Response:
        # The bug shows here (a render that crashes mid-iteration, say): a 500, with the error's
        # type for the user and the lab, and no id.
        log.error("%s %s failed: %s", request.method, request.path, type(exc).__name__)
        return error(500, f"the server failed: {type(exc).__name__}")


def _json_body() -> Any:
    """The request's body as JSON, or None if it is not JSON; InvalidInput if it cannot be read.

    Every way a body can be wrong is the client's mistake, a 400, never a 500: a chunk size
    that is not a number or a body cut short (the server raises them as the app reads),
    bytes that are not UTF-8, and JSON nested so deeply that decoding it would exhaust the
    stack (MAX_DEPTH, checked before decoding).
    """
    if not request.is_json:
        return None
    try:
        raw = request.get_data(cache=True)
    except HTTPException:
        raise
    except Exception as exc:  # the WSGI server's own parse errors, whatever their class
        raise InvalidInput(f"the request body could not be read ({type(exc).__name__})") from None
    if _depth(raw) > MAX_DEPTH:
        raise InvalidInput(f"the body nests arrays and objects deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, an int over 4300 digits
        return None


def _depth(raw: bytes) -> int:
    """How deeply a JSON text nests its arrays and objects (brackets inside strings counted too:
    an upper bound, which is all the check needs)."""
    depth = deepest = 0
    for byte in raw.translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _has_valid_id() -> bool:
    given = request.headers.get(HEADER) or request.cookies.get(COOKIE)
    try:
        check_session_id(given)
    except InvalidInput:
        return False
    return True
