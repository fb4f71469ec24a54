"""Saying why a history cannot be linearized: which call, what it should have returned, and why.

Given the first call that no order can take next, the consistent order before
it and the model's state there, these sentences say what the call returned,
what a correct manager could have returned instead, and which other call did
the same thing at the same time ("two logins share one session", "one
increment was lost").
"""

from __future__ import annotations

from typing import Any

from sessionlab.engines.linearizability.history import Operation, _describe_session, _describe_state
from sessionlab.engines.linearizability.model import ContractViolation, Outcome, SessionState, step
from sessionlab.figure import plural


def what_went_wrong(
    op: Operation, prefix: list[Operation], state: SessionState | None, part: list[Operation]
) -> tuple[Outcome | None, str]:
    """What op should have done after prefix, and one or two sentences saying so."""
    after = (
        f"after the {plural(len(prefix), 'call')} that can be ordered before it"
        if prefix else "at the start of the history"
    )
    what = f"{op.call()} by {op.thread}"
    expected = _expect(state, op)
    if expected is None:
        owner = _last(prefix, "create_session")
        by = f" (created by {owner.call()} by {owner.thread})" if owner else ""
        twin = _twin(op, part, lambda other: other.result == op.result)
        return None, (
            f"{what} returned the id {op.result!r}, but {after} session {op.result!r} is live"
            f"{by}, so a correct manager could not hand it out again."
            + (f" {_twin_sentence(twin, 'was handed the same id')}: two logins share one session."
               if twin else "")
        )

    if expected.error is not None:
        where = _describe_absence(prefix)
        if op.error is None:
            sentence = f"{what} {op.outcome()}, but {after} {where}, so it should raise {expected.error}."
            if op.name == "delete_session":
                twin = _twin(op, part, lambda other: other.error is None)
                if twin:
                    sentence += f" {_twin_sentence(twin, 'also succeeded')}: the session was logged out twice."
            elif op.name == "get_session":
                deleted = _last(prefix, "delete_session")
                if deleted is not None and deleted.returned_ns < op.invoked_ns:
                    sentence += " It began after that logout had returned, yet it was handed the session's data."
            return expected, sentence
        return expected, f"{what} raised {op.error}, but {after} {where}, so it should raise {expected.error}."

    if op.error is not None:
        return expected, (
            f"{what} raised {op.error}, but {after} session {op.session_id!r} is live, so it should "
            f"{_describe_outcome(op.name, expected)}."
        )
    if op.name == "increment_access":
        sentence = (
            f"{what} returned {op.result!r}, but {after} the count is {state.access_count}, "
            f"so it should return {expected.value}."
        )
        twin = _twin(op, part, lambda other: other.result == op.result and other.error is None)
        if twin:
            sentence += f" {_twin_sentence(twin, f'also returned {op.result!r}')}: one increment was lost."
        return expected, sentence
    if op.name == "get_session":
        seen = observed(op)
        differences = _differences(seen, expected.value, prefix)
        return expected, (
            f"{what} returned {_describe_session(op.result)}, but {after} the session holds "
            f"{_describe_state(expected.value, op.session_id)}: {differences}."
        )
    return expected, f"{what} {op.outcome()}, but {after} it should {_describe_outcome(op.name, expected)}."


def earlier_places(
    op: Operation, prefix: list[Operation], state: SessionState | None
) -> tuple[tuple[int, Outcome | None], ...]:
    """What op should do at each earlier place in prefix (run from state) that real time allows."""
    first = 0
    for index, earlier in enumerate(prefix):
        if not earlier.pending and earlier.returned_ns < op.invoked_ns:
            first = index + 1
    places = []
    for index, earlier in enumerate(prefix):
        if index >= first:
            places.append((index, _expect(state, op)))
        state, _ = step(state, earlier.name, model_args(earlier))
    return tuple(places)


def _expect(state: SessionState | None, op: Operation) -> Outcome | None:
    """What op should do in state; None if no correct manager could have made it."""
    try:
        return step(state, op.name, model_args(op))[1]
    except ContractViolation:
        return None


def should(op: Operation, expected: Outcome | None) -> str:
    if expected is None:
        return f"it could not return {op.result!r}: that id belongs to a live session"
    return f"it should {_describe_outcome(op.name, expected)}"


def why_not(op: Operation, state: SessionState | None) -> str:
    """Why op cannot come next in state."""
    expected = _expect(state, op)
    if expected is None:
        return f"its id {op.result!r} belongs to a live session"
    return f"it {op.outcome()}; there it should {_describe_outcome(op.name, expected)}"


def _differences(seen: Any, expected: SessionState, prefix: list[Operation]) -> str:
    if not isinstance(seen, SessionState):
        return f"it returned {seen!r}, not a Session"
    found = []
    for name in ("user_id", "username", "is_authenticated", "access_count"):
        if getattr(seen, name) != getattr(expected, name):
            found.append(f"{name} is {getattr(seen, name)!r} instead of {getattr(expected, name)!r}")
    got, want = dict(seen.metadata), dict(expected.metadata)
    for key, value in want.items():
        if key not in got:
            setter = _last_update(prefix, key)
            by = f" (set by {setter.call()} by {setter.thread})" if setter else ""
            found.append(f"key {key!r} is missing{by}")
        elif got[key] != value:
            found.append(f"key {key!r} is {got[key]!r} instead of {value!r}")
    for key in got.keys() - want.keys():
        found.append(f"key {key!r} should not be there")
    return "; ".join(found)


def _describe_outcome(name: str, expected: Outcome) -> str:
    if expected.error is not None:
        return f"raise {expected.error}"
    if name == "get_session":
        return f"return a session holding {_describe_state(expected.value, None)}"
    if expected.value is None:
        return "succeed"
    return f"return {expected.value!r}"


def _describe_absence(prefix: list[Operation]) -> str:
    deleted = _last(prefix, "delete_session")
    if deleted is not None:
        return (
            f"session {deleted.session_id!r} has been logged out "
            f"(by {deleted.call()} by {deleted.thread})"
        )
    return "no live session has this id"


def _last(prefix: list[Operation], name: str) -> Operation | None:
    return next((op for op in reversed(prefix) if op.name == name), None)


def _last_update(prefix: list[Operation], key: str) -> Operation | None:
    return next(
        (op for op in reversed(prefix)
         if op.name == "update_session" and len(op.args) > 1 and op.args[1] == key and op.error is None),
        None,
    )


def _twin(op: Operation, part: list[Operation], alike) -> Operation | None:
    """Another call of the same kind on the same session that got the same answer."""
    return next(
        (other for other in part if other is not op and other.name == op.name and alike(other)),
        None,
    )


def _twin_sentence(twin: Operation, did: str) -> str:
    return f"{twin.call()} by {twin.thread} {did}"


def model_args(op: Operation) -> tuple:
    if op.name == "create_session":
        return (op.result, *op.args)
    return op.args


def observed(op: Operation) -> Any:
    if op.name == "get_session" and op.error is None:
        try:
            return SessionState.of(op.result)
        except (AttributeError, TypeError):
            return op.result  # not a Session: matches nothing the model returns
    return op.result
