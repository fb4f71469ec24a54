"""Three bugs show without a second thread.

The cleanup leak is plain bookkeeping; a snapshot that shares the live metadata
changes as soon as its session is logged out; and sequential session ids can be
guessed by anyone who sees their own. Threads only make these worse: a queue
that grows without bound, a page render that crashes mid-loop, two users handed
one id. These checks are deterministic on every run.
"""

import pytest

from sessionlab import checks


def check(function, impl) -> None:
    figure = function(impl)
    slug = function.__doc__.split(":")[0]
    assert figure.held, f"{slug}: {figure.summary}"


@pytest.mark.cleanup_leak
def test_a_session_that_stored_nothing_is_released(impl):
    check(checks.released_after_logout, impl)


@pytest.mark.cleanup_leak
def test_logouts_past_the_threshold_do_not_look_like_a_leak(impl):
    check(checks.no_leak_past_threshold, impl)


@pytest.mark.shared_snapshot
def test_a_snapshot_keeps_its_metadata_after_logout(impl):
    check(checks.snapshot_kept_after_logout, impl)


@pytest.mark.id_collision
def test_your_own_id_does_not_lead_to_anyone_elses(impl):
    check(checks.ids_not_guessable, impl)


def test_neighbours_move_every_number_in_an_id():
    assert checks.neighbours("sess-000041") == [
        "sess-000038", "sess-000039", "sess-000040", "sess-000042", "sess-000043", "sess-000044"]
    assert checks.neighbours("a1b") == ["a0b", "a2b", "a3b", "a4b"]
    assert checks.neighbours("no-digits") == []
