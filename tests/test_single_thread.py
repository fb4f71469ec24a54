"""Two bugs need no second thread to show.

The cleanup leak is plain bookkeeping, and a snapshot that shares the live
metadata changes as soon as its session is logged out. Threads only turn these
into worse symptoms: a queue that grows without bound, a page render that
crashes mid-loop. These checks are deterministic on every run.
"""

import pytest

from sessionlab import api


@pytest.mark.cleanup_leak
def test_a_session_that_stored_nothing_is_released(impl):
    with impl.new_manager() as manager:
        empty = manager.create_session("u-1", "Ada")
        full = manager.create_session("u-2", "Bob")
        manager.update_session(full, "theme", "dark")
        manager.delete_session(empty)
        manager.delete_session(full)
        queued = manager.get_cleanup_queue_size()
        failed = manager.get_stats().failed_cleanups
    assert queued == 0, (
        f"cleanup-leak: 2 sessions deleted one after the other, {queued} still queued for cleanup "
        f"({failed} failed cleanup attempts); a session that stored nothing is never released"
    )


@pytest.mark.cleanup_leak
def test_logouts_past_the_threshold_do_not_look_like_a_leak(impl):
    with impl.new_manager() as manager:
        for n in range(api.LEAK_THRESHOLD + 1):
            manager.delete_session(manager.create_session(f"u-{n}", "visitor"))
        health = api.health_check(manager)
    assert not health.memory_leak_detected, (
        f"cleanup-leak: after {api.LEAK_THRESHOLD + 1} logins and logouts, "
        f"{health.cleanup_queue_size} sessions wait in the cleanup queue; health_check reports a leak"
    )


@pytest.mark.shared_snapshot
def test_a_snapshot_keeps_its_metadata_after_logout(impl):
    with impl.new_manager() as manager:
        session_id = manager.create_session("u-1", "Ada")
        manager.update_session(session_id, "cart", "3 books")
        snapshot = manager.get_session(session_id)
        manager.delete_session(session_id)
    assert dict(snapshot.metadata) == {"cart": "3 books"}, (
        f"shared-snapshot: a snapshot read before logout showed {{'cart': '3 books'}} and now shows "
        f"{dict(snapshot.metadata)}: get_session handed out the live metadata, not a copy"
    )
