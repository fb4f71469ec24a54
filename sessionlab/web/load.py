"""Load on the web app from users who keep their own tally, and what they saw.

Each user logs in, then several tabs (threads, each with its own keep-alive
connection) read the session and save preferences at once, each tab its own
keys; at the end one tab reads while the others log out. Every user knows what
it did: how many reads it made, which preferences it saved last, when it
logged out. Compared with what the server answered, that gives what users
saw: accesses lost, preferences lost, logouts nobody asked for, a session that
shows someone else, errors, and the time each request took.
"""

from __future__ import annotations

import http.client
import json
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_USERS, MAX_TABS, MAX_REQUESTS = 500, 16, 10_000
REQUEST_SECONDS = 5.0  # a request that takes longer is an error


class LoadError(Exception):
    """The load could not run: a bad URL, a server that does not answer, a bound exceeded."""


@dataclass
class Tally:
    """What one user did and saw."""

    user: str
    reads: int = 0  # successful GET /api/data, each one access
    counted: int | None = None  # the server's count at the end
    saved: dict[str, Any] = field(default_factory=dict)  # key -> the value this user saved last
    kept: dict[str, Any] = field(default_factory=dict)  # the preferences the server showed at the end
    unexpected_logouts: int = 0  # 401 before this user logged out
    mixed: int = 0  # answers that showed another user's session
    errors: Counter = field(default_factory=Counter)  # "500: RuntimeError", "connection: ..."
    latencies: list[float] = field(default_factory=list)

    @property
    def accesses_lost(self) -> int:
        return max(0, self.reads - (self.counted or 0)) if self.counted is not None else 0

    @property
    def preferences_lost(self) -> list[str]:
        return [key for key, value in self.saved.items() if self.kept.get(key, object()) != value]


@dataclass(frozen=True)
class Report:
    url: str
    users: int
    tabs: int
    requests: int
    tallies: tuple[Tally, ...]
    seconds: float
    health_status: int
    health: dict[str, Any]

    def figures(self) -> dict[str, Any]:
        tallies = self.tallies
        reads = sum(t.reads for t in tallies)
        saved = sum(len(t.saved) for t in tallies)
        latencies = sorted(x for t in tallies for x in t.latencies)
        errors = Counter()
        for tally in tallies:
            errors.update(tally.errors)
        quantiles = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else latencies * 99
        return {
            "accesses_lost": sum(t.accesses_lost for t in tallies), "reads": reads,
            "preferences_lost": sum(len(t.preferences_lost) for t in tallies), "preferences_saved": saved,
            "unexpected_logouts": sum(t.unexpected_logouts for t in tallies),
            "users_mixed_up": sum(1 for t in tallies if t.mixed),
            "errors": sum(errors.values()), "error_kinds": dict(errors.most_common(5)),
            "requests_made": len(latencies), "seconds": round(self.seconds, 3),
            "requests_per_second": round(len(latencies) / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(quantiles[49] * 1000, 2) if quantiles else None,
            "p99_ms": round(quantiles[98] * 1000, 2) if quantiles else None,
            "health_status": self.health_status, "health": self.health,
        }

    @property
    def clean(self) -> bool:
        f = self.figures()
        return not (f["accesses_lost"] or f["preferences_lost"] or f["unexpected_logouts"] or f["users_mixed_up"]
                    or f["errors"]) and self.health_status == 200


class _Client:
    """One tab: a keep-alive connection that records every request's time and outcome."""

    def __init__(self, host: str, port: int, tally: Tally, lock: threading.Lock, jar: dict[str, str]):
        self.connection = http.client.HTTPConnection(host, port, timeout=REQUEST_SECONDS)
        self.tally, self.lock, self.jar = tally, lock, jar  # jar: the user's cookies, shared by its tabs

    def call(self, method: str, path: str, body: Any = None, session: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if session:
            headers["X-Session-Id"] = session
        with self.lock:
            if self.jar:
                headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.jar.items())
        payload = json.dumps(body) if body is not None else None
        started = time.perf_counter()
        try:
            self.connection.request(method, path, body=payload, headers=headers)
            response = self.connection.getresponse()
            raw = response.read()
            status = response.status
            cookies = response.headers.get_all("Set-Cookie") or []
        except (OSError, http.client.HTTPException) as exc:
            self.connection.close()
            with self.lock:
                self.tally.errors[f"connection: {type(exc).__name__}"] += 1
            return 0, None
        elapsed = time.perf_counter() - started
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        with self.lock:
            for cookie in cookies:  # a server that keeps the session in a cookie needs it back
                name, _, value = cookie.split(";", 1)[0].partition("=")
                self.jar[name.strip()] = value.strip()
            self.tally.latencies.append(elapsed)
            if status >= 500:
                kind = (data or {}).get("error", "") if isinstance(data, dict) else ""
                self.tally.errors[f"{status}: {kind.rsplit(': ', 1)[-1] or 'error'}"] += 1
        return status, data

    def close(self) -> None:
        self.connection.close()


def _user(host: str, port: int, name: str, tabs: int, requests: int, deadline: float, tally: Tally) -> None:
    lock = threading.Lock()  # guards tally and jar: the user's tabs write them
    jar: dict[str, str] = {}
    first = _Client(host, port, tally, lock, jar)
    status, data = first.call("POST", "/login", {"user": name, "name": name.title()})
    if status != 201 or not isinstance(data, dict):
        first.close()
        return
    session = data["session"]
    logged_out = threading.Event()
    each = max(1, requests // tabs)

    def tab(number: int, client: _Client) -> None:
        for step in range(each):
            if time.monotonic() > deadline:
                return
            if step % 2:
                key, value = f"tab{number}-{step % 6}", f"{name}/{number}/{step}"
                status, _ = client.call("POST", "/api/data", {"key": key, "value": value}, session)
                if status == 200:
                    with lock:
                        tally.saved[key] = value
            else:
                status, data = client.call("GET", "/api/data", session=session)
                if status == 200 and isinstance(data, dict):
                    with lock:
                        tally.reads += 1
                        tally.mixed += data.get("user") != name
            if status == 401 and not logged_out.is_set():
                with lock:
                    tally.unexpected_logouts += 1
                return

    clients = [first] + [_Client(host, port, tally, lock, jar) for _ in range(tabs - 1)]
    threads = [threading.Thread(target=tab, args=(n, c), daemon=True) for n, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + REQUEST_SECONDS)
    status, data = first.call("GET", "/api/data", session=session)  # what the server kept
    if status == 200 and isinstance(data, dict):
        tally.reads += 1
        tally.counted = data.get("stored_accesses")
        tally.kept = data.get("preferences", {})
        tally.mixed += data.get("user") != name
    elif status == 401:
        tally.unexpected_logouts += 1
    # The end: one tab reads while the others log out, as a user closing a window does.
    logged_out.set()
    enders = [threading.Thread(target=client.call, args=(method, path), kwargs={"session": session}, daemon=True)
              for client, (method, path) in zip(clients, [("GET", "/api/data")] + [("POST", "/logout")] * tabs)]
    for thread in enders:
        thread.start()
    for thread in enders:
        thread.join(REQUEST_SECONDS)
    if tabs == 1:
        first.call("POST", "/logout", session=session)
    for client in clients:
        client.close()


def run(url: str, *, users: int, requests: int, tabs: int = 4, seconds: float = 30.0,
        progress: Any = None) -> Report:
    """Drive the app at url with users x tabs concurrent clients; what they saw."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise LoadError(f"--url must be http://HOST:PORT, not {url!r}")
    from sessionlab.web.server import loopback

    if not loopback(parts.hostname):
        raise LoadError(f"{parts.hostname} is not this machine: the load runs against loopback addresses only")
    for name, value, most in (("--users", users, MAX_USERS), ("--tabs", tabs, MAX_TABS),
                              ("--requests", requests, MAX_REQUESTS)):
        if not 1 <= value <= most:
            raise LoadError(f"{name} must be between 1 and {most}")
    host, port = parts.hostname, parts.port or 80
    status, _ = health(host, port)
    if status == 0:
        raise LoadError(f"nothing answers at {url}: start the server first (sessionlab serve)")
    deadline = time.monotonic() + seconds
    tallies = [Tally(f"user-{n}") for n in range(users)]
    threads = [threading.Thread(target=_user, args=(host, port, t.user, tabs, requests, deadline, t), daemon=True)
               for t in tallies]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for done, thread in enumerate(threads, 1):
        thread.join(max(0.0, deadline - time.monotonic()) + 3 * REQUEST_SECONDS)
        if progress is not None:
            progress(done, users)
    elapsed = time.perf_counter() - started
    status, answer = health(host, port)
    return Report(url, users, tabs, requests, tuple(tallies), elapsed, status, answer or {})


def health(host: str, port: int) -> tuple[int, dict[str, Any] | None]:
    """The status and body of GET /health; 0 and None when nothing answers."""
    connection = http.client.HTTPConnection(host, port, timeout=REQUEST_SECONDS)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    except (OSError, http.client.HTTPException, ValueError):
        return 0, None
    finally:
        connection.close()


def wait_until_up(port: int, child: Any, seconds: float = 20.0) -> bool:
    """Whether a server started as child answers /health on loopback within seconds (False if it
    exited or took longer)."""
    deadline = time.monotonic() + seconds
    while health("127.0.0.1", port)[0] == 0:
        if child.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
