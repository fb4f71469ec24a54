"""Stress checks: each bug's scenario on real threads, with the figure it measures.

Each check runs its scenario until a round breaks, for at most the number of
rounds that makes missing a present bug less likely than one in a million
(see sessionlab/engines/stress.py). Repeat any of them with pytest-repeat: --count 50.
"""

import pytest

from sessionlab.engines import stress

# In the self-test, fixed/ runs this many rounds of each scenario rather than the checks' whole bound
# (buggy/ stops at its first broken round either way); `pytest --impl fixed` runs them all.
SELF_TEST_ROUNDS_ON_FIXED = 3


def check(slug: str, impl, request=None) -> None:
    from sessionlab import catalogue

    rounds = None
    if impl.name == "fixed" and request is not None and request.config.getoption("--impl") is None:
        rounds = SELF_TEST_ROUNDS_ON_FIXED
    scenario = catalogue.home(slug).stress
    observation = stress.observe(scenario, impl.factory(scenario.bug), implementation=impl.name, max_rounds=rounds)
    assert not observation.detected, observation.message


@pytest.mark.lost_updates
def test_concurrent_updates_of_different_keys_keep_every_key(impl, request):
    check("lost-updates", impl, request)


@pytest.mark.lost_increments
def test_concurrent_increments_are_all_counted(impl, request):
    check("lost-increments", impl, request)


@pytest.mark.cleanup_leak
def test_every_deleted_session_leaves_the_cleanup_queue(impl, request):
    check("cleanup-leak", impl, request)


@pytest.mark.stats_drift
def test_double_logouts_keep_stats_equal_to_the_store(impl, request):
    check("stats-drift", impl, request)


@pytest.mark.id_collision
def test_concurrent_logins_get_distinct_ids_owned_by_their_user(impl, request):
    check("id-collision", impl, request)


@pytest.mark.shared_snapshot
def test_snapshots_do_not_change_while_their_session_is_logged_out(impl, request):
    check("shared-snapshot", impl, request)


@pytest.mark.stale_cache
def test_concurrent_saves_leave_the_cache_equal_to_the_database(impl, request):
    check("stale-cache", impl, request)


@pytest.mark.expiry_race
def test_a_sweep_never_expires_a_session_a_request_has_just_touched(impl, request):
    check("expiry-race", impl, request)


@pytest.mark.lock_order_deadlock
def test_reads_and_counts_of_one_session_all_return(impl, request):
    from sessionlab.engines.bounded import Hang

    try:
        check("lock-order-deadlock", impl, request)
    except Hang as hang:  # the deadlock is the bug: the check failed, and says where each thread waits
        raise AssertionError(f"lock-order-deadlock: {hang.text().removeprefix('HANGS: ')}") from None


@pytest.mark.cross_process_increment
def test_processes_sharing_the_file_count_every_increment(impl, request):
    check("cross-process-increment", impl, request)


@pytest.mark.close_order
def test_closing_never_crashes_the_sweeper(impl, request):
    check("close-order", impl, request)


def test_a_round_whose_totals_hold_still_breaks_on_its_history():
    import fixed
    from sessionlab import catalogue
    from sessionlab.engines.stress import Figure, Scenario

    class MiscountingManager(fixed.SessionManager):
        """Counts every access, but reports the count one too high."""

        def increment_access(self, session_id):
            return super().increment_access(session_id) + 1

    def one_round(new_manager):
        with new_manager() as manager:
            session_id = manager.create_session("u-1", "Ada")
            manager.increment_access(session_id)
            counted = manager.get_session(session_id).access_count
        return Figure(counted == 1, "1", str(counted), f"expected 1, counted {counted}")

    scenario = Scenario(catalogue.find("lost-increments"), one_round, round_rate=1.0)
    assert one_round(MiscountingManager).held
    figure = scenario.run(MiscountingManager)
    assert not figure.held
    assert figure.summary.startswith("the totals held (expected 1, counted 1), but the recorded history of 3 calls")
    assert "returned 2" in figure.history and "should return 1" in figure.history
