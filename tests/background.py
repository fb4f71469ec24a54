"""Slow commands a test module reads, run one after the other on a thread of their own.

A module that defines ``start_in_background`` has it called by tests/conftest.py
once the tests are collected, so its commands run on the machine's other core
while the other tests run; a test then waits for the output it reads.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path


class Background:
    """Runs commands, in order, on one thread; hands each one's exit code and output to who waits for it."""

    def __init__(self, name: str, commands: Callable[[], Sequence[tuple[str, list[str]]]], *, cwd: Path,
                 env: Callable[[], dict[str, str] | None] = lambda: None, seconds: float = 300,
                 stderr: int | None = subprocess.DEVNULL):
        self._name, self._commands, self._cwd, self._env, self._seconds = name, commands, cwd, env, seconds
        self._stderr = subprocess.STDOUT if stderr is None else stderr
        self._results: dict[str, tuple[int, str]] = {}
        self._done = threading.Condition()  # guards _results; notified as each command ends
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._done:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        env = self._env()
        for key, argv in self._commands():
            try:
                done = subprocess.run(argv, cwd=self._cwd, env=env, text=True, timeout=self._seconds,
                                      stdout=subprocess.PIPE, stderr=self._stderr)
                result = (done.returncode, done.stdout)
            except subprocess.TimeoutExpired:
                result = (-1, f"did not end within {self._seconds:g} s")
            with self._done:
                self._results[key] = result
                self._done.notify_all()

    def result(self, key: str, timeout: float = 600) -> tuple[int, str]:
        """The exit code and output of one command, once it has ended."""
        self.start()
        with self._done:
            assert self._done.wait_for(lambda: key in self._results, timeout=timeout), \
                f"{key}: still running after {timeout:g} s"
            return self._results[key]
