"""Deterministic checks: every interleaving of each race bug's scenario, explored by frontrun.

On buggy the search finds the bad interleaving on every run; on fixed it runs to
completion and every interleaving holds. No luck is involved either way.
"""

import pytest

from sessionlab import catalogue, implementations
from sessionlab.engines import exploration
from sessionlab.engines.exploration import threads

AVAILABLE, WHY = exploration.frontrun_available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=WHY)


def check(slug: str, impl) -> None:
    report = threads.explore(catalogue.home(slug).race, impl)
    assert report.held, f"{report.message}\n\n{report.text(width=110)}"
    assert report.complete, f"{slug}: the search stopped at its budget after {report.explored} interleavings"


@pytest.mark.lost_updates
def test_every_interleaving_of_two_updates_keeps_both_keys(impl):
    check("lost-updates", impl)


@pytest.mark.lost_increments
def test_every_interleaving_of_two_increments_counts_both(impl):
    check("lost-increments", impl)


@pytest.mark.stats_drift
def test_every_interleaving_of_a_double_logout_logs_out_once(impl):
    check("stats-drift", impl)


@pytest.mark.id_collision
def test_every_interleaving_of_two_logins_gives_two_ids(impl):
    check("id-collision", impl)


@pytest.mark.shared_snapshot
def test_every_interleaving_of_a_read_and_a_logout_keeps_the_snapshot(impl):
    check("shared-snapshot", impl)


# -- The reports themselves, on the pristine buggy/ ---------------------------------------


@pytest.fixture(scope="module")
def buggy():
    return implementations.load("buggy")


def races() -> list[str]:
    """The races whose bad interleaving ends (a deadlock is reported as a Hang: test_persistent_races)."""
    from sessionlab.bug import DEADLOCK

    return [home.bug.slug for home in catalogue.races()
            if home.bug.bug_class != DEADLOCK and home.bug.track < 4]  # track 4's: tests/test_redis_races.py


@pytest.fixture(scope="module")
def reports(buggy):
    return {slug: threads.explore(catalogue.home(slug).race, buggy) for slug in races()}


def test_the_search_is_deterministic(buggy, reports):
    again = {slug: threads.explore(catalogue.home(slug).race, buggy) for slug in races()}
    for slug, report in reports.items():
        assert (again[slug].schedule, again[slug].explored, again[slug].figure) == (
            report.schedule, report.explored, report.figure), slug
        assert report.reproduced == (3, 3), f"{slug}: replayed {report.reproduced[0]} of {report.reproduced[1]}"


def lines_of(report, thread):
    """(position in the whole interleaving, line) for every line a thread ran."""
    ran = [(step.thread, line) for step in report.steps for line in step.lines]
    return [(n, line) for n, (who, line) in enumerate(ran) if who == thread]


def first(report, thread, fragment):
    """Where in the interleaving a thread first ran a line containing fragment."""
    return next(n for n, line in lines_of(report, thread) if fragment in line.source)


def test_lost_increments_report_shows_both_reads_before_either_write(reports):
    report = reports["lost-increments"]
    assert (report.figure.expected, report.figure.got) == ("2", "1")
    read = "count = record.access_count + 1"
    write = "record.access_count = count"
    assert max(first(report, 0, read), first(report, 1, read)) < min(first(report, 0, write), first(report, 1, write))
    assert any("read _Record.access_count" in line.accesses for _, line in lines_of(report, 0))


def test_stats_drift_report_shows_both_checks_before_either_removal(reports):
    report = reports["stats-drift"]
    assert report.figure.got == "-1 active"
    check, act = "return self._sessions[session_id]", "self._sessions.pop(session_id, None)"
    assert max(first(report, 0, check), first(report, 1, check)) < min(first(report, 0, act), first(report, 1, act))


def test_id_collision_report_shows_both_logins_reading_the_counter(reports):
    report = reports["id-collision"]
    assert report.figure.got == "1 distinct id"
    read, bump = "number = self._next_id", "self._next_id = number + 1"
    assert max(first(report, 0, read), first(report, 1, read)) < min(first(report, 0, bump), first(report, 1, bump))


def test_shared_snapshot_report_shows_the_wipe_after_the_read(reports):
    report = reports["shared-snapshot"]
    assert (report.figure.expected, report.figure.got) == ("2 rows", "0 rows")
    assert first(report, 0, "MappingProxyType(self.metadata)") < first(report, 1, "record.metadata.clear()")


def test_lost_updates_report_names_the_lost_key(reports):
    report = reports["lost-updates"]
    assert report.figure.summary.endswith("was lost")
    assert report.figure.got in ("cart='3 books', theme='light'", "cart='empty', theme='dark'")
    text = report.text(width=120)
    assert "metadata = dict(record.metadata)" in text and "record.metadata = metadata" in text
    assert "sessionlab race lost-updates --impl buggy" in text


def test_cleanup_leak_is_not_a_race():
    home = catalogue.home("cleanup-leak")
    assert home.race is None and home.explore is None and not home.explorable
    assert [h.bug.slug for h in catalogue.races() if h.bug.track < 4] == [
        "lost-updates", "lost-increments", "stats-drift", "id-collision", "shared-snapshot",
        "stale-cache", "expiry-race", "lock-order-deadlock"]
