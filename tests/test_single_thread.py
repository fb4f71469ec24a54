"""Three bugs show without a second thread.

The cleanup leak is plain bookkeeping; a snapshot that shares the live metadata
changes as soon as anything writes to its session; and predictable session ids
can be guessed by anyone who sees their own. Threads only make these worse: a
queue that grows without bound, a page render that crashes mid-loop, two users
handed one id. These checks are deterministic on every run, and so is one more
that needs a second thread only to slip a logout in at the moment get_session
releases its lock.
"""

import pytest

from sessionlab.bugs import cleanup_leak, id_collision, shared_snapshot


def check(function, impl) -> None:
    figure = function(impl)
    slug = function.__doc__.split(":")[0]
    assert figure.held, f"{slug}: {figure.summary}"


@pytest.mark.cleanup_leak
def test_a_session_that_stored_nothing_is_released(impl):
    check(cleanup_leak.released_after_logout, impl)


@pytest.mark.cleanup_leak
def test_logouts_past_the_threshold_do_not_look_like_a_leak(impl):
    check(cleanup_leak.no_leak_past_threshold, impl)


@pytest.mark.cleanup_leak
def test_a_deleted_session_leaves_no_memory_behind(impl):
    check(cleanup_leak.no_memory_retained, impl)


@pytest.mark.shared_snapshot
def test_a_snapshot_keeps_its_metadata_after_logout(impl):
    check(shared_snapshot.snapshot_kept_after_logout, impl)


@pytest.mark.shared_snapshot
def test_a_snapshot_survives_every_kind_of_write(impl):
    check(shared_snapshot.snapshot_survives_every_writer, impl)


@pytest.mark.shared_snapshot
def test_a_snapshot_is_made_before_get_session_releases_its_lock(impl):
    check(shared_snapshot.snapshot_made_before_the_lock_is_released, impl)


@pytest.mark.id_collision
def test_no_id_can_be_predicted_from_other_users_ids(impl):
    check(id_collision.ids_not_predictable, impl)


def test_the_figures_on_buggy():
    from sessionlab import implementations

    buggy = implementations.load("buggy")
    assert cleanup_leak.released_after_logout(buggy).got == "1 queued"
    memory = cleanup_leak.no_memory_retained(buggy)
    assert not memory.held and "in the cleanup queue" in memory.summary
    writers = shared_snapshot.snapshot_survives_every_writer(buggy)
    assert writers.got == "metadata changed" and "delete_session (logout)" in writers.summary
    released = shared_snapshot.snapshot_made_before_the_lock_is_released(buggy)
    assert released.got == "metadata changed" and "{'cart': '3 books', 'theme': 'dark'} became {}" in released.summary
    fixed = shared_snapshot.snapshot_made_before_the_lock_is_released(implementations.load("fixed"))
    assert fixed.got == "unchanged" and "(1 release tried)" in fixed.summary
