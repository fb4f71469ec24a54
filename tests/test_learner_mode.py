"""pytest --impl PATH, run as a learner runs it: from another folder, on code that fails or hangs.

Each test starts pytest in a process of its own, in a folder outside the clone, with
the implementation's path given as the option's separate argument (so pytest's own
reading of the command line takes it for a path, and finds no configuration there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from variants import variant

from sessionlab import catalogue
from sessionlab.engines import exploration
from sessionlab.judge import checks

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
needs_frontrun = pytest.mark.skipif(not exploration.frontrun_available()[0], reason=exploration.frontrun_available()[1])

# A fix that takes the manager's non-reentrant lock again inside a helper: every update deadlocks.
DEADLOCKS = {"SessionManager.update_session": '''
def update_session(self, session_id, key, value):
    check_session_id(session_id)
    check_key(key)
    check_value(value)
    with self._lock:
        record = self._require(session_id)
        metadata = dict(record.metadata)
        metadata[key] = value
        check_metadata_size(metadata)
        with self._lock:
            record.metadata = metadata
'''}

# A fix of lost increments whose helper takes the lock its caller holds: every count deadlocks.
COUNT_DEADLOCKS = {"SessionManager.increment_access": '''
def increment_access(self, session_id):
    check_session_id(session_id)
    with self._lock:
        record = self._require(session_id)
        return self._count(record)

def _count(self, record):
    """Count one access. Call with the lock held."""
    with self._lock:
        record.access_count += 1
        record.last_accessed = self._clock()
        return record.access_count
'''}

# A fix of the stale cache that takes the database lock twice: every save deadlocks.
SAVE_DEADLOCKS = {"PersistentSessionManager.update_session": '''
def update_session(self, session_id, key, value):
    check_session_id(session_id)
    check_key(key)
    check_value(value)
    now = self._clock()
    with self._db_lock:
        self._check_open()
        with self._db_lock:
            with self._transaction():
                self._require_live(session_id)
                metadata = json.loads(self._db.execute(
                    "SELECT metadata FROM sessions WHERE session_id = ?", (session_id,)).fetchone()[0])
                metadata[key] = value
                check_metadata_size(metadata)
                self._db.execute("UPDATE sessions SET metadata = ?, last_update = ? WHERE session_id = ?",
                                 (json.dumps(metadata), now, session_id))
            snapshot = self._read(session_id)
    with self._cache_lock:
        self._cache[session_id] = snapshot
'''}

# One critical section, so no update is lost and stress passes; but the 65th key is stored before
# the size check refuses it. The contract, which `sessionlab check` runs first, sees it.
STORES_WHAT_IT_REFUSES = {"SessionManager.update_session": '''
def update_session(self, session_id, key, value):
    check_session_id(session_id)
    check_key(key)
    check_value(value)
    now = self._clock()
    with self._lock:
        record = self._require(session_id)
        record.metadata[key] = value
        check_metadata_size(record.metadata)
        record.last_accessed = now
'''}


def learner_pytest(cwd: Path, *args: str, seconds: float = 120) -> tuple[int, str]:
    """pytest in learner mode, in cwd; its exit status and its output."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=seconds,
                          env={**os.environ, "COLUMNS": "80", "NO_COLOR": "1"})
    return done.returncode, done.stdout + done.stderr


def failures(out: str) -> list[str]:
    """The first line of each failure's report, as learner mode prints it."""
    lines = out.split("= FAILURES =", 1)[-1].split("= verdict per bug", 1)[0].splitlines()
    return [lines[n + 1] for n, line in enumerate(lines[:-1]) if line.startswith("_") and line.endswith("_")]


def test_code_that_deadlocks_ends_the_run_by_itself_saying_where_it_waits(tmp_path):
    copy = variant(tmp_path, "mine", DEADLOCKS)
    status, out = learner_pytest(tmp_path, str(TESTS), "--impl", str(Path(copy.origin).parent),
                                 "--check-timeout", "1")
    assert status != 0, out
    assert len(failures(out)) == 3 and all(line.startswith("HANGS: ") for line in failures(out)), out
    assert "waits for self._lock at manager.py:" in out and "`with self._lock:` in update_session" in out, out
    assert "3 checks hung: the code under test deadlocks" in out, out
    assert "Traceback" not in out and "ERROR at teardown" not in out, out


@needs_frontrun
def test_a_count_that_deadlocks_ends_the_run_in_the_machine_too(tmp_path):
    """Each call of the stateful machine has a bound: the first that hangs fails the check, and is not replayed."""
    copy = variant(tmp_path, "mine", COUNT_DEADLOCKS)
    status, out = learner_pytest(tmp_path, str(TESTS / "test_stateful.py"), str(TESTS / "test_judge_route.py"),
                                 "--impl", str(Path(copy.origin).parent), "-m", "lost_increments",
                                 "--check-timeout", "1")
    assert status != 0, out
    assert len(failures(out)) == 2 and all(line.startswith("HANGS: ") for line in failures(out)), out
    assert "HANGS: a call of increment_access: your code deadlocks: thread main holds self._lock" in out, out
    assert "`with self._lock:` in _count" in out and "2. lost-increments: HANGS" in out, out


@needs_frontrun
def test_a_save_that_deadlocks_ends_the_persistent_machine(tmp_path):
    copy = variant(tmp_path, "mine", SAVE_DEADLOCKS, module="persistent.py")
    status, out = learner_pytest(tmp_path, str(TESTS / "test_stateful_persistent.py"),
                                 str(TESTS / "test_judge_route.py"), "--impl", str(Path(copy.origin).parent),
                                 "-m", "stale_cache", "--check-timeout", "1")
    assert status != 0, out
    assert len(failures(out)) == 2 and all(line.startswith("HANGS: ") for line in failures(out)), out
    assert "HANGS: calls started at once: your code deadlocks: thread 0 holds self._db_lock" in out, out
    assert "HANGS: stale-cache: your code deadlocks" in out and "7. stale-cache: HANGS" in out, out


@needs_frontrun
def test_pytest_rejects_a_fix_that_check_rejects_and_stress_misses(tmp_path):
    copy = variant(tmp_path, "mine", STORES_WHAT_IT_REFUSES)
    verdict = checks.judge(catalogue.find("lost-updates"), copy, stress_too=False)
    assert verdict.status == checks.STILL_BUGGY, verdict.evidence
    status, out = learner_pytest(tmp_path, str(TESTS / "test_stress.py"), str(TESTS / "test_judge_route.py"),
                                 "--impl", str(Path(copy.origin).parent), "-m", "lost_updates")
    assert status == 1 and "1 failed, 1 passed" in out, out  # stress holds; the judge's contract does not
    assert failures(out) == [f"STILL BUGGY: {verdict.evidence}"], out
    assert "(the check that decided: the contract, one call at a time)" in out, out


def test_a_failure_is_the_lab_s_figure_with_a_verdict_per_bug(tmp_path):
    status, out = learner_pytest(tmp_path, str(ROOT / "tests" / "test_race.py"), "--impl", "buggy",
                                 "-m", "lost_increments")
    assert status == 1, out
    assert "lost-increments: 2 increments, counted 1: 1 of 2 lost" in out, out
    assert "verdict per bug on buggy" in out and "2. lost-increments: STILL BUGGY" in out, out
    assert "\nE   " not in out and "assert False" not in out, out  # no expansion by pytest
    assert len(out.splitlines()) < 100, f"{len(out.splitlines())} lines:\n{out}"


def test_only_the_checks_run_in_learner_mode(tmp_path):
    status, out = learner_pytest(tmp_path, str(ROOT / "tests" / "test_docs.py"), str(ROOT / "tests" / "test_mirror.py"),
                                 "--impl", "fixed")
    # test_docs judges the lab's documents, not an implementation: it is left out
    assert status in (0, 5), out
    assert "deselected" in out, out


@pytest.mark.parametrize("spec", ["fixed"])
def test_the_reference_passes_its_checks(tmp_path, spec):
    status, out = learner_pytest(tmp_path, str(ROOT / "tests" / "test_single_thread.py"), "--impl", spec)
    assert status == 0, out
    assert "bugs pass every check" in out, out


@needs_frontrun
def test_a_file_that_does_not_load_fails_its_own_bugs_only_as_errors(tmp_path):
    copy = tmp_path / "mine"
    shutil.copytree(ROOT / "buggy", copy, ignore=shutil.ignore_patterns("__pycache__", "wild"))
    manager = copy / "manager.py"
    manager.write_text(manager.read_text().replace("        metadata[key] = value\n", "        metadata[key] = = value\n"))
    status, out = learner_pytest(tmp_path, str(TESTS / "test_race.py"), str(TESTS / "test_persistent_races.py"),
                                 "--impl", str(copy), "-m", "lost_updates or stale_cache")
    assert status != 0, out
    assert "1. lost-updates: ERROR" in out and "ERROR: your code did not load: SyntaxError" in out, out
    assert "7. stale-cache: STILL BUGGY" in out, out  # persistent.py loaded: its bug is found as before
