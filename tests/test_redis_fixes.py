"""Track 4's checks on fixes nobody wrote into the reference: right ones hold, wrong ones are caught.

Each fix is one method of buggy/redis_store.py rewritten the way a learner
writes it (tests/redis_variants.py), judged by its bug's deterministic check on
a real Redis: the order of two nodes' commands, or a node that dies after
each of its packets. Two run by default; ``pytest --slow`` runs them all.
"""

from __future__ import annotations

import pytest
from redis_variants import RIGHT, WRONG, variant

from sessionlab import catalogue
from sessionlab.bugs import ttl_second_step
from sessionlab.engines import exploration
from sessionlab.engines.exploration import threads

AVAILABLE, WHY = exploration.frontrun_available()
pytestmark = [pytest.mark.skipif(not AVAILABLE, reason=WHY),
              pytest.mark.filterwarnings("ignore:Call WATCH from a Pipeline object")]
DEFAULT = {"a logout that counts what DEL deleted", "MULTI without WATCH"}


def judged(bug: str, implementation) -> tuple[bool, str]:
    """Whether the bug's deterministic check held on the implementation (complete), and its message."""
    if bug == "ttl-second-step":
        figure = ttl_second_step.a_node_that_dies_leaves_no_session_without_expiry(implementation)
        return figure.held, figure.summary
    if bug == "resurrected-logout":
        report = threads.explore(catalogue.home(bug).race, implementation)
        if report.held:
            from sessionlab.bugs import resurrected_logout

            report = threads.explore(resurrected_logout.COUNTED, implementation)
    else:
        report = threads.explore(catalogue.home(bug).race, implementation)
    return report.held and report.complete, report.message


def marks(name: str) -> list:
    return [] if name in DEFAULT else [pytest.mark.slow]


@pytest.mark.parametrize("name", [pytest.param(name, marks=marks(name)) for name in RIGHT])
def test_a_right_fix_holds(tmp_path, redis_url, name):
    bug, method, source = RIGHT[name]
    held, message = judged(bug, variant(tmp_path / "fix", method, source))
    assert held, f"{name}: {message}"


@pytest.mark.parametrize("name", [pytest.param(name, marks=marks(name)) for name in WRONG])
def test_a_wrong_fix_is_caught(tmp_path, redis_url, name):
    bug, method, source = WRONG[name]
    held, message = judged(bug, variant(tmp_path / "fix", method, source))
    assert not held, f"{name} passed {bug}'s check: {message}"
