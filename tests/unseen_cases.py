"""The unseen fixes' shared vocabulary: what a case is, and the sources they are built from."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass


def init(*extra: str, lock: str = "threading.Lock()") -> str:
    """buggy's SessionManager.__init__ with another lock class and some more attributes."""
    lines = "".join(f"    {line}\n" for line in extra)
    return f'''
def __init__(self, clock=time.time):
    self._clock = clock
    # Guards everything below: the store, the cleanup queue and the counters.
    self._lock = {lock}
    self._sessions = {{}}
    self._cleanup_queue = deque()
    self._closed = False
    self._total_sessions = 0
    self._active_sessions = 0
    self._cache_hits = 0
    self._cache_misses = 0
    self._failed_cleanups = 0
    self._next_id = 1
{lines}'''


def new_id(body: str, *extra: str) -> dict[str, str]:
    """An id-collision variant: _new_session_id with this body, __init__ with these attributes."""
    return {"SessionManager.__init__": init(*extra),
            "SessionManager._new_session_id": "def _new_session_id(self):\n" + textwrap.indent(
                textwrap.dedent(body).strip("\n"), "    ") + "\n"}


@dataclass(frozen=True)
class Wrong:
    slug: str
    name: str
    replacements: dict[str, str]
    status: str  # the verdict it must get
    says: tuple[str, ...]  # what the evidence must contain (case-insensitive), in the learner's terms
    judge_gap: str = ""  # why the judge gets it wrong today (the case is a strict xfail until fixed)


@dataclass(frozen=True)
class Right:
    slug: str
    name: str
    replacements: dict[str, str]
    stress: bool = False  # judged with stress too
    judge_gap: str = ""  # why the judge gets it wrong today (the case is a strict xfail until fixed)


# == Wrong fixes ==========================================================================

