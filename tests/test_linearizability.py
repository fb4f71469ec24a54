"""The sequential model and the linearizability checker.

Hand-written histories, each with known answers, pin down the checker: the
ones that are linearizable (including calls whose only valid order is not the
order they were invoked in) and one per bug shape that is not, with the call
and the figures the explanation must name. Histories recorded from real
threads on ``fixed`` must always be linearizable; on ``buggy`` the recorder
must simply work (whether a free-running run breaks is luck, so it is not
asserted here).
"""

from __future__ import annotations

import threading
from types import MappingProxyType

import pytest

import buggy
import fixed
from sessionlab import api
from sessionlab.api import InvalidInput, Session, SessionError, SessionNotFound
from sessionlab.engines.linearizability.checker import check
from sessionlab.engines.linearizability.history import Operation
from sessionlab.engines.linearizability.model import (
    ContractViolation, Outcome, SessionModel, SessionState, step)
from sessionlab.engines.linearizability.recording import HistoryRecorder, RecordingManager
from sessionlab.engines.stress import record_mixed_run


def call(thread: str, name: str, *args, result=None, error=None, at: tuple[int, int]) -> Operation:
    """One call, with its invocation and return times given in microseconds."""
    start, end = at
    return Operation(thread, name, args, result, error, start * 1000, end * 1000)


def snapshot(session_id: str, count: int = 0, metadata: dict | None = None,
             user_id: str = "u-1", username: str = "Ada") -> Session:
    return Session(session_id, user_id, username, True, count,
                   MappingProxyType(dict(metadata or {})), 1.0, 1.0)


def login(session_id: str = "s1", at=(0, 1), thread: str = "main",
          user_id: str = "u-1", username: str = "Ada") -> Operation:
    return call(thread, "create_session", user_id, username, result=session_id, at=at)


# -- The model -------------------------------------------------------------------------


def test_model_follows_the_contract_one_call_at_a_time():
    model = SessionModel()
    model.create_session("s1", "u-1", "Ada")
    assert model.increment_access("s1") == 1
    assert model.increment_access("s1") == 2
    model.update_session("s1", "theme", "dark")
    model.update_session("s1", "cart", 3)
    assert model.get_session("s1") == SessionState(
        "u-1", "Ada", is_authenticated=True, access_count=2,
        metadata=(("cart", 3), ("theme", "dark")),
    )
    assert model.get_active_count() == 1
    model.delete_session("s1")
    assert model.get_active_count() == 0
    assert model.session_ids == frozenset()
    for method, args in [("get_session", ()), ("increment_access", ()),
                         ("update_session", ("k", 1)), ("delete_session", ())]:
        with pytest.raises(SessionNotFound):
            getattr(model, method)("s1", *args)


def test_model_rejects_bad_input_with_the_contracts_validators_and_keeps_its_state():
    model = SessionModel()
    model.create_session("s1", "u-1", "Ada")
    with pytest.raises(InvalidInput, match="user_id must not be empty"):
        model.create_session("s2", " ", "Bob")
    with pytest.raises(InvalidInput, match="malformed session_id"):
        model.get_session("s 1")
    with pytest.raises(InvalidInput, match="metadata value must be"):
        model.update_session("s1", "cart", [1, 2])
    with pytest.raises(InvalidInput):
        model.increment_access(None)
    for n in range(api.MAX_METADATA_KEYS):
        model.update_session("s1", f"key-{n}", n)
    with pytest.raises(InvalidInput, match=f"at most {api.MAX_METADATA_KEYS} metadata keys"):
        model.update_session("s1", "one-too-many", 0)
    assert len(model.get_session("s1").metadata) == api.MAX_METADATA_KEYS
    assert model.session_ids == frozenset({"s1"})


def test_model_reports_a_create_that_returned_a_live_id():
    model = SessionModel()
    model.create_session("s1", "u-1", "Ada")
    with pytest.raises(ContractViolation, match="returned 's1', the id of a live session .user 'u-1'."):
        model.create_session("s1", "u-2", "Bob")
    assert model.get_session("s1").user_id == "u-1"
    model.delete_session("s1")
    model.create_session("s1", "u-2", "Bob")  # a logged-out id may come back
    assert model.get_session("s1").user_id == "u-2"


def test_step_is_pure_and_leaves_the_state_as_it_was_on_an_error():
    state = SessionState("u-1", "Ada", access_count=4)
    assert step(state, "increment_access", ("s1",)) == (SessionState("u-1", "Ada", access_count=5), Outcome(5))
    assert state.access_count == 4
    assert step(None, "increment_access", ("s1",)) == (None, Outcome(error="SessionNotFound"))
    assert step(state, "update_session", ("s1", "", 1)) == (state, Outcome(error="InvalidInput"))
    assert step(state, "delete_session", ("s1",)) == (None, Outcome())
    assert step(None, "create_session", ("s1", "u-2", "Bob")) == (SessionState("u-2", "Bob"), Outcome("s1"))
    with pytest.raises(ContractViolation):
        step(state, "create_session", ("s1", "u-2", "Bob"))


# -- Linearizable histories --------------------------------------------------------------


def test_a_sequential_history_is_linearizable():
    verdict = check([
        login(at=(0, 1)),
        call("main", "increment_access", "s1", result=1, at=(2, 3)),
        call("main", "update_session", "s1", "theme", "dark", at=(4, 5)),
        call("main", "get_session", "s1", result=snapshot("s1", 1, {"theme": "dark"}), at=(6, 7)),
        call("main", "delete_session", "s1", at=(8, 9)),
        call("main", "get_session", "s1", error="SessionNotFound", at=(10, 11)),
    ])
    assert verdict.ok
    assert (verdict.operations, verdict.sessions) == (6, 1)
    assert verdict.explain().startswith("Linearizable: the 6 calls on 1 session")


def test_overlapping_increments_may_take_effect_in_the_opposite_order_to_their_invocations():
    # worker-1 starts first but its increment takes effect second: the only valid order.
    verdict = check([
        login(at=(0, 1)),
        call("worker-1", "increment_access", "s1", result=2, at=(2, 10)),
        call("worker-2", "increment_access", "s1", result=1, at=(3, 5)),
    ])
    assert verdict.ok


def test_a_read_invoked_after_an_update_may_still_see_the_value_before_it():
    verdict = check([
        login(at=(0, 1)),
        call("worker-1", "update_session", "s1", "theme", "dark", at=(2, 10)),
        call("worker-2", "get_session", "s1", result=snapshot("s1"), at=(3, 5)),
        call("worker-2", "get_session", "s1", result=snapshot("s1", 0, {"theme": "dark"}), at=(6, 8)),
        call("worker-3", "get_session", "s1", result=snapshot("s1"), at=(4, 7)),
    ])
    assert verdict.ok


def test_a_logout_may_overlap_a_read_that_finds_the_session_or_not():
    verdict = check([
        login(at=(0, 1)),
        call("worker-1", "delete_session", "s1", at=(2, 10)),
        call("worker-2", "get_session", "s1", error="SessionNotFound", at=(3, 4)),
        call("worker-3", "get_session", "s1", result=snapshot("s1"), at=(5, 6)),
    ])
    # worker-2 found nothing, so the logout came before 4 us; worker-3 began at 5 us and
    # still found the session: no order explains both.
    assert not verdict.ok
    assert verdict.operation.thread == "worker-3"

    verdict = check([
        login(at=(0, 1)),
        call("worker-1", "delete_session", "s1", at=(2, 10)),
        call("worker-3", "get_session", "s1", result=snapshot("s1"), at=(3, 4)),
        call("worker-2", "get_session", "s1", error="SessionNotFound", at=(5, 6)),
    ])
    assert verdict.ok


def test_ids_may_be_handed_out_again_once_their_session_is_logged_out():
    verdict = check([
        login("s1", at=(0, 1), user_id="u-1"),
        login("s2", at=(0, 2), user_id="u-2", thread="worker-1"),
        call("main", "delete_session", "s1", at=(3, 4)),
        login("s1", at=(5, 6), user_id="u-3"),
        call("main", "get_session", "s1", result=snapshot("s1", user_id="u-3"), at=(7, 8)),
    ])
    assert verdict.ok
    assert verdict.sessions == 2


def test_calls_rejected_as_invalid_input_are_left_out():
    verdict = check([
        login(at=(0, 1)),
        call("main", "create_session", "", "Ada", error="InvalidInput", at=(2, 3)),
        call("main", "update_session", "s1", "", 1, error="InvalidInput", at=(4, 5)),
        call("main", "get_session", None, error="InvalidInput", at=(6, 7)),
        call("main", "increment_access", "s1", result=1, at=(8, 9)),
    ])
    assert verdict.ok
    assert verdict.operations == 2


def test_a_call_that_crashed_may_or_may_not_have_taken_effect():
    crashed = call("worker-1", "increment_access", "s1", error="RuntimeError", at=(2, 3))
    assert crashed.pending
    for count in (0, 1):
        verdict = check([
            login(at=(0, 1)),
            crashed,
            call("main", "get_session", "s1", result=snapshot("s1", count), at=(4, 5)),
        ])
        assert verdict.ok, verdict.explain()
    verdict = check([
        login(at=(0, 1)),
        crashed,
        call("main", "get_session", "s1", result=snapshot("s1", 2), at=(4, 5)),
    ])
    assert not verdict.ok


def test_a_burst_is_checked_from_the_models_states_and_gives_the_states_after_it():
    model = SessionModel()
    model.create_session("s1", "u-1", "Ada")
    model.increment_access("s1")
    model.update_session("s1", "theme", "dark")
    burst = [
        call("worker-1", "increment_access", "s1", result=3, at=(0, 4)),
        call("worker-2", "increment_access", "s1", result=2, at=(1, 3)),
        call("worker-3", "delete_session", "s2", error="SessionNotFound", at=(0, 2)),
    ]
    verdict = check(burst, initial=model.states)
    assert verdict.ok
    assert verdict.final_states == {
        "s1": SessionState("u-1", "Ada", access_count=3, metadata=(("theme", "dark"),)),
        "s2": None,
    }
    after = SessionModel({**model.states, **verdict.final_states})
    assert after.session_ids == frozenset({"s1"})
    assert after.increment_access("s1") == 4

    verdict = check(burst)  # from nothing, s1 was never created
    assert not verdict.ok
    assert verdict.operation is burst[1]
    assert verdict.expected == Outcome(error="SessionNotFound")


# -- Histories that are not linearizable, one per bug shape --------------------------------


def test_lost_increment_two_increments_return_the_same_count():
    history = [
        login(at=(0, 1)),
        call("main", "increment_access", "s1", result=1, at=(2, 3)),
        call("main", "increment_access", "s1", result=2, at=(4, 5)),
        call("worker-1", "increment_access", "s1", result=3, at=(6, 9)),
        call("worker-2", "increment_access", "s1", result=3, at=(7, 10)),
    ]
    verdict = check(history)
    assert not verdict.ok
    assert verdict.session_id == "s1"
    assert verdict.operation is history[4]
    assert verdict.prefix == tuple(history[:4])
    assert verdict.state == SessionState("u-1", "Ada", access_count=3)
    assert verdict.expected == Outcome(4)
    assert verdict.earlier == ((3, Outcome(3)),)
    text = verdict.explain()
    assert (
        "increment_access('s1') by worker-2 returned 3, but after the 4 calls that can be ordered "
        "before it the count is 3, so it should return 4."
    ) in " ".join(text.split())
    assert "increment_access('s1') by worker-1 also returned 3: one increment was lost." in " ".join(text.split())
    assert "Longest consistent order found (4 of 5 calls on this session, 3 threads):" in text
    assert "    4. [6-9 us] increment_access('s1') by worker-1: returned 3" in text
    assert "State there: user 'u-1' ('Ada'), access_count 3, metadata {}" in text
    assert "Cannot come next: [7-10 us] increment_access('s1') by worker-2: returned 3" in text
    assert "before call 4: it should return 3: it did, but then the calls after it cannot all be ordered" in text


def test_lost_update_a_read_after_both_updates_misses_a_key():
    history = [
        login(at=(0, 1)),
        call("worker-1", "update_session", "s1", "theme", "dark", at=(2, 6)),
        call("worker-2", "update_session", "s1", "cart", 3, at=(3, 7)),
        call("main", "get_session", "s1", result=snapshot("s1", 0, {"cart": 3}), at=(8, 9)),
    ]
    verdict = check(history)
    assert not verdict.ok
    assert verdict.operation is history[3]
    assert verdict.prefix == tuple(history[:3])
    assert verdict.state.metadata_dict() == {"cart": 3, "theme": "dark"}
    assert verdict.earlier == ()  # the read began after both updates returned
    text = " ".join(verdict.explain().split())
    assert (
        "get_session('s1') by main returned a session holding user 'u-1' ('Ada'), access_count 0, "
        "metadata {'cart': 3}, but after the 3 calls that can be ordered before it the session holds "
        "user 'u-1' ('Ada'), access_count 0, metadata {'cart': 3, 'theme': 'dark'}: key 'theme' is "
        "missing (set by update_session('s1', 'theme', 'dark') by worker-1)."
    ) in text
    assert "Longest consistent order found (3 of 4 calls on this session, 3 threads)" in text


def test_id_collision_two_logins_are_handed_the_same_live_id():
    history = [
        login("s7", at=(0, 5), thread="worker-1", user_id="u-1", username="Ada"),
        login("s7", at=(1, 6), thread="worker-2", user_id="u-2", username="Bob"),
        call("worker-1", "get_session", "s7", result=snapshot("s7", user_id="u-2", username="Bob"), at=(7, 8)),
    ]
    verdict = check(history)
    assert not verdict.ok
    assert verdict.session_id == "s7"
    assert verdict.operation is history[1]
    assert verdict.prefix == (history[0],)
    assert verdict.state == SessionState("u-1", "Ada")
    assert verdict.expected is None  # no correct manager returns a live id
    text = " ".join(verdict.explain().split())
    assert (
        "create_session('u-2', 'Bob') by worker-2 returned the id 's7', but after the 1 call that can be "
        "ordered before it session 's7' is live (created by create_session('u-1', 'Ada') by worker-1), "
        "so a correct manager could not hand it out again. create_session('u-1', 'Ada') by worker-1 was "
        "handed the same id: two logins share one session."
    ) in text


def test_double_logout_two_deletes_of_one_session_both_succeed():
    history = [
        login(at=(0, 1)),
        call("worker-1", "delete_session", "s1", at=(2, 5)),
        call("worker-2", "delete_session", "s1", at=(3, 6)),
    ]
    verdict = check(history)
    assert not verdict.ok
    assert verdict.operation is history[2]
    assert verdict.prefix == tuple(history[:2])
    assert verdict.state is None
    assert verdict.expected == Outcome(error="SessionNotFound")
    text = " ".join(verdict.explain().split())
    assert (
        "delete_session('s1') by worker-2 succeeded, but after the 2 calls that can be ordered before it "
        "session 's1' has been logged out (by delete_session('s1') by worker-1), so it should raise "
        "SessionNotFound. delete_session('s1') by worker-1 also succeeded: the session was logged out twice."
    ) in text
    assert "State there: no live session 's1'" in text


def test_read_after_logout_returns_the_logged_out_sessions_metadata():
    history = [
        login(at=(0, 1)),
        call("main", "update_session", "s1", "cart", "3 books", at=(2, 3)),
        call("worker-1", "delete_session", "s1", at=(4, 5)),
        call("worker-2", "get_session", "s1", result=snapshot("s1", 0, {"cart": "3 books"}), at=(6, 7)),
    ]
    verdict = check(history)
    assert not verdict.ok
    assert verdict.operation is history[3]
    assert verdict.prefix == tuple(history[:3])
    assert verdict.expected == Outcome(error="SessionNotFound")
    text = " ".join(verdict.explain().split())
    assert (
        "get_session('s1') by worker-2 returned a session holding user 'u-1' ('Ada'), access_count 0, "
        "metadata {'cart': '3 books'}, but after the 3 calls that can be ordered before it session 's1' "
        "has been logged out (by delete_session('s1') by worker-1), so it should raise SessionNotFound. "
        "It began after that logout had returned, yet it was handed the session's data."
    ) in text


def test_shared_snapshot_a_read_overlapping_a_logout_shows_metadata_it_never_held():
    # The snapshot was taken before the logout, and the logout then emptied it.
    history = [
        login(at=(0, 1)),
        call("main", "update_session", "s1", "cart", "3 books", at=(2, 3)),
        call("worker-1", "delete_session", "s1", at=(4, 8)),
        call("worker-2", "get_session", "s1", result=snapshot("s1", 0, {}), at=(5, 7)),
    ]
    verdict = check(history)
    assert not verdict.ok
    assert verdict.operation is history[3]
    assert verdict.prefix == tuple(history[:3])
    assert verdict.earlier == ((2, Outcome(SessionState("u-1", "Ada", metadata=(("cart", "3 books"),)))),)
    text = verdict.explain()
    assert "It overlaps call 3 of that order; placed earlier, it should have done this:" in text
    assert (
        "  before call 3: it should return a session holding user 'u-1' ('Ada'), access_count 0, "
        "metadata {'cart': '3 books'}\n"
    ) in text
    assert "after that logout had returned" not in text


def test_a_live_session_reported_missing():
    history = [
        login(at=(0, 1)),
        call("worker-1", "increment_access", "s1", error="SessionNotFound", at=(2, 3)),
    ]
    verdict = check(history)
    assert verdict.operation is history[1]
    assert (
        "increment_access('s1') by worker-1 raised SessionNotFound, but after the 1 call that can be "
        "ordered before it session 's1' is live, so it should return 1."
    ) in " ".join(verdict.explain().split())


def test_other_calls_in_flight_are_listed_with_what_they_should_have_done():
    history = [
        login(at=(0, 1)),
        call("worker-1", "increment_access", "s1", result=5, at=(2, 9)),
        call("worker-2", "get_session", "s1", result=snapshot("s1", 7), at=(3, 6)),
    ]
    verdict = check(history)
    assert verdict.operation is history[2]
    assert verdict.prefix == (history[0],)
    assert [(op.thread, why) for op, why in verdict.candidates] == [
        ("worker-1", "it returned 5; there it should return 1"),
    ]
    assert "Nor can any other call still in flight come next instead:" in verdict.explain()


def test_only_the_broken_session_is_reported_and_the_others_are_named():
    history = [
        login("a", at=(0, 1)),
        login("b", at=(0, 1), thread="worker-1"),
        login("c", at=(0, 1), thread="worker-2"),
        call("main", "increment_access", "a", result=1, at=(2, 3)),
        call("worker-1", "increment_access", "b", result=1, at=(2, 4)),
        call("worker-2", "increment_access", "b", result=1, at=(3, 5)),
        call("worker-2", "delete_session", "c", at=(6, 7)),
        call("worker-1", "delete_session", "c", at=(6, 8)),
    ]
    verdict = check(history)
    assert not verdict.ok
    assert verdict.sessions == 3
    assert verdict.session_id == "b"
    assert verdict.failed_sessions == ("b", "c")
    assert verdict.session_operations == 3
    assert "The calls on 1 other session cannot be linearized either: 'c'" in verdict.explain()


def test_a_long_consistent_order_is_shortened_to_its_last_calls():
    history = [login(at=(0, 1))]
    history += [call("main", "increment_access", "s1", result=n, at=(2 * n, 2 * n + 1)) for n in range(1, 21)]
    history.append(call("main", "increment_access", "s1", result=20, at=(50, 51)))
    verdict = check(history)
    assert len(verdict.prefix) == 21
    text = verdict.explain()
    assert "  ... 9 earlier calls" in text
    assert "   10. [18-19 us] increment_access('s1') by main: returned 9" in text
    assert "   21. [40-41 us] increment_access('s1') by main: returned 20" in text
    assert "    9. " not in text


# -- Recording -------------------------------------------------------------------------------


def test_the_recorder_records_outcomes_and_reraises_errors():
    recorder = HistoryRecorder()
    with recorder.wrap(fixed.SessionManager()) as manager:
        assert isinstance(manager, RecordingManager)
        session_id = manager.create_session("u-1", "Ada")
        assert manager.increment_access(session_id) == 1
        manager.update_session(session_id, "theme", "dark")
        with pytest.raises(InvalidInput):
            manager.update_session(session_id, "", "x")
        manager.delete_session(session_id)
        with pytest.raises(SessionNotFound):
            manager.get_session(session_id)
        assert manager.get_stats().total_sessions == 1  # forwarded, not recorded
        assert manager.get_active_count() == 0
    with pytest.raises(SessionError):
        manager.increment_access(session_id)  # closed: not a contract outcome, so pending
    history = recorder.operations
    assert [(op.name, op.result, op.error) for op in history] == [
        ("create_session", session_id, None),
        ("increment_access", 1, None),
        ("update_session", None, None),
        ("update_session", None, "InvalidInput"),
        ("delete_session", None, None),
        ("get_session", None, "SessionNotFound"),
        ("increment_access", None, "SessionError"),
    ]
    assert history[-1].pending
    assert all(op.thread == threading.current_thread().name for op in history)
    assert all(op.invoked_ns <= op.returned_ns for op in history)
    assert all(a.returned_ns <= b.invoked_ns for a, b in zip(history, history[1:]))
    verdict = recorder.check()
    assert verdict.ok
    assert verdict.operations == 6


def test_the_recorder_keeps_the_snapshot_as_the_caller_saw_it():
    # buggy hands out the live metadata, which a logout empties later; the record must not change.
    recorder = HistoryRecorder()
    with recorder.wrap(buggy.SessionManager()) as manager:
        session_id = manager.create_session("u-1", "Ada")
        manager.update_session(session_id, "cart", "3 books")
        seen = manager.get_session(session_id)
        manager.delete_session(session_id)
    assert dict(seen.metadata) == {}
    recorded = recorder.operations[2].result
    assert dict(recorded.metadata) == {"cart": "3 books"}
    assert recorder.check().ok


@pytest.mark.parametrize("seed", range(5))
def test_histories_recorded_from_fixed_are_linearizable(seed):
    recorder = record_mixed_run(fixed.SessionManager, seed=seed)
    assert len(recorder) == 3 + 4 * 50
    verdict = recorder.check()
    assert verdict.ok, verdict.explain()
    assert verdict.sessions == 3
    assert verdict.operations == 203
    assert {op.thread for op in recorder.operations} == {"MainThread", "worker-0", "worker-1", "worker-2", "worker-3"}


def test_the_recorder_and_checker_work_on_buggy():
    recorder = record_mixed_run(buggy.SessionManager)
    assert len(recorder) == 203
    verdict = recorder.check()
    assert verdict.operations == 203
    if not verdict.ok:  # whether this run broke is luck; the report must still hold together
        assert verdict.session_id in {op.session_id for op in recorder.operations}
        assert verdict.operation in recorder.operations
        assert f"the calls on session {verdict.session_id!r}" in verdict.explain()
