"""`sessionlab serve` against clients that misbehave, and its Ctrl-C under load.

A real server on a free loopback port (waitress, in worker processes): bytes no
parser accepts answer 4xx, never 500, with no traceback in what the server
prints; Ctrl-C under load on buggy/'s SQLite store (whose workers a bug may
deadlock) ends every worker and frees the port within 2 s. The soak test
(``--slow``) holds 500 idle connections and 12 clients sending a byte at a time
open while a user still gets /health and GET /api/data within a second.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sessionlab.web import load, server

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("flask") is None or importlib.util.find_spec("waitress") is None,
                       reason="the web demo needs the web extra: pip install -e '.[web]'"),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="worker processes are found through /proc"),
]

ROOT = Path(__file__).resolve().parent.parent


def start(spec: str, store: str = "memory", workers: int | None = None) -> tuple[subprocess.Popen, int]:
    """The server in a process group of its own, as a terminal starts it: Ctrl-C reaches every process."""
    port = server.free_port()
    argv = [sys.executable, "-m", "sessionlab", "serve", "--impl", spec, "--store", store, "--port", str(port)]
    if workers:
        argv += ["--workers", str(workers)]
    child = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env={**os.environ, "COLUMNS": "80"}, start_new_session=True)
    assert load.wait_until_up(port, child), child.stdout.read() if child.poll() is not None else "slow to start"
    return child, port


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def port_is_free(port: int) -> bool:
    """Whether a new server could listen on the port now (with SO_REUSEADDR, as servers do: the
    connections the last one closed may wait in TIME_WAIT a while)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
            timeout: float = 10) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def raw(port: int, data: bytes, close_after: bool = False) -> bytes:
    """Send bytes as they are; what the server answers before it closes (or b'' if it says nothing)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(data)
        if close_after:
            connection.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and not close_after:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return answer


def test_bytes_no_parser_accepts_get_a_4xx_and_the_server_prints_no_traceback():
    child, port = start("fixed")
    try:
        status, body = request(port, "POST", "/login", json.dumps({"user": "ada"}).encode(),
                               {"Content-Type": "application/json"})
        session = json.loads(body)["session"]
        post = (b"POST /api/data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Session-Id: "
                + session.encode())
        answers = {
            "bad chunk size": raw(port, post + b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
            "chunk longer than said": raw(port, post + b"\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}xx\r\n0\r\n\r\n"),
            "huge header": raw(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"),
            "body over the bound": raw(port, post + b"\r\nContent-Length: 200000\r\n\r\n" + b"[" * 200_000),
            "deep JSON": raw(port, post + b"\r\nContent-Length: 9000\r\n\r\n" + b"[" * 9000),
            "not HTTP": raw(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n"),
            "body cut short": raw(port, post + b"\r\nContent-Length: 100\r\n\r\n{\"key\":", close_after=True),
            "chunks cut short": raw(port, post + b"\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{\"ke",
                                    close_after=True),
        }
        for name, answer in answers.items():
            status_line = answer.split(b"\r\n", 1)[0]
            assert answer == b"" or status_line.split()[1][:1] == b"4", (name, status_line)
        assert request(port, "GET", "/api/data", headers={"X-Session-Id": session})[0] == 200  # still serving
        assert request(port, "GET", "/health")[0] == 200
    finally:
        child.send_signal(signal.SIGINT)
        output, _ = child.communicate(timeout=15)
    assert "Traceback" not in output and session not in output, output


def test_ctrl_c_under_load_on_buggy_sqlite_leaves_no_worker_and_frees_the_port_within_2_s(tmp_path):
    child, port = start("buggy", f"sqlite:{tmp_path / 'sessions.sqlite3'}", workers=4)
    deadline = time.monotonic() + 10
    while len(workers := children_of(child.pid)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        health = request(port, "GET", "/health")[1].decode()
        assert str(tmp_path) not in health and "sqlite" in health, health  # the store's kind, not its path
        users = threading.Thread(target=load.run, args=(f"http://127.0.0.1:{port}",),
                                 kwargs={"users": 16, "requests": 400, "tabs": 4}, daemon=True)
        users.start()
        time.sleep(1.0)  # the workers are busy with requests, some in the middle of a write
        started = time.monotonic()
        os.killpg(child.pid, signal.SIGINT)  # Ctrl-C in the terminal: the whole group gets it
        while (child.poll() is None or any(alive(pid) for pid in workers)) and time.monotonic() - started < 10:
            time.sleep(0.02)
        took = time.monotonic() - started
        left = [pid for pid in workers if alive(pid)]
    finally:
        for pid in [child.pid, *workers]:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        output = child.communicate(timeout=10)[0]
    assert len(workers) == 4, workers
    assert not left and child.returncode is not None, (left, output)
    assert port_is_free(port) and took < 2.0, (took, output)


def held_open(port: int, idle: int, slow: int, stop: threading.Event) -> list[socket.socket]:
    """idle connections that send nothing, and slow clients that send their request a byte at a time."""
    connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle)]

    def slow_client(n: int) -> None:
        connection = socket.create_connection(("127.0.0.1", port))
        connections.append(connection)
        data = (b"POST /api/data HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n"
                if n % 2 else b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        for byte in data + b"x" * 64:
            if stop.wait(0.2):
                return
            try:
                connection.send(bytes([byte]))
            except OSError:
                return

    for n in range(slow):
        threading.Thread(target=slow_client, args=(n,), daemon=True).start()
    return connections


@pytest.mark.slow
@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_500_idle_connections_and_12_slow_clients_do_not_stall_a_user(store, tmp_path):
    child, port = start("fixed", "memory" if store == "memory" else f"sqlite:{tmp_path / 's.sqlite3'}")
    stop = threading.Event()
    try:
        status, body = request(port, "POST", "/login", json.dumps({"user": "ada"}).encode(),
                               {"Content-Type": "application/json"})
        session = json.loads(body)["session"]
        connections = held_open(port, idle=500, slow=12, stop=stop)
        time.sleep(2.0)  # every slow client has started, none has finished
        for _ in range(5):
            for method, path in (("GET", "/health"), ("GET", "/api/data")):
                started = time.monotonic()
                status, _ = request(port, method, path, headers={"X-Session-Id": session}, timeout=5)
                took = time.monotonic() - started
                assert status == 200 and took < 1.0, (path, status, took)
            time.sleep(0.5)
    finally:
        stop.set()
        for connection in connections:
            connection.close()
        child.send_signal(signal.SIGINT)
        child.communicate(timeout=15)


def test_a_port_in_use_is_one_line_and_status_2():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "sessionlab", "serve", "--impl", "fixed", "--port", str(port)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"sessionlab: cannot listen on 127.0.0.1:{port}: another program listens on it"
