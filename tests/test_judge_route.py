"""The judge through pytest: `pytest --impl COPY -m MARKER` runs every check `sessionlab check` runs.

One test per bug, carrying the bug's marker, runs the judge (sessionlab.judge.checks.judge)
on the implementation under test. It fails unless the verdict is FIXED, with the verdict's
word first (ERROR, HANGS, STILL BUGGY, UNPROVEN), its evidence, and the detail of the check
that decided it: the interleaving, the history, where each thread waits. Without frontrun,
a verdict left UNPROVEN is a skip with the reason.

In the self-test it costs little: on the pristine buggy/ the judge stops at the first check
that breaks (a strict expected failure, as for every check of a bug), and on fixed/ it runs
whole for one bug only (tests/test_fixes.py and tests/test_unseen_fixes.py judge correct
fixes of every bug; `pytest --impl fixed` runs it for every bug).
"""

from __future__ import annotations

import pytest

from sessionlab import catalogue
from sessionlab.engines import exploration
from sessionlab.judge import checks
from sessionlab.servers import redis_server

# The bug whose whole judge runs on fixed/ in the self-test: a quick one.
SELF_TEST_ON_FIXED = {"stats-drift"}


def judge_bound(bug: catalogue.Bug) -> float:
    """The longest the judge can take on a bug: every check's own bound (the contract's at its
    most paced). The judge bounds each check itself; this only backs it up."""
    bounds = [check.seconds for check in checks.checks_for(catalogue.home(bug))]
    return sum(bounds) + checks.CONTRACT_MOST


def decided_by(verdict: checks.Verdict) -> checks.Result | None:
    """The result that decided a verdict that is not FIXED (the one its evidence comes from)."""
    for outcome in (checks.RAISED, checks.HUNG, checks.BROKE, checks.SKIPPED):
        for result in verdict.results:
            if result.outcome == outcome and (outcome != checks.SKIPPED or result.check.decides):
                return result
    return None


def failure(verdict: checks.Verdict) -> str:
    """The verdict as the check's failure: its word, its evidence, then the decisive check's detail."""
    lines = [f"{verdict.status}: {verdict.evidence}"]
    decided = decided_by(verdict)
    if decided is not None:
        lines.append(f"(the check that decided: {decided.check.name})")
        if decided.detail:
            lines += ["", decided.detail]
    return "\n".join(lines)


@pytest.mark.parametrize("bug", [
    pytest.param(bug, id=bug.slug, marks=[getattr(pytest.mark, bug.marker), pytest.mark.timeout(judge_bound(bug))])
    for bug in catalogue.BUGS])
def test_the_judge_finds_the_bug_fixed(impl, bug, request):
    if impl.name == "fixed" and request.config.getoption("--impl") is None and bug.slug not in SELF_TEST_ON_FIXED:
        pytest.skip(f"the self-test judges fixed/ whole on {', '.join(sorted(SELF_TEST_ON_FIXED))} only "
                    "(pytest --impl fixed judges every bug)")
    if bug.track == 4 and redis_server.missing():
        pytest.skip(redis_server.missing())
    verdict = checks.judge(bug, impl)
    if verdict.status == checks.UNPROVEN and not exploration.frontrun_available()[0]:
        pytest.skip(f"{checks.UNPROVEN}: {verdict.evidence}")
    if verdict.status != checks.FIXED:
        raise AssertionError(failure(verdict))
