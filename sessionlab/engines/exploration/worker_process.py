"""A worker process of a search over processes, and the lab's handle on it.

The worker opens its own manager, follows every statement its connections run
(SQLite's trace callback), and before each one tells the lab which statement
comes next and waits for the lab's "go". A thread of its own answers where
each of its threads waits, when the lab asks. ``WorkerProcess`` is the lab's
side: the pipes, the state the scheduler keeps (paused, running, waiting,
done), and which connections hold SQLite's write lock.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from typing import Any

from sessionlab.engines.bounded import Wait, thread_waits
from sessionlab.engines.exploration.statements import Raised, connection_of, encode

_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)
_BEGIN_WRITE = re.compile(r"^\s*BEGIN\s+(IMMEDIATE|EXCLUSIVE)\b", re.IGNORECASE)
_BEGIN = re.compile(r"^\s*(BEGIN|SAVEPOINT)\b", re.IGNORECASE)
_END = re.compile(r"^\s*(COMMIT|END|ROLLBACK)\b(?!\s+TO)", re.IGNORECASE)



_STDERR: int | None = None  # the lab's own standard error, while a worker is forked with a quiet one


def _quietly_forked(process: Any) -> None:
    """Start a forked process with standard error silenced until it runs its own code.

    Python's threading module, in the new process, complains about threads a search left
    behind with its own kinds of events; nothing of it concerns the worker."""
    global _STDERR
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as quiet:
            os.dup2(quiet.fileno(), 2)
        _STDERR = saved
        process.start()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        _STDERR = None


def worker_main(index: int, scenario: Any, context: Any, pipe: Any, watch: Any) -> None:
    """The body of worker process index: open, (warm), wait for turns, call, observe, close."""
    if _STDERR is not None:
        os.dup2(_STDERR, 2)
    gate = threading.Event()  # set while the call runs: its statements wait for turns
    connections: list[sqlite3.Connection] = []
    real_connect = sqlite3.connect

    def follow(connection: sqlite3.Connection) -> None:
        number = len(connections)
        connections.append(connection)

        def at_statement(sql: str) -> None:
            if gate.is_set() and threading.current_thread() is threading.main_thread():
                pipe.send(("at", number, sql))
                if pipe.recv() != "go":
                    os._exit(3)

        connection.set_trace_callback(at_statement)

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        connection = real_connect(*args, **kwargs)
        follow(connection)
        return connection

    def where_each_thread_waits() -> None:
        while watch.recv() == "where":
            me = threading.current_thread()
            watch.send(thread_waits([t for t in threading.enumerate() if t is not me], scenario.files or None))

    threading.Thread(target=where_each_thread_waits, name="lab-watch", daemon=True).start()
    sqlite3.connect = connect
    try:
        manager = scenario.open_manager(context)
        found = connection_of(manager, default=None)
        if found is not None and found not in connections:
            follow(found)
        if scenario.warm is not None:
            scenario.warm(manager, context)
    except BaseException as exc:
        pipe.send(("failed", Raised.of(exc, scenario.files)))
        return
    pipe.send(("ready",))
    if pipe.recv() != "go":
        return
    gate.set()
    try:
        result = encode(scenario.calls[index](manager, context))
    except BaseException as exc:
        result = Raised.of(exc, scenario.files)
    gate.clear()
    pipe.send(("done", result))
    if pipe.recv() != "observe":
        return
    try:
        seen = encode(scenario.observe(manager, context)) if scenario.observe is not None else None
    except BaseException as exc:
        seen = Raised.of(exc, scenario.files)
    try:
        manager.close()
    except BaseException:
        pass
    pipe.send(("observed", seen))




class WorkerProcess:
    def __init__(self, index: int, scenario: Any, context: Any, mp: Any):
        self.index = index
        self.pipe, child = mp.Pipe()
        self.watch, child_watch = mp.Pipe()
        self.process = mp.Process(target=worker_main, args=(index, scenario, context, child, child_watch),
                                  name=f"lab-process-{index + 1}", daemon=True)
        _quietly_forked(self.process)
        child.close()
        child_watch.close()
        self.state = "opening"  # opening, paused, running, waiting, done
        self.next: tuple[int, str] | None = None  # (connection, sql) it is paused before
        self.holding: set[int] = set()  # its connections that hold the write lock
        self.in_transaction: set[int] = set()
        self.last: tuple[int, str] | None = None  # the statement it ran last

    def receive(self, seconds: float) -> Any:
        return self.pipe.recv() if self.pipe.poll(seconds) else None

    def ran(self, statement: tuple[int, str] | None) -> None:
        """Note the write lock the statement it was let go before took or released."""
        if statement is None:
            return
        connection, sql = statement
        if _END.match(sql):
            self.holding.discard(connection)
            self.in_transaction.discard(connection)
        elif _BEGIN_WRITE.match(sql):
            self.holding.add(connection)
            self.in_transaction.add(connection)
        elif _BEGIN.match(sql):
            self.in_transaction.add(connection)
        elif _WRITE.match(sql) and connection in self.in_transaction:
            self.holding.add(connection)

    def needs_write_lock(self) -> bool:
        if self.next is None:
            return False
        connection, sql = self.next
        return connection not in self.holding and bool(_BEGIN_WRITE.match(sql) or _WRITE.match(sql))

    def where(self) -> tuple[Wait, ...]:
        try:
            self.watch.send("where")
            if self.watch.poll(2.0):
                return tuple(self.watch.recv())
        except (OSError, EOFError):
            pass
        return ()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(2.0)
        for pipe in (self.pipe, self.watch):
            pipe.close()


def named(worker: WorkerProcess, waits: tuple[Wait, ...]) -> tuple[Wait, ...]:
    """The waits of a worker's threads, each named by its process; the lab's own watcher left out."""
    who = f"process {worker.index + 1}"
    named = [Wait(who if w.thread == "MainThread" else f"{who} ({w.thread})", w.file, w.line, w.function, w.text,
                  w.waits_for, w.holds) for w in waits if w.thread != "lab-watch"]
    return tuple(named) or (Wait(who),)
