"""A throwaway redis-server on a free loopback port, in a folder of its own, persistence off.

``RedisServer`` starts one (``with RedisServer() as server: server.url``) and
stops it, folder and all, when the block ends, on Ctrl-C too. ``node_options``
gives a new node what it needs: the process's one throwaway server (started on
first use, stopped when the process exits, Ctrl-C included) or the server
``use`` named, and a namespace of its own. Where no
``redis-server`` is installed, ``missing()`` says so in one line, with the
command that installs it. Nothing here ever starts a server on, or connects
to, an address other than 127.0.0.1, unless ``use`` is given another.
"""

from __future__ import annotations

import atexit
import itertools
import os
import secrets
import shutil
import threading
import socket
import subprocess
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
# How long a starting server may take to answer PING before the start counts as failed.
START_SECONDS = 10.0
COMMANDS_KEPT = 10_000  # the slow log's length: a scenario's commands, and some
URL_VARIABLE = "SESSIONLAB_REDIS_URL"  # an existing server to use instead of a throwaway one
INSTALL = "apt-get install -y redis-server (Debian, Ubuntu) or brew install redis (macOS)"


class ServerUnavailable(RuntimeError):
    """No redis-server here, or it would not start: the message says why in one line."""


def missing() -> str:
    """Why the Redis track cannot run here, in one line; empty when it can (redis-py, and redis-server
    or a server named by SESSIONLAB_REDIS_URL)."""
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the Redis track needs redis-py: pip install -e '.[test]'"
    if shutil.which("redis-server") is None and not (_shared["url"] or os.environ.get(URL_VARIABLE)):
        return f"the Redis track needs a redis-server binary, not found on PATH: {INSTALL}"
    return ""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (redis-server refuses --port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


# redis-server under a shell that watches this process: the server goes when this process goes,
# even when it cannot stop it (killed, or ended by os._exit, where atexit does not run). A TERM
# to the shell stops the server first.
_WATCHED = ('"$@" & server=$!; trap \'kill $server 2>/dev/null; wait $server; exit 0\' TERM INT; '
            'while kill -0 $PPID 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 0.2; done; '
            'kill $server 2>/dev/null; wait $server')


class RedisServer:
    """One redis-server process on 127.0.0.1, persistence off, living in a temporary folder."""

    def __init__(self) -> None:
        self.port = 0
        self.folder: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        if shutil.which("redis-server") is None:
            raise ServerUnavailable(f"no redis-server binary on PATH: {INSTALL}")
        self.folder = Path(tempfile.mkdtemp(prefix="sessionlab-redis-"))
        for _ in range(3):  # a port found free can be taken before the server binds it
            self.port = free_port()
            self._process = subprocess.Popen(
                ["sh", "-c", _WATCHED, "sh",
                 "redis-server", "--port", str(self.port), "--bind", HOST, "--dir", str(self.folder),
                 "--save", "", "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no",
                 # every command in the slow log, in the order the server ran it, with its client's name:
                 # how a race report shows each node's commands
                 "--slowlog-log-slower-than", "0", "--slowlog-max-len", str(COMMANDS_KEPT),
                 "--logfile", str(self.folder / "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._answers():
                return self
            self._end()
        log = self.folder / "redis.log"
        last = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
        self.stop()
        raise ServerUnavailable(f"redis-server did not start on {HOST}: {last[0] if last else 'no log line'}")

    def _answers(self) -> bool:
        """Whether the server answers PING before START_SECONDS pass (False if it exited)."""
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def _end(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Stop the server and remove its folder; stopping twice is harmless."""
        self._end()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# The server every node of this process uses when none is named: started on first use.
_shared: dict[str, object] = {"server": None, "url": "", "pid": 0}
# Guards _shared: two threads asking for the first node start one server.
_shared_lock = threading.Lock()
_namespaces = itertools.count()


def use(url: str) -> None:
    """Let every later node use the server at url (an existing one) instead of a throwaway one."""
    with _shared_lock:
        _shared["url"] = url


def shared_url() -> str:
    """The URL of the server nodes use: the one ``use`` named, else SESSIONLAB_REDIS_URL's, else this
    process's throwaway one."""
    with _shared_lock:
        named = _shared["url"] or os.environ.get(URL_VARIABLE, "")
        if named:
            return str(named)
        server = _shared["server"]
        if not isinstance(server, RedisServer) or _shared["pid"] != os.getpid():
            server = RedisServer().start()  # a forked child starts its own: its parent stops the first
            _shared["server"], _shared["pid"] = server, os.getpid()
            atexit.register(_stop_if_mine, server, os.getpid())
        return server.url


def _stop_if_mine(server: RedisServer, pid: int) -> None:
    """At exit: stop the server, unless this is a forked child of the process that started it."""
    if os.getpid() == pid:
        server.stop()


def ready() -> str:
    """Make sure the server nodes use is there (starting the throwaway one now, outside any check's
    bound); why not, in one line, or "" when it is."""
    why = missing()
    if why:
        return why
    try:
        shared_url()
    except ServerUnavailable as exc:
        return str(exc)
    return ""


def node_options(namespace: str | None = None) -> dict[str, object]:
    """What a new node needs: the server's URL, and a namespace (a fresh one unless given)."""
    fresh = f"sessionlab-{os.getpid()}-{next(_namespaces)}-{secrets.token_hex(3)}:"
    return {"url": shared_url(), "namespace": namespace or fresh}
