"""One home per bug: each module here holds a bug's catalogue entry and its lab side.

A bug's module defines ``BUG`` (its catalogue entry) and what exposes it:
``STRESS`` (a scenario for real threads, ``sessionlab.stress``), ``RACE`` (a
scenario for deterministic exploration, ``sessionlab.race``) and ``CHECKS``
(single-thread checks: ``(name, function)`` pairs, each function taking an
implementation and returning a Figure). The engines that run them live in
their own modules and know nothing of any one bug.

Adding a bug is one module here (listed in ``sessionlab.catalogue``), one
exercise folder, and the code in buggy/ and fixed/. This package's own
namespace holds only what the bug modules and the engines share, so that an
engine can name a Bug without importing every bug.
"""

from __future__ import annotations

from dataclasses import dataclass

# Bug classes, after Lu et al., "Learning from Mistakes: A Comprehensive Study on
# Real World Concurrency Bug Characteristics" (ASPLOS 2008), plus the two classes
# a session store adds.
ATOMICITY_VIOLATION = "atomicity violation"
ORDER_VIOLATION = "order violation"
DEADLOCK = "deadlock"
RESOURCE_LEAK = "resource leak"
SECURITY = "security"


@dataclass(frozen=True)
class Bug:
    number: int
    slug: str  # the bug's name everywhere: CLI argument, FIX(<slug>) comments, exercise folder
    title: str
    bug_class: str
    track: int  # 1: in-memory SessionManager; 2: persistent manager
    mistake: str  # what the code does wrong
    symptom: str  # what a user sees
    scenario: str  # how the lab observes it
    functions: tuple[str, ...] = ()  # where the bug lives: qualified names in the module
    module: str = "manager.py"  # the file of buggy/ that holds it
    manager: str = "SessionManager"  # the class in that file whose code holds it

    @property
    def marker(self) -> str:
        """The pytest marker that selects this bug's checks: ``-m lost_increments``."""
        return self.slug.replace("-", "_")

    @property
    def exercise(self) -> str:
        """The exercise folder, relative to the repository root."""
        return f"exercises/{self.number:02d}-{self.slug}"
