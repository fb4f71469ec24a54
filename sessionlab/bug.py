"""What the lab knows of one bug: its catalogue entry, and the classes bugs fall in.

Each bug's entry is written in its home under ``sessionlab/bugs/``;
``sessionlab.catalogue`` lists them. The engines, the reports and the judge
name a bug with this type and need nothing else of the catalogue.
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
    track: int  # 1: in-memory SessionManager; 2: persistent manager; 4: Redis nodes (3 is the stores in the wild)
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
