"""Serving the web app on waitress, a production WSGI server, in one or more worker processes.

waitress reads each request whole, headers and body, on one I/O thread before a
worker thread handles it, and closes a connection left idle: idle connections
and clients that send a byte a second cost a socket each, never a thread, so
they cannot stall the users (gunicorn's gthread worker hands each new
connection to a thread at once, and 16 idle ones stopped its /health).

The in-memory store lives in one process, so it is served by one worker with
many threads. The persistent store is one SQLite file, so it is served by
several worker processes (each with threads), forked from this one and sharing
its listening socket, each opening the file: the setting in which bugs between
processes show. Loopback only, unless asked.
"""

from __future__ import annotations

import ipaddress
import logging
import multiprocessing
import os
import resource
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any

from sessionlab import implementations

MEMORY, SQLITE = "memory", "sqlite"

# What a worker lets a client do (waitress's settings).
IDLE_SECONDS = 30  # a connection that sends nothing this long is closed
CONNECTIONS = 2000  # open connections per worker; more wait in the listen backlog
MAX_HEADERS = 16 * 1024  # bytes of request line and headers
MAX_BODY = 64 * 1024  # bytes of body; the app refuses more than 16 KB itself, with its JSON 413
# After Ctrl-C, the workers get SIGTERM; one still there this long after is killed.
STOP_SECONDS = 0.4


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
    """Serve until Ctrl-C or SIGTERM, then stop every worker (SIGTERM, then SIGKILL for any left after
    STOP_SECONDS: a worker deadlocked by a bug goes too) and free the port. OSError if the port is taken.

    Each worker runs with the lab's stress settings (``sessionlab.engines.stress.fast_switching``): a
    short switch interval, and switches asked for at random lines of the code under test, so
    that a short run shows what a long one in production would.
    """
    if workers is None:
        workers = 1 if store.kind == MEMORY else 4
    if store.kind == MEMORY and workers != 1:
        raise ValueError("the in-memory store lives in one process: it takes one worker (use --threads)")
    new_manager(spec, store).close()  # fail here, in one line, rather than in every worker
    import waitress  # noqa: F401  (the web extra: missing, it fails here, not in every worker)

    _more_open_files(workers * CONNECTIONS + 64)
    listener = socket.create_server((host, port), backlog=1024)
    stop = threading.Event()
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGINT, signal.SIGTERM)}
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_worker, name=f"sessionlab-serve-{n}", daemon=True,
                                 args=(spec, store, listener, threads, switch_interval, noise, os.getpid()))
                 for n in range(workers)]
    try:
        for process in processes:
            process.start()
        while not stop.wait(0.2):
            if any(not process.is_alive() for process in processes):
                raise RuntimeError("a worker process ended on its own: see its error above")
    finally:
        _stop(processes)
        listener.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _worker(spec: str, store: Store, listener: socket.socket, threads: int, switch_interval: float, noise: float,
            parent: int) -> None:
    """One worker process: the app on its own manager, on the shared socket, until it is stopped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # and ends us at once, whatever our threads are doing
    threading.Thread(target=_end_with, args=(parent,), name="sessionlab-parent-watch", daemon=True).start()
    from waitress.server import create_server

    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is 11": load, not trouble

    from sessionlab.web.app import create_app

    app = create_app(new_manager(spec, store), label=f"{spec} ({store.kind})")
    _stress_settings(switch_interval, noise)  # before waitress starts its threads
    server = create_server(app, sockets=[listener], threads=threads, channel_timeout=IDLE_SECONDS,
                           connection_limit=CONNECTIONS, max_request_header_size=MAX_HEADERS,
                           max_request_body_size=MAX_BODY, asyncore_use_poll=True, ident="sessionlab",
                           clear_untrusted_proxy_headers=True)
    server.run()


def _end_with(parent: int) -> None:
    """End this worker once the process that started it is gone (killed, say, with no time to stop us)."""
    while os.getppid() == parent:
        threading.Event().wait(0.5)
    os._exit(0)


def _stop(processes: list) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(STOP_SECONDS)
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()


def _more_open_files(wanted: int) -> None:
    """Raise this process's limit of open files toward wanted (each connection is one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _stress_settings(switch_interval: float, noise: float) -> None:
    from sessionlab.engines import stress

    sys.setswitchinterval(switch_interval)
    if noise > 0:
        threading.settrace(stress._noise_maker(noise))  # the worker's request threads start later


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
