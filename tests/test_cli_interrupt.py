"""Ctrl-C ends every command within a second: status 130, one line, no traceback.

Each command is started as a learner starts it (a process of its own, not on a
terminal) and sent a real SIGINT after a short, varied delay, several times;
also while the learner's code has threads stuck on a lock.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli import lab, needs_frontrun  # noqa: F401  (lab is a fixture)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")

# Time for the interpreter to start and reach the command's own handler; a SIGINT before it is
# Python's own business (and prints Python's KeyboardInterrupt), not the lab's.
STARTUP = 0.3
BOUND = 1.0  # seconds from the signal to the end of the process
# Tries per command; a soak (20 tries each, as the lab promises) is opt-in:
# SESSIONLAB_INTERRUPT_TRIES=20 pytest tests/test_cli_interrupt.py
TRIES = int(os.environ.get("SESSIONLAB_INTERRUPT_TRIES", "1"))


def interrupt(argv: list[str], cwd: Path, delay: float) -> tuple[int, float, str]:
    env = {**os.environ, "COLUMNS": "80", "SESSIONLAB_ROOT": str(cwd)}
    child = subprocess.Popen([sys.executable, "-m", "sessionlab", *argv], cwd=cwd, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(delay)
        assert child.poll() is None, f"sessionlab {' '.join(argv)} ended before it could be interrupted"
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        try:
            _, err = child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            _, err = child.communicate()
            pytest.fail(f"sessionlab {' '.join(argv)} was still running 10 s after Ctrl-C")
        return child.returncode, time.monotonic() - sent, err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def assert_interrupts(argv: list[str], cwd: Path, seed: str) -> None:
    rng = random.Random(seed)
    for _ in range(TRIES):
        delay = STARTUP + rng.uniform(0, 1.2)
        status, took, err = interrupt(argv, cwd, delay)
        what = f"sessionlab {' '.join(argv)} interrupted after {delay:.2f} s"
        assert status == 130, f"{what}: status {status}\n{err}"
        assert took < BOUND, f"{what}: took {took:.2f} s to end\n{err}"
        assert "Traceback" not in err, f"{what}:\n{err}"
        assert err.splitlines()[-1] == "sessionlab: interrupted" and err.count("interrupted") == 1, err


@pytest.fixture
def fixed_copy(lab):
    """A working copy that is the reference: every check holds, so check --all runs long, stress included."""
    shutil.copytree(lab / "buggy", lab / "workspace", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(lab / "fixed" / "manager.py", lab / "workspace" / "manager.py")
    return lab


def test_ctrl_c_ends_demo(lab):
    assert_interrupts(["demo"], lab, "demo")


def test_ctrl_c_ends_observe(lab):
    assert_interrupts(["observe", "lost-increments", "--impl", "fixed"], lab, "observe")


@needs_frontrun
def test_ctrl_c_ends_check_all(fixed_copy):
    assert_interrupts(["check", "--all"], fixed_copy, "check")


def test_ctrl_c_ends_watch(fixed_copy):
    assert_interrupts(["watch"], fixed_copy, "watch")


@needs_frontrun
def test_ctrl_c_ends_a_check_whose_threads_are_stuck(lab):
    shutil.copytree(lab / "buggy", lab / "workspace", ignore=shutil.ignore_patterns("__pycache__"))
    manager = lab / "workspace" / "manager.py"
    text = manager.read_text()
    old = "        with self._lock:\n            record.metadata = metadata"
    assert text.count(old) == 1
    stuck = "        with self._lock, self._lock:\n            record.metadata = metadata"
    manager.write_text(text.replace(old, stuck))
    assert_interrupts(["check", "lost-updates"], lab, "stuck")  # the contract check waits 1 s for a lock
    assert_interrupts(["observe", "lost-updates"], lab, "stuck observe")
