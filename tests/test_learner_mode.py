"""pytest --impl PATH, run as a learner runs it: from another folder, on code that fails or hangs.

Each test starts pytest in a process of its own, in a folder outside the clone, with
the implementation's path given as the option's separate argument (so pytest's own
reading of the command line takes it for a path, and finds no configuration there).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from variants import variant

ROOT = Path(__file__).resolve().parent.parent

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


def learner_pytest(cwd: Path, *args: str, seconds: float = 120) -> tuple[int, str]:
    """pytest in learner mode, in cwd; its exit status and its output."""
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=seconds,
                          env={**os.environ, "COLUMNS": "80", "NO_COLOR": "1"})
    return done.returncode, done.stdout + done.stderr


def test_code_that_deadlocks_ends_the_run_by_itself_saying_where_it_waits(tmp_path):
    copy = variant(tmp_path, "mine", DEADLOCKS)
    status, out = learner_pytest(tmp_path, str(ROOT / "tests"), "--impl", str(Path(copy.origin).parent),
                                 "--check-timeout", "1")
    assert status != 0, out
    assert out.count("HANGS: Timeout") == 3, out
    assert "waits at manager.py" in out and "`with self._lock:` in update_session" in out, out
    assert "3 checks hung: the code under test deadlocks" in out, out
    assert "Traceback" not in out, out


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
