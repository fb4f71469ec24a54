"""The web app against a hostile client: well over a thousand malformed requests, none a 500.

Every route gets bodies a client can send on purpose or by mistake (JSON nested past the
stack, bytes that are not UTF-8, numbers past what Python parses, the wrong type at every
level, a body over the bound), with every content type and with and without a valid
session; a body the server cannot read (a bad chunk size, a body cut short) reaches the app
as the server's own exception from ``wsgi.input``. Each answer is a 4xx in JSON, no answer
or log line holds a traceback, and no log line holds a session id.

These run in the process, on Flask's test client: the app's code is the same behind any
WSGI server.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import sqlite3
import time

import pytest

import buggy
import fixed

pytestmark = pytest.mark.skipif(importlib.util.find_spec("flask") is None,
                                reason="the web demo needs the web extra: pip install -e '.[web]'")

DEEP = [b"[" * n for n in (33, 1_000, 5_000, 15_000)] + [b'{"a":' * n for n in (40, 3_000)] + [
    b'{"user": ' + b"[" * 8_000 + b"]" * 8_000 + b"}", b'{"key": "k", "value": ' + b"{" * 4_000 + b"}"]
BODIES = DEEP + [
    b"", b"{", b"}", b"[", b"null", b"true", b"7", b'"ada"', b"[]", b'[{"user": "ada"}]',
    b'{"user": "\xff\xfe"}', b"\xef\xbb\xbf{}", b'{"user": "\\ud800"}', b'{"user": "a\\u0000b"}',
    b'{"user": ' + b"9" * 5_000 + b"}", b'{"key": "n", "value": NaN}', b'{"key": "n", "value": -Infinity}',
    b'{"key": "n", "value": 1e999}', b'{"user": {"name": "ada"}}', b'{"user": ["ada"]}', b'{"user": 1.5}',
    b'{"key": null, "value": 1}', b'{"key": "k" , "value": [1]}', b'{"key": "\\n", "value": 1}',
    b'{"user": "ada", "user": "bob"}', b'{"user": "' + b"a" * 20_000 + b'"}', b"\x00" * 64,
    b'{"user": "ada"}' + b" " * 17_000, b"user=ada&name=Ada", "{\"user\": \"\u202e\"}".encode(),
]
CONTENT_TYPES = [None, "application/json", "application/json; charset=latin-1", "text/plain",
                 "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/json;;;",
                 "application/vnd.api+json"]
ROUTES = [("POST", "/login"), ("POST", "/api/data"), ("GET", "/api/data"), ("POST", "/logout"),
          ("PUT", "/api/data"), ("DELETE", "/login"), ("GET", "/health"), ("POST", "/nowhere")]


def create_app(*args, **kwargs):
    from sessionlab.web.app import create_app

    return create_app(*args, **kwargs)


class Answers:
    """Every answer of a client, and what the app logged meanwhile."""

    def __init__(self, client, caplog):
        self.client, self.caplog, self.count, self.statuses = client, caplog, 0, set()

    def send(self, method: str, path: str, **options) -> None:
        response = self.client.open(path, method=method, **options)
        self.count += 1
        self.statuses.add(response.status_code)
        text = response.get_data(as_text=True)
        assert response.status_code < 500, (method, path, options.get("data", b"")[:60], response.status_code, text)
        assert "Traceback" not in text and 'File "' not in text, text
        if method != "HEAD" and response.status_code >= 400:
            assert response.is_json and set(response.json) == {"error"}, text

    def check_the_log(self, *secrets: str) -> None:
        for record in self.caplog.records:
            line = record.getMessage()
            assert record.exc_info is None and "Traceback" not in line, line
            assert not any(secret in line for secret in secrets), line


def login(client) -> str:
    response = client.post("/login", json={"user": "ada", "name": "Ada"})
    assert response.status_code == 201
    return response.json["session"]


def hostile_matrix(manager, caplog) -> Answers:
    caplog.set_level(logging.DEBUG)
    client = create_app(manager, label="hostile").test_client(use_cookies=False)
    session = login(client)
    answers = Answers(client, caplog)
    for (method, path), body, content_type, with_session in itertools.product(
            ROUTES, BODIES, CONTENT_TYPES, (False, True)):
        if with_session and path == "/logout":
            continue  # the one request that may end the session: once, after the matrix
        headers = {"X-Session-Id": session} if with_session else {}
        answers.send(method, path, data=body, content_type=content_type, headers=headers)
    assert client.get("/api/data", headers={"X-Session-Id": session}).status_code == 200  # still logged in
    assert client.post("/logout", data=b"[" * 5_000, headers={"X-Session-Id": session}).status_code == 200
    answers.check_the_log(session)
    return answers


def test_a_thousand_malformed_requests_get_no_500_and_log_no_traceback(caplog):
    answers = hostile_matrix(fixed.SessionManager(), caplog)
    assert answers.count >= 1_000 and answers.statuses <= {200, 201, 400, 401, 404, 405, 413}, answers.statuses
    assert 400 in answers.statuses and 413 in answers.statuses


def test_the_persistent_store_and_buggy_answer_the_deepest_bodies_with_400(caplog, tmp_path):
    for manager in (fixed.PersistentSessionManager(tmp_path / "f.sqlite3"), buggy.SessionManager()):
        caplog.clear()
        with manager:
            client = create_app(manager).test_client()
            session = login(client)
            answers = Answers(client, caplog)
            for (method, path), body in itertools.product(ROUTES[:2], DEEP):
                answers.send(method, path, data=body, content_type="application/json",
                             headers={"X-Session-Id": session})
            assert answers.statuses == {400}
            answers.check_the_log(session)


class BrokenBody:
    """A request body the WSGI server fails to read, raising its own exception as the app reads."""

    def __init__(self, error: BaseException, first: bytes = b'{"user": "a'):
        self.error, self.first = error, first

    def read(self, *size: int) -> bytes:
        if self.first:
            first, self.first = self.first, b""
            return first
        raise self.error

    readline = read


def server_errors() -> list[BaseException]:
    found: list[BaseException] = [ConnectionResetError(104, "Connection reset by peer"), OSError("read failed"),
                                  ValueError("bad chunk")]
    if importlib.util.find_spec("gunicorn") is not None:
        from gunicorn.http import errors

        found += [errors.InvalidChunkSize(b"zz"), errors.NoMoreData(b""), errors.ChunkMissingTerminator(b"xx")]
    return found


@pytest.mark.parametrize("error", server_errors(), ids=lambda error: type(error).__name__)
def test_a_body_the_server_cannot_read_is_400(error, caplog):
    caplog.set_level(logging.DEBUG)
    client = create_app(fixed.SessionManager()).test_client()
    session = login(client)
    answers = Answers(client, caplog)
    for path, headers in (("/login", {}), ("/api/data", {"X-Session-Id": session})):
        response = client.post(path, headers={**headers, "Content-Type": "application/json",
                                               "Transfer-Encoding": "chunked"},
                               environ_overrides={"wsgi.input": BrokenBody(error), "wsgi.input_terminated": True})
        assert response.status_code == 400 and "could not be read" in response.json["error"], response.json
    answers.check_the_log(session)


def test_health_says_why_when_the_sweeper_cannot_sweep(tmp_path):
    path = tmp_path / "sessions.sqlite3"
    with fixed.PersistentSessionManager(path, sweep_interval=0.02, lock_timeout=0.05) as manager:
        client = create_app(manager).test_client()
        assert client.get("/health").status_code == 200
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            deadline = time.monotonic() + 5
            while client.get("/health").status_code == 200 and time.monotonic() < deadline:
                time.sleep(0.01)
            response = client.get("/health")
        finally:
            other.close()
        assert response.status_code == 503 and response.json["healthy"] is False
        assert "database is locked" in response.json["problems"][0]
        deadline = time.monotonic() + 5
        while client.get("/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.get("/health").json["problems"] == []


# -- The smaller holes ------------------------------------------------------------------


def test_head_reads_without_counting_an_access():
    client = create_app(fixed.SessionManager()).test_client(use_cookies=False)
    session = login(client)
    assert client.head("/api/data", headers={"X-Session-Id": session}).status_code == 200
    assert client.get("/api/data", headers={"X-Session-Id": session}).json["accesses"] == 1


def test_every_answer_is_private_and_not_sniffed():
    client = create_app(fixed.SessionManager()).test_client(use_cookies=False)
    session = login(client)
    for response in (client.post("/login", json={"user": "bob"}), client.get("/api/data", headers={
            "X-Session-Id": session}), client.get("/health"), client.get("/nowhere"), client.post("/login", data=b"[")):
        assert response.headers["Cache-Control"] == "no-store", response.status_code
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.status_code


def test_the_session_cookie_is_secure_over_https_or_when_the_site_says_so():
    def cookie(app, base_url: str) -> str:
        response = app.test_client().post("/login", json={"user": "ada"}, base_url=base_url)
        return response.headers["Set-Cookie"]

    assert "Secure" in cookie(create_app(fixed.SessionManager()), "https://localhost")
    assert "Secure" not in cookie(create_app(fixed.SessionManager()), "http://localhost")
    assert "Secure" in cookie(create_app(fixed.SessionManager(), secure_cookie=True), "http://localhost")
    assert "HttpOnly" in cookie(create_app(fixed.SessionManager()), "http://localhost")


def test_a_doubled_slash_is_no_route_and_no_redirect_to_the_clients_host():
    client = create_app(fixed.SessionManager()).test_client(use_cookies=False)
    session = login(client)
    response = client.get("/api//data", headers={"X-Session-Id": session, "Host": "evil.example"})
    assert response.status_code == 404 and "Location" not in response.headers
