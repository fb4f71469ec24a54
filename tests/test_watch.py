"""sessionlab watch on a terminal, as a learner sees it: a pseudo-terminal of 80 x 24, keys pressed, files saved."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_cli import apply_reference_fix, lab, needs_frontrun, run  # noqa: F401  (lab is a fixture)

from sessionlab import catalogue
from sessionlab.learner import workspace

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")

ESCAPES = re.compile(r"\033\[[0-9;?]*[A-Za-z]")


class Terminal:
    """A child process on a pseudo-terminal of a given size, and everything it wrote to it."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], columns: int = 80, rows: int = 24):
        import fcntl
        import pty
        import struct
        import termios

        self.master, self.slave = pty.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=self.slave, stdout=self.slave,
                                        stderr=self.slave, start_new_session=True)
        self.written = b""
        self._lock = threading.Lock()  # guards written, appended to by the reader
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.written += data

    @property
    def text(self) -> str:
        with self._lock:
            return self.written.decode("utf-8", "replace")

    def screen(self) -> str:
        """What the last drawing of the screen shows (after the last clear)."""
        return ESCAPES.sub("", self.text.rsplit("\033[2J", 1)[-1])

    def wait_for(self, text: str, seconds: float = 30, running: bool = True) -> None:
        """Until text is on the screen; running: the process may not end before it is."""
        deadline = time.monotonic() + seconds
        while text not in ESCAPES.sub("", self.text):
            assert (self.process.poll() is None or not running) and time.monotonic() < deadline, \
                f"no {text!r} on the screen:\n{self.screen()}"
            time.sleep(0.05)

    def press(self, key: str) -> None:
        os.write(self.master, key.encode())

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for fd in (self.master, self.slave):
            os.close(fd)


@needs_frontrun
def test_watch_stays_on_fixed_until_n_and_reports_a_regression_in_the_saved_file(capsys, lab):
    import termios

    run(capsys, "start")
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(SESSIONLAB_ROOT=str(lab), TERM="xterm")
    terminal = Terminal([sys.executable, "-m", "sessionlab", "watch", "--no-stress", "--interval", "0.1"],
                        lab, env)
    try:
        terminal.wait_for("STILL BUGGY: 1. lost-updates")
        time.sleep(0.2)  # a save in the same instant as the last look might share its timestamp
        apply_reference_fix(lab, "lost-updates")
        terminal.wait_for("*** FIXED: 1. lost-updates")
        assert "\033[2J" in terminal.text  # the screen is cleared for each run
        screen = terminal.screen()
        assert screen.rstrip().endswith("n next  h hint  l list  r recheck  q quit")
        assert f"1 of {len(catalogue.BUGS)} fixed" in screen and "[##" in screen
        time.sleep(0.5)
        assert terminal.screen() == screen  # FIXED stays on the screen: nothing is checked until a key
        terminal.press("h")
        terminal.wait_for("Hint 1 of 4 for lost-updates")
        terminal.press("n")
        terminal.wait_for("STILL BUGGY: 2. lost-increments")
        # A regression of exercise 1, saved while on exercise 2: the same file, so it is checked again.
        time.sleep(0.2)  # a save in the same instant as the last look might share its timestamp
        workspace.reset(catalogue.find("lost-updates"), workspace.Workspace(lab))
        terminal.wait_for("!!! 1. lost-updates was fixed and is STILL BUGGY again after this save")
        screen = terminal.screen()
        assert "STILL BUGGY: 2. lost-increments" in screen and f"0 of {len(catalogue.BUGS)} fixed" in screen
        terminal.press("q")
        assert terminal.process.wait(timeout=10) == 0
        assert termios.tcgetattr(terminal.slave)[3] & termios.ICANON  # the terminal is as it was
    finally:
        terminal.close()
    lines = [line for part in ESCAPES.sub("", terminal.text).split("\n") for line in part.split("\r")]
    assert max(len(line) for line in lines) <= 80, max(lines, key=len)
    assert "Traceback" not in terminal.text


def test_ctrl_c_ends_watch_on_a_terminal_and_gives_the_terminal_back(capsys, lab):
    import signal
    import termios

    run(capsys, "start")
    for name in ("manager.py", "persistent.py"):  # neither loads: each check is an ERROR at once
        path = lab / "workspace" / name
        path.write_text(path.read_text().replace("\nclass ", "\nclass (", 1))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    env.update(SESSIONLAB_ROOT=str(lab), TERM="xterm")
    terminal = Terminal([sys.executable, "-m", "sessionlab", "watch", "--interval", "0.1"], lab, env)
    try:
        terminal.wait_for("ERROR: 1. lost-updates")
        assert not termios.tcgetattr(terminal.slave)[3] & termios.ICANON  # keys without Enter while it runs
        terminal.process.send_signal(signal.SIGINT)
        assert terminal.process.wait(timeout=10) == 130
        assert termios.tcgetattr(terminal.slave)[3] & termios.ICANON
        terminal.wait_for("sessionlab: interrupted", seconds=2, running=False)
    finally:
        terminal.close()
    assert "Traceback" not in terminal.text
