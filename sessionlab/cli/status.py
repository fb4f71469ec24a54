"""Exit statuses, verdict words and the one-line errors every command reports (standard library only:
the command line imports this before anything else, so that Ctrl-C is caught from the start)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# Exit statuses. A verdict has its own; for several bugs the worst one counts.
EXIT_OK = EXIT_FIXED = 0
EXIT_STILL_BUGGY = 1  # also: demo found the lab itself broken
EXIT_USAGE = 2
EXIT_ERROR = 3  # the code did not load, or raised
EXIT_HANGS = 4
EXIT_UNPROVEN = 5  # also: race where deterministic exploration is unavailable
EXIT_INTERNAL = 70  # a bug in the lab itself
EXIT_INTERRUPTED = 130

FIXED, STILL_BUGGY, ERROR, HANGS, UNPROVEN = "FIXED", "STILL BUGGY", "ERROR", "HANGS", "UNPROVEN"
# Worst first: the status a run of several verdicts reports.
SEVERITY = (ERROR, HANGS, STILL_BUGGY, UNPROVEN, FIXED)
EXIT_FOR = {FIXED: EXIT_FIXED, STILL_BUGGY: EXIT_STILL_BUGGY, ERROR: EXIT_ERROR, HANGS: EXIT_HANGS,
            UNPROVEN: EXIT_UNPROVEN}

EXIT_STATUSES = """\
exit status:
  0    FIXED (race: every interleaving holds; other commands: done)
  1    STILL BUGGY: a check broke (race: an interleaving broke it)
  2    usage error: an unknown bug, a missing working copy, a bad option
  3    ERROR: your code did not load, or raised where no error is allowed
  4    HANGS: your code did not finish within a check's bound
  5    UNPROVEN: every check that ran held, but one that decides could not run
       here
  70   a bug in the lab itself
  130  interrupted (Ctrl-C)
  For several bugs (check --all) the worst counts: ERROR, HANGS, STILL BUGGY,
  UNPROVEN, FIXED."""


def worst(statuses: list[str]) -> str:
    return min(statuses, key=SEVERITY.index) if statuses else FIXED


class CommandError(Exception):
    """A problem to report in one line (or as {"error": ...} under --json) and an exit status."""

    def __init__(self, message: str, status: int = EXIT_USAGE, kind: str = "usage", **extra: Any):
        super().__init__(message)
        self.message, self.status, self.kind, self.extra = message, status, kind, extra

    def as_json(self) -> dict:
        return {"error": {"kind": self.kind, "message": self.message, "exit": self.status, **self.extra}}


def report_error(args: argparse.Namespace | None, error: CommandError) -> int:
    if args is not None and getattr(args, "json", False):
        print(json.dumps(error.as_json(), indent=2))
    else:
        print(f"sessionlab: {error.message}", file=sys.stderr)
        detail = error.extra.get("detail")
        if detail:
            print("\n".join("  " + line for line in detail.splitlines()), file=sys.stderr)
    return error.status
