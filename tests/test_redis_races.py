"""Track 4 across nodes: each bug's scenario under every interleaving of two nodes' Redis commands.

Two nodes (app servers with their own connection pools) share one throwaway
redis-server; frontrun sees every command each node sends (its Redis key-level
detection of redis-py's execute_command and pipelines) and explores every
meaningfully different order of them. On buggy each search finds its bad
order, and replays it; on fixed it runs to completion and every order holds.
Without redis-server the tests skip, saying how to install it.
"""

from __future__ import annotations

import pytest

from sessionlab import catalogue, implementations
from sessionlab.bugs import resurrected_logout, ttl_second_step
from sessionlab.engines import exploration
from sessionlab.engines.exploration import threads

AVAILABLE, WHY = exploration.frontrun_available()
pytestmark = [pytest.mark.skipif(not AVAILABLE, reason=WHY),
              # buggy's logout calls the client's WATCH, which redis-py warns about: the bug's warning
              pytest.mark.filterwarnings("ignore:Call WATCH from a Pipeline object")]

RACES = ("session-overwrite", "counter-get-set", "resurrected-logout", "watch-shared-connection")


_EXPLORED: dict = {}  # (bug, implementation): its report, so the reports below reuse the searches above


def explored(slug: str, impl):
    key = (slug, impl.name, impl.origin)
    if key not in _EXPLORED:
        _EXPLORED[key] = threads.explore(catalogue.home(slug).race, impl)
    return _EXPLORED[key]


def holds(report) -> None:
    assert report.held, f"{report.message}\n\n{report.text(width=110)}"
    assert report.complete, f"{report.bug.slug}: the search stopped at its budget after {report.explored}"
    # What HOLDS is over: the implementation's code, and every command redis-py sent, its code untraced.
    assert "every Redis command of both nodes seen as the server ran it (redis-py's own code not traced)" \
        in report.scope, report.scope


@pytest.mark.session_overwrite
def test_every_order_of_two_nodes_updates_keeps_both_keys(impl, redis_url):
    holds(explored("session-overwrite", impl))


@pytest.mark.counter_get_set
def test_every_order_of_two_nodes_increments_counts_both(impl, redis_url):
    holds(explored("counter-get-set", impl))


@pytest.mark.resurrected_logout
def test_every_order_of_a_save_and_a_logout_on_two_nodes_stays_logged_out(impl, redis_url):
    holds(explored("resurrected-logout", impl))


@pytest.mark.resurrected_logout
def test_every_order_of_a_count_and_a_logout_on_two_nodes_stays_logged_out(impl, redis_url):
    figure = resurrected_logout.a_count_beside_a_logout(impl)
    assert figure.held, f"{figure.summary}\n\n{figure.history}"


@pytest.mark.watch_shared_connection
def test_every_order_of_two_nodes_logouts_logs_out_once(impl, redis_url):
    holds(explored("watch-shared-connection", impl))


@pytest.mark.ttl_second_step
def test_a_node_that_dies_between_any_two_commands_leaves_no_session_without_expiry(impl, redis_url):
    figure = ttl_second_step.a_node_that_dies_leaves_no_session_without_expiry(impl)
    assert figure.held, figure.summary


# -- What the searches report on the pristine buggy/ -------------------------------------------

WORDS = {
    "session-overwrite": "the update of",
    "counter-get-set": "Redis counted 1; the calls returned [1, 1]",
    "resurrected-logout": "Redis holds the session's hash again",
    "watch-shared-connection": "answered logged out and logged out",
}


FIRST = {  # a command the losing order shows from node 1
    "session-overwrite": "HGETALL s",
    "counter-get-set": "HGET s access_count",
    "resurrected-logout": "DEL s",
    "watch-shared-connection": "DEL s",
}


@pytest.fixture(scope="module")
def buggy_reports(redis_url):
    buggy = implementations.load("buggy")
    return {slug: explored(slug, buggy) for slug in RACES}


@pytest.mark.parametrize("slug", RACES)
def test_each_race_is_found_on_buggy_with_its_figure_and_replays(buggy_reports, slug):
    report = buggy_reports[slug]
    assert not report.held and WORDS[slug] in report.figure.summary, report.text(width=110)
    assert report.reproduced == (3, 3), report.reproduced  # the schedule, replayed, breaks every time
    text = report.text(width=80)
    # Each node's commands, in the order the server ran them; the session id never shown.
    assert "in the order the server ran them (s is the session):" in text, text
    assert "  node 0 │ " in text and "  node 1 │ " in text, text
    assert f"node 1 │ {FIRST[slug]}" in text, text


def test_the_search_on_buggy_is_deterministic(buggy_reports):
    buggy = implementations.load("buggy")
    slug = "counter-get-set"
    again = threads.explore(catalogue.home(slug).race, buggy)
    assert (again.explored, again.schedule) == (buggy_reports[slug].explored, buggy_reports[slug].schedule)


def test_a_node_that_dies_after_its_hset_leaves_a_session_that_never_expires_on_buggy(redis_url):
    figure = ttl_second_step.a_node_that_dies_leaves_no_session_without_expiry(implementations.load("buggy"))
    assert not figure.held and "never expires" in figure.summary and "PTTL -1" in figure.summary, figure.summary
