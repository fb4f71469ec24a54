"""What the command prints: colour, progress lines, tables that fit, JSON.

Colour only on a terminal, and never with NO_COLOR set. Progress goes to stderr:
on a terminal one self-erasing line, updated as the work goes; off a terminal
(a log, a CI job) one plain line for each phase that runs longer than two
seconds, so a slow run is never silent and a quick one never noisy.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

# -- Colour --------------------------------------------------------------------------------

_CODES = {"red": "31", "green": "32", "yellow": "33", "magenta": "35", "bold": "1", "dim": "2"}

# The verdict words, each with its colour.
VERDICT_COLOURS = {"FIXED": "green", "STILL BUGGY": "red", "ERROR": "magenta", "HANGS": "yellow",
                   "UNPROVEN": "yellow", "BROKE": "red", "held": "green", "HOLDS": "green"}


def colour_enabled(stream: TextIO | None = None) -> bool:
    """Colour on a terminal only; NO_COLOR (any value) or TERM=dumb turns it off."""
    if os.environ.get("NO_COLOR") is not None or os.environ.get("TERM") == "dumb":
        return False
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def paint(text: str, colour: str, stream: TextIO | None = None) -> str:
    if not text or not colour_enabled(stream):
        return text
    return f"\033[{_CODES[colour]}m{text}\033[0m"


def verdict_word(word: str, stream: TextIO | None = None) -> str:
    return paint(word, VERDICT_COLOURS.get(word, "bold"), stream)


# -- Width and tables -----------------------------------------------------------------------


def width() -> int:
    """Columns to fit: the terminal's, or COLUMNS, or 80 off a terminal; never under 40."""
    return max(40, shutil.get_terminal_size((80, 24)).columns)


def wrap(text: str, columns: int, indent: str = "", first: str | None = None) -> list[str]:
    """Wrap at spaces only: a long word (a path, a slug) stays whole on a line of its own."""
    first = indent if first is None else first
    return textwrap.wrap(text, max(10, columns), initial_indent=first, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [first.rstrip()]


# Joins two words of a table cell that must stay on one line: "(round" GLUE "3)".
GLUE = "\xa0"


def table(rows: Sequence[Sequence[str]], columns: int | None = None, indent: str = "  ") -> list[str]:
    """Rows laid out in columns within the width; cells wrap at spaces (not GLUE), never inside a word."""
    columns = columns or width()
    # A column with nothing in it (list's "->" once every exercise is fixed) takes no room.
    filled = [i for i in range(len(rows[0])) if any(row[i] for row in rows)]
    rows = [[row[i] for i in filled] for row in rows]
    if not filled:
        return []
    count = len(filled)
    natural = [max(len(row[i]) for row in rows) for i in range(count)]
    # A column may shrink down to its longest word.
    floor = [max((len(word) for row in rows for word in row[i].split(" ")), default=0) for i in range(count)]
    sizes = list(natural)
    room = columns - len(indent) - 2 * (count - 1)
    while sum(sizes) > room:
        shrinkable = [i for i in range(count) if sizes[i] > floor[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: sizes[i])
        sizes[widest] -= 1
    lines = []
    for row in rows:
        cells = [textwrap.wrap(cell, sizes[i], break_long_words=False, break_on_hyphens=False) or [""]
                 for i, cell in enumerate(row)]
        for n in range(max(len(cell) for cell in cells)):
            parts = [(cell[n] if n < len(cell) else "").ljust(sizes[i]) for i, cell in enumerate(cells)]
            lines.append((indent + "  ".join(parts)).rstrip().replace(GLUE, " "))
    return lines


def indented(text: str, prefix: str, columns: int | None = None) -> list[str]:
    """Each line of text behind prefix; with columns, a longer line wraps at spaces, indented a little more."""
    lines = []
    for line in text.splitlines():
        if columns and len(prefix + line) > columns and " " in line.strip():
            lead = line[: len(line) - len(line.lstrip())]
            lines += wrap(line.strip(), columns, prefix + lead + "  ", prefix + lead)
        else:
            lines.append((prefix + line).rstrip())
    return lines


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


# -- Progress ------------------------------------------------------------------------------

# Off a terminal, a phase still running after this long gets its one line.
QUIET_SECONDS = 2.0


class Progress:
    """Progress on stderr: a self-erasing line on a terminal, one line per slow phase off it."""

    def __init__(self, stream: TextIO | None = None, quiet_seconds: float = QUIET_SECONDS):
        self.stream = stream or sys.stderr
        try:
            self.terminal = self.stream.isatty()
        except (AttributeError, ValueError):
            self.terminal = False
        self.quiet_seconds = quiet_seconds
        self.width = 0
        self._lock = threading.Lock()  # guards width and the phase below, written by the timer too
        self._phase = ""
        self._started = 0.0
        self._announced = False
        self._timer: threading.Timer | None = None

    # A phase is one piece of work with a name: "lost-updates on buggy".
    def phase(self, label: str) -> None:
        self.end()
        with self._lock:
            self._phase, self._started, self._announced = label, time.monotonic(), False
        if self.terminal:
            self.show(f"  {label} ...")
        else:
            timer = threading.Timer(self.quiet_seconds, self._announce)
            timer.daemon = True
            self._timer = timer
            timer.start()

    def _announce(self) -> None:
        with self._lock:
            if self._announced or not self._phase:
                return
            self._announced = True
            label = self._phase
        self._write(f"sessionlab: {label} ...\n")

    def show(self, text: str) -> None:
        """Update the line (on a terminal); off one, the phase's line appears once it is slow."""
        if self.terminal:
            with self._lock:
                text = text[: max(10, width() - 1)]
                pad = max(0, self.width - len(text))
                self.width = len(text)
            self._write("\r" + text + " " * pad)
        elif self._phase and not self._announced and time.monotonic() - self._started > self.quiet_seconds:
            self._announce()

    def rounds(self, label: str) -> Callable[[int, int], None]:
        self.phase(label)
        return lambda done, total: self.show(f"  {label}: round {done} of at most {total}")

    def end(self) -> None:
        """The phase is over: cancel its line if it was not printed yet, erase it on a terminal."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        with self._lock:
            self._phase = ""
            erase, self.width = self.width, 0
        if self.terminal and erase:
            self._write("\r" + " " * erase + "\r")

    clear = end

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass
