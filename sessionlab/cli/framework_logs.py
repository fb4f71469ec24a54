"""What the code under test logs while the lab runs it: counted and summed up, not printed.

A framework logs what it met under concurrency (cachelib's file cache warns, with a traceback,
about a session file another request removed); logged through the root logger with no handler,
every such record would be a traceback in the middle of a verdict. While a command runs, the root
logger has this collector instead, and the command ends with one line that says what was logged.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

# How much of a logged message the summary quotes.
QUOTED = 70


class Collector(logging.Handler):
    """Keeps a count of records by logger and level, and the first message of each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.first: dict[tuple[str, str], tuple[str, str]] = {}  # the first message, and its exception

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, record.levelname.lower())
        self.counts[key] += 1
        if key not in self.first:
            message = record.getMessage().splitlines()[0] if record.getMessage() else ""
            error = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
            self.first[key] = (message, error)

    def summary(self) -> list[str]:
        lines = []
        for (name, level), count in self.counts.most_common():
            message, error = self.first[(name, level)]
            if len(message) > QUOTED:
                message = message[: QUOTED - 3] + "..."
            if error:
                message += f" ({error})"
            who = "the code under test" if name == "root" else f"logger {name!r}"
            lines.append(f"sessionlab: {who} logged {count} {level}{'s' if count != 1 else ''} "
                         f"while it ran, the first: {message}")
        return lines


@contextmanager
def collected() -> Iterator[Collector]:
    """While the block runs, records that reach the root logger are counted, not printed."""
    root = logging.getLogger()
    collector = Collector()
    root.addHandler(collector)  # with a handler in place, logging.warning() adds no stderr handler
    try:
        yield collector
    finally:
        root.removeHandler(collector)
