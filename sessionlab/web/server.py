"""Serving the web app on gunicorn, a production WSGI server.

The in-memory store lives in one process, so it is served by one worker with
many threads. The persistent store is one SQLite file, so it is served by
several worker processes (each with threads), each opening the file: the
setting in which bugs between processes show. Loopback only, unless asked.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any

from sessionlab import implementations

MEMORY, SQLITE = "memory", "sqlite"


@dataclass(frozen=True)
class Store:
    kind: str  # MEMORY or SQLITE
    path: str = ""  # the file, for SQLITE

    @classmethod
    def parse(cls, text: str) -> Store:
        """memory, or sqlite:PATH."""
        if text == MEMORY:
            return cls(MEMORY)
        kind, _, path = text.partition(":")
        if kind == SQLITE and path:
            return cls(SQLITE, path)
        raise ValueError(f"--store takes memory or sqlite:PATH, not {text!r}")

    def __str__(self) -> str:
        return MEMORY if self.kind == MEMORY else f"sqlite:{self.path}"


def new_manager(spec: str, store: Store) -> Any:
    """A manager of the implementation for this store, made in the process that serves it."""
    implementation = implementations.load(spec)
    if store.kind == MEMORY:
        return implementation.new("SessionManager")
    return implementation.new("PersistentSessionManager", path=store.path)


def serve(spec: str, store: Store, *, host: str = "127.0.0.1", port: int = 8000, workers: int | None = None,
          threads: int = 8, switch_interval: float = 1e-6, noise: float = 0.1) -> None:
    """Serve until Ctrl-C (or SIGTERM): gunicorn stops its workers gracefully.

    Each worker runs with the lab's stress settings (``sessionlab.engines.stress.fast_switching``): a
    short switch interval, and switches asked for at random lines of the code under test, so
    that a short run shows what a long one in production would.
    """
    if workers is None:
        workers = 1 if store.kind == MEMORY else 4
    if store.kind == MEMORY and workers != 1:
        raise ValueError("the in-memory store lives in one process: it takes one worker (use --threads)")
    new_manager(spec, store).close()  # fail here, in one line, rather than in every worker
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):  # type: ignore[misc]
        """gunicorn, configured from a dict, loading the app in each worker."""

        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from sessionlab.web.app import create_app

            return create_app(new_manager(spec, store), label=f"{spec} ({store})")

    options = {
        "bind": f"{host}:{port}", "workers": workers, "threads": threads, "worker_class": "gthread",
        "accesslog": None, "errorlog": "-", "loglevel": "warning", "graceful_timeout": 5, "timeout": 30,
        "proc_name": "sessionlab-serve", "post_worker_init": _stress_settings(switch_interval, noise),
    }
    Gunicorn().run()


def _stress_settings(switch_interval: float, noise: float):
    def post_worker_init(worker: Any) -> None:
        from sessionlab.engines import stress

        sys.setswitchinterval(switch_interval)
        if noise > 0:
            threading.settrace(stress._noise_maker(noise))  # the worker's request threads start later

    return post_worker_init


def loopback(host: str) -> bool:
    """Whether a host name or address is this machine's loopback."""
    try:
        return all(ipaddress.ip_address(info[4][0]).is_loopback
                   for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP))
    except (OSError, ValueError):
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
