"""The persistent manager: the contract one call at a time, the lifecycle, expiry, restarts, bad files.

These run on both packages: one call at a time, buggy/persistent.py behaves as
fixed/ does (its bugs need threads, processes or a close during a sweep).
Several processes sharing one file, and a process killed in the middle of its
writes, run on fixed/ only.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sessionlab.api import (
    IllegalTransition, InvalidInput, Progress, SessionError, SessionExpired, SessionNotFound, StoreError)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["fixed", "buggy"])
def Manager(request):
    module = __import__(request.param)
    return module.PersistentSessionManager


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_every_operation_of_the_contract_one_call_at_a_time(Manager):
    with Manager() as manager:
        ada = manager.create_session("user-1", "Ada")
        manager.update_session(ada, "cart", "3 books")
        manager.update_session(ada, "theme", "dark")
        assert [manager.increment_access(ada) for _ in range(3)] == [1, 2, 3]
        session = manager.get_session(ada)
        assert (session.user_id, session.username, session.access_count) == ("user-1", "Ada", 3)
        assert dict(session.metadata) == {"cart": "3 books", "theme": "dark"}
        assert manager.get_active_count() == 1 and manager.get_stats().total_sessions == 1
        manager.delete_session(ada)
        with pytest.raises(SessionNotFound):
            manager.get_session(ada)
        with pytest.raises(SessionNotFound):
            manager.delete_session(ada)
        assert manager.get_active_count() == 0 and manager.get_cleanup_queue_size() == 1


def test_the_cache_counts_hits_and_misses(Manager, tmp_path):
    path = tmp_path / "sessions.sqlite3"
    with Manager(path) as manager:
        ada = manager.create_session("user-1", "Ada")  # written through: cached
        manager.get_session(ada)
        manager.get_session(ada)
        stats = manager.get_stats()
        assert (stats.cache_misses, stats.cache_hits) == (0, 2)
    with Manager(path) as reopened:
        reopened.get_session(ada)  # not cached yet: a miss
        reopened.get_session(ada)
        stats = reopened.get_stats()
        assert (stats.cache_misses, stats.cache_hits) == (1, 1)
        with pytest.raises(SessionNotFound):
            reopened.get_session("no-such-session")
        assert reopened.get_stats().cache_misses == 2


def test_a_closed_manager_refuses_calls_and_still_answers_its_stats(Manager):
    manager = Manager()
    ada = manager.create_session("user-1", "Ada")
    manager.create_session("user-2", "Bob")
    manager.delete_session(ada)
    manager.close()
    manager.close()  # twice is harmless
    for call in (lambda: manager.get_session(ada), lambda: manager.create_session("u-3", "Cy"),
                 lambda: manager.increment_access(ada), lambda: manager.expire_sessions()):
        with pytest.raises(SessionError):
            call()
    stats = manager.get_stats()
    assert (stats.total_sessions, stats.active_sessions) == (2, 1)
    assert (manager.get_active_count(), manager.get_cleanup_queue_size()) == (1, 1)


def test_bad_input_is_refused_and_changes_nothing(Manager):
    with Manager() as manager:
        ada = manager.create_session("user-1", "Ada")
        manager.update_session(ada, "cart", "3 books")
        for call in (lambda: manager.update_session(ada, "k" * 65, 1), lambda: manager.update_session(ada, 1, 1),
                     lambda: manager.update_session(ada, "cart", object()), lambda: manager.get_session("x y"),
                     lambda: manager.create_session("user\n", "Ada"), lambda: manager.set_status(ada, "done"),
                     lambda: manager.record_progress(ada, processed=-1)):
            with pytest.raises(InvalidInput):
                call()
        with pytest.raises(SessionNotFound):
            manager.increment_access("no-such-session")
        for n in range(63):
            manager.update_session(ada, f"key-{n}", n)
        with pytest.raises(InvalidInput):
            manager.update_session(ada, "one-too-many", 1)  # the 65th key
        assert "one-too-many" not in manager.get_session(ada).metadata
        assert len(manager.get_session(ada).metadata) == 64


def test_the_status_moves_along_the_lifecycle_only(Manager):
    with Manager() as manager:
        run = manager.create_session("user-1", "Ada")
        assert manager.get_status(run) == "pending"
        with pytest.raises(IllegalTransition, match="pending cannot become completed"):
            manager.set_status(run, "completed")
        manager.set_status(run, "in_progress")
        manager.set_status(run, "completed")
        for status in ("pending", "in_progress", "failed", "expired"):
            with pytest.raises(IllegalTransition):
                manager.set_status(run, status)
        assert manager.get_status(run) == "completed"


def test_progress_files_and_soft_delete(Manager):
    with Manager() as manager:
        run = manager.create_session("user-1", "Ada")
        manager.set_total(run, 3)
        manager.record_progress(run, current_file="a.pcap")
        manager.record_progress(run, current_file="b.pcap", failed_file="b.pcap")
        assert manager.get_progress(run) == Progress(3, 2, "b.pcap", ("b.pcap",))
        manager.record_files(run, "/captures/run.pcap", "/captures/run.keys")
        assert manager.get_files(run) == ("/captures/run.pcap", "/captures/run.keys")
        assert manager.session_exists(run)
        manager.delete_session(run)
        assert not manager.session_exists(run) and manager.get_cleanup_queue_size() == 1
        manager.expire_sessions()  # the sweep purges deleted rows
        assert manager.get_cleanup_queue_size() == 0


def test_a_session_expires_after_its_ttl_and_every_write_renews_it(Manager):
    clock = Clock()
    with Manager(ttl=60, clock=clock) as manager:
        idle, busy = manager.create_session("user-1", "Ada"), manager.create_session("user-2", "Bob")
        clock.now += 50
        manager.increment_access(busy)
        clock.now += 20  # idle: 70 s without a write; busy: 20 s
        assert manager.expire_sessions() == 1
        with pytest.raises(SessionExpired):
            manager.get_session(idle)
        with pytest.raises(SessionExpired):
            manager.update_session(idle, "cart", "late")
        assert manager.get_session(busy).access_count == 1 and manager.get_status(idle) == "expired"
        assert manager.session_exists(idle) and manager.get_active_count() == 1


def test_the_sweeper_expires_sessions_by_itself(Manager):
    clock = Clock()
    with Manager(ttl=1, sweep_interval=0.01, clock=clock) as manager:
        ada = manager.create_session("user-1", "Ada")
        clock.now += 5
        deadline = time.monotonic() + 5
        while manager.get_status(ada) != "expired" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert manager.get_status(ada) == "expired"
        manager._stop.set()  # buggy/'s close() would close the database under the sweeper (its close-order bug)
        manager._sweeper.join()


def test_every_committed_session_survives_a_restart(Manager, tmp_path):
    path = tmp_path / "sessions.sqlite3"
    with Manager(path) as manager:
        ids = [manager.create_session(f"user-{n}", f"name {n}") for n in range(20)]
        for n, session_id in enumerate(ids):
            manager.update_session(session_id, "n", n)
            for _ in range(n):
                manager.increment_access(session_id)
        manager.set_status(ids[0], "in_progress")
        manager.delete_session(ids[1])
    with Manager(path) as reopened:
        for n, session_id in enumerate(ids):
            if n == 1:
                assert not reopened.session_exists(session_id)
                continue
            session = reopened.get_session(session_id)
            assert (dict(session.metadata), session.access_count) == ({"n": n}, n)
        assert reopened.get_status(ids[0]) == "in_progress"
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_bad_files_are_typed_errors_that_lose_nothing(Manager, tmp_path):
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("these are my notes, not sessions\n" * 100)
    with pytest.raises(StoreError, match="not a session database"):
        Manager(not_a_database)
    assert not_a_database.read_text().startswith("these are my notes")  # untouched

    with pytest.raises(StoreError, match="does not exist"):
        Manager(tmp_path / "missing" / "sessions.sqlite3")

    newer = tmp_path / "newer.sqlite3"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema version 99"):
        Manager(newer)

    corrupt = tmp_path / "corrupt.sqlite3"
    with Manager(corrupt) as manager:
        for n in range(200):
            manager.create_session(f"user-{n}", "x" * 100)
    data = bytearray(corrupt.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # a page of the table, overwritten
    corrupt.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="corrupt|not a session database"):
        with Manager(corrupt) as manager:
            for _ in range(3):
                manager.get_active_count()
                manager.expire_sessions()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write a read-only file")
def test_a_read_only_file_refuses_writes_clearly(Manager, tmp_path):
    path = tmp_path / "sessions.sqlite3"
    with Manager(path) as manager:
        manager.create_session("user-1", "Ada")
    path.chmod(0o444)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(StoreError):
            with Manager(path) as manager:
                manager.create_session("user-2", "Bob")
    finally:
        tmp_path.chmod(0o755)
        path.chmod(0o644)


def test_a_closed_manager_says_so(Manager):
    manager = Manager()
    ada = manager.create_session("user-1", "Ada")
    manager.close()
    manager.close()  # twice is fine
    with pytest.raises(SessionError, match="closed"):
        manager.get_session(ada)
    with pytest.raises(SessionError, match="closed"):
        manager.expire_sessions()


# -- Processes sharing one file, and a process killed mid-write (fixed/ only) ---------------------

PROCESSES, INCREMENTS = 4, 2500


def _count(path: str, session_id: str, start) -> None:
    from fixed import PersistentSessionManager

    with PersistentSessionManager(path) as manager:
        start.wait()
        for _ in range(INCREMENTS):
            manager.increment_access(session_id)


def test_processes_sharing_the_file_lose_no_increment(tmp_path):
    from fixed import PersistentSessionManager

    path = str(tmp_path / "shared.sqlite3")
    with PersistentSessionManager(path) as manager:
        session_id = manager.create_session("user-1", "Ada")
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [context.Process(target=_count, args=(path, session_id, start)) for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0] * PROCESSES
    with PersistentSessionManager(path) as manager:
        counted = manager.get_session(session_id).access_count
    assert counted == PROCESSES * INCREMENTS, f"{PROCESSES} processes x {INCREMENTS} increments counted {counted}"


WRITER = """
import sys
from fixed import PersistentSessionManager
manager = PersistentSessionManager(sys.argv[1])
session_id = manager.create_session("user-1", "Ada")
print(session_id, flush=True)
n = 0
while True:
    n = manager.increment_access(session_id)
    manager.update_session(session_id, "last", n)
    print(n, flush=True)  # committed: both writes returned
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_process_killed_mid_write_loses_no_committed_write(tmp_path):
    from fixed import PersistentSessionManager

    path = tmp_path / "killed.sqlite3"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    session_id = writer.stdout.readline().strip()
    committed = 0
    while committed < 300:
        committed = int(writer.stdout.readline())
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    reported = [committed] + [int(line) for line in writer.stdout.read().split()]
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with PersistentSessionManager(path) as manager:
        session = manager.get_session(session_id)
    assert session.access_count >= max(reported), f"committed {max(reported)}, found {session.access_count}"
    assert session.metadata["last"] in (session.access_count, session.access_count - 1)
