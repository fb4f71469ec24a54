"""The bug catalogue: the one list of bugs that tests, command line and docs read."""

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
    functions: tuple[str, ...] = ()  # where the bug lives: qualified names in manager.py

    @property
    def marker(self) -> str:
        """The pytest marker that selects this bug's checks: ``-m lost_increments``."""
        return self.slug.replace("-", "_")

    @property
    def exercise(self) -> str:
        """The exercise folder, relative to the repository root."""
        return f"exercises/{self.number:02d}-{self.slug}"


BUGS: tuple[Bug, ...] = (
    Bug(
        number=1,
        slug="lost-updates",
        title="Lost updates",
        bug_class=ATOMICITY_VIOLATION,
        track=1,
        mistake=(
            "update_session copies the session's metadata under the lock, edits and validates "
            "the copy outside it, then stores the whole copy back"
        ),
        symptom="two requests save different keys at once and one of the keys disappears",
        scenario=(
            "100 steps; in each, 10 threads set 10 different keys of a fresh session at once; "
            "every step must end with all 10 keys"
        ),
        functions=("SessionManager.update_session",),
    ),
    Bug(
        number=2,
        slug="lost-increments",
        title="Lost increments",
        bug_class=ATOMICITY_VIOLATION,
        track=1,
        mistake=(
            "increment_access reads the count under the lock, then computes and writes "
            "count + 1 after releasing it"
        ),
        symptom="the access counter falls behind the number of requests served",
        scenario="20 threads x 50 increments of one session, stepping together; the count must reach 1000",
        functions=("SessionManager.increment_access",),
    ),
    Bug(
        number=3,
        slug="cleanup-leak",
        title="Cleanup-queue leak",
        bug_class=RESOURCE_LEAK,
        track=1,
        mistake=(
            "cleanup treats a release that freed nothing as a failure and requeues it; a session "
            "with no metadata frees nothing, so it is retried forever"
        ),
        symptom="memory grows with every logout of a session that stored nothing",
        scenario=(
            "10 threads x 100 logins and logouts, every other user storing one preference; "
            "the cleanup queue must end empty"
        ),
        functions=("SessionManager._run_cleanup",),
    ),
    Bug(
        number=4,
        slug="stats-drift",
        title="Stats drift",
        bug_class=ATOMICITY_VIOLATION,
        track=1,
        mistake=(
            "delete_session checks that the session exists in one critical section and removes "
            "it in another, and decrements the active count outside both"
        ),
        symptom="the dashboard's active-session count drifts from the truth; health reports a discrepancy",
        scenario=(
            "4 threads log out the same 500 sessions (a logout clicked in several tabs); "
            "get_stats().active_sessions must equal get_active_count()"
        ),
        functions=("SessionManager.delete_session",),
    ),
    Bug(
        number=5,
        slug="id-collision",
        title="Session-id collision",
        bug_class=SECURITY,
        track=1,
        mistake=(
            "session ids come from a shared counter that is read and bumped without the lock, "
            "and they are sequential, so anyone can guess the next one"
        ),
        symptom="two users get the same session: one sees the other's data, one logout logs both out",
        scenario=(
            "10 threads x 100 logins by distinct users; every id must be distinct and "
            "belong to the user who logged in with it"
        ),
        functions=("SessionManager.__init__", "SessionManager._new_session_id"),
    ),
    Bug(
        number=6,
        slug="shared-snapshot",
        title="Shared snapshot",
        bug_class=ATOMICITY_VIOLATION,
        track=1,
        mistake=(
            "get_session wraps the live metadata dict in a read-only view instead of copying it; "
            "logout wipes that dict in place"
        ),
        symptom=(
            "a page rendered while the user logs out in another tab crashes with "
            "'dictionary changed size during iteration' or shows half the data"
        ),
        scenario=(
            "200 steps; in each, 4 threads render a session's metadata twice from one snapshot "
            "while another thread logs the session out; both renders must agree"
        ),
        functions=("_Record.snapshot", "SessionManager._release"),
    ),
)

_BY_SLUG = {bug.slug: bug for bug in BUGS}


class UnknownBug(LookupError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        known = ", ".join(bug.slug for bug in BUGS)
        return f"no bug named {self.name!r}; the catalogue has: {known}"


def find(name: str | int) -> Bug:
    """Look a bug up by slug, marker name (lost_updates) or number."""
    key = str(name).strip().lower().replace("_", "-")
    if key.isdigit():
        for bug in BUGS:
            if bug.number == int(key):
                return bug
    elif key in _BY_SLUG:
        return _BY_SLUG[key]
    raise UnknownBug(str(name))


def track(number: int) -> tuple[Bug, ...]:
    return tuple(bug for bug in BUGS if bug.track == number)
