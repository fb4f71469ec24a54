"""Recording histories of a session manager, and checking that they are linearizable.

A history is linearizable if every call can be given one instant between its
invocation and its return such that, run one at a time in the order of those
instants, the calls of the sequential model (``sessionlab.model``) return
exactly what the real calls returned. A history that is not linearizable is
proof of a bug, even when the final counts happen to look right.

Recording: ``HistoryRecorder().wrap(manager)`` returns a manager that records
every create_session, get_session, update_session, increment_access and
delete_session call (thread, arguments, outcome, invocation and return times).
It takes no lock around the calls, so it hardly changes the interleavings it
records.

Checking: ``check(operations)`` runs the search of Wing and Gong with Lowe's
memoisation (states already explored, as the set of calls taken plus the model
state, are not explored again). Sessions are independent of each other, so the
history is split per session id and each part is checked on its own: a create
belongs to the id it returned, every other call to the id it was called with.
Calls rejected with InvalidInput have no effect and are left out. get_session
results are compared on user_id, username, is_authenticated, access_count and
metadata; timestamps are not compared. Queries over the whole store
(get_stats, get_active_count, get_cleanup_queue_size) are not recorded and are
not part of the check.

A call that ended in an error the contract does not define (the manager was
closed, or crashed) is treated as a call that never returned: it may have
taken effect at any point after its invocation, or not at all, and its result
is not compared. A create of that kind returned no id and is left out.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sessionlab.history import (  # noqa: F401  (re-exported: recording is part of this API)
    CONTRACT_ERRORS,
    RECORDED_OPERATIONS,
    HistoryRecorder,
    Operation,
    RecordingManager,
    _describe_session,
    _describe_state,
)
from sessionlab.model import ContractViolation, Outcome, SessionState, step

# explain() lists at most this many calls of the consistent order, and wraps prose at this width.
SHOWN_PREFIX = 12
WIDTH = 100

__all__ = [
    "RECORDED_OPERATIONS",
    "HistoryRecorder",
    "Operation",
    "RecordingManager",
    "Verdict",
    "check",
]

# -- Checking ------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check; for a history that is not linearizable, where it breaks."""

    ok: bool
    operations: int  # calls checked (after leaving out those rejected with InvalidInput)
    sessions: int  # session ids the history was split into
    session_id: Any = None  # the session whose calls cannot be linearized
    operation: Operation | None = None  # the first call that cannot be linearized
    prefix: tuple[Operation, ...] = ()  # the longest consistent order found, before it
    state: SessionState | None = None  # the model's state after the prefix
    expected: Outcome | None = None  # what the operation should have done there (None: nothing could)
    reason: str = ""  # one sentence: what it did, and what it should have done
    candidates: tuple[tuple[Operation, str], ...] = ()  # the other calls that could come next, and why not
    # The earlier places in the prefix the operation overlaps: (index in prefix, what it should do there).
    earlier: tuple[tuple[int, Outcome | None], ...] = ()
    session_operations: int = 0  # calls on that session
    failed_sessions: tuple[Any, ...] = ()  # every session whose calls cannot be linearized
    start_ns: int = 0  # invocation time of the history's first call, for relative times
    # For every session whose calls are linearizable: its state after the order found.
    final_states: Mapping[Any, SessionState | None] = field(default_factory=dict)

    def explain(self) -> str:
        """A readable account of the verdict, for a learner."""
        if self.ok:
            return (
                f"Linearizable: the {_plural(self.operations, 'call')} on "
                f"{_plural(self.sessions, 'session')} can be put in one order that the "
                f"sequential model explains."
            )
        op = self.operation
        threads = len({o.thread for o in self.prefix + (op,)})
        lines = [
            textwrap.fill(
                f"Not linearizable: the calls on session {self.session_id!r} cannot be put in any "
                f"order that a correct manager, running one call at a time, would explain.",
                WIDTH,
            ),
            "",
            textwrap.fill(self.reason, WIDTH),
            "",
            f"Longest consistent order found ({len(self.prefix)} of "
            f"{self.session_operations} calls on this session, {_plural(threads, 'thread')}):",
        ]
        shown = self.prefix[-SHOWN_PREFIX:]
        if len(shown) < len(self.prefix):
            lines.append(f"  ... {_plural(len(self.prefix) - len(shown), 'earlier call')}")
        first = len(self.prefix) - len(shown) + 1
        for number, earlier in enumerate(shown, first):
            lines.append(f"  {number:3d}. {self._line(earlier)}")
        if not self.prefix:
            lines.append("  (none)")
        lines.append(f"  State there: {_describe_state(self.state, self.session_id)}")
        lines.append("")
        lines.append(f"Cannot come next: {self._line(op)}")
        if self.earlier:
            first = self.earlier[0][0] + 1
            span = f"call {first}" if first == len(self.prefix) else f"calls {first} to {len(self.prefix)}"
            lines.append(f"It overlaps {span} of that order; placed earlier, it should have done this:")
            for index, expected in self.earlier:
                fits = _fits(op, _seen(op), expected)
                lines.append(
                    f"  before call {index + 1}: {_should(op, expected)}"
                    + (": it did, but then the calls after it cannot all be ordered" if fits else "")
                )
        if self.candidates:
            lines.append("Nor can any other call still in flight come next instead:")
            for other, why in self.candidates:
                lines.append(f"  {self._line(other)}")
                lines.append(f"      {why}")
        else:
            lines.append("No other call could come next instead: the rest began after it returned.")
        others = [sid for sid in self.failed_sessions if sid != self.session_id]
        if others:
            lines.append("")
            lines.append(
                f"The calls on {_plural(len(others), 'other session')} cannot be linearized either: "
                + ", ".join(map(repr, others))
            )
        return "\n".join(lines)

    def _line(self, op: Operation) -> str:
        return (
            f"[{_micros(op.invoked_ns - self.start_ns)}-{_micros(op.returned_ns - self.start_ns)} us] "
            f"{op.call()} by {op.thread}: {op.outcome()}"
            + (" (whether it took effect is unknown)" if op.pending else "")
        )


def check(
    operations: Iterable[Operation], initial: Mapping[Any, SessionState | None] | None = None
) -> Verdict:
    """Check a history against the sequential model, one session id at a time.

    initial gives the state of sessions that were live before the history
    began (SessionModel.states, for instance); every other id starts with no
    live session.
    """
    initial = initial or {}
    history = [op for op in operations if op.error != "InvalidInput"]
    history = [op for op in history if not (op.name == "create_session" and op.error is not None)]
    start = min((op.invoked_ns for op in history), default=0)
    parts: dict[Any, list[Operation]] = {}
    for op in sorted(history, key=lambda op: (op.invoked_ns, op.returned_ns)):
        parts.setdefault(_partition_key(op.session_id), []).append(op)
    failures = []
    final_states = {}
    for key, part in parts.items():
        found = _check_session(part, initial.get(key))
        if found.blocked is None:
            final_states[key] = found.state
        else:
            failures.append((key, part, found))
    if not failures:
        return Verdict(True, len(history), len(parts), start_ns=start, final_states=final_states)
    key, part, (prefix, state, blocked) = failures[0]
    expected, reason = _what_went_wrong(blocked, prefix, state, part)
    ordered = {id(op) for op in prefix}
    candidates = tuple(
        (other, _why_not(other, state))
        for other in part
        if other is not blocked and id(other) not in ordered and other.invoked_ns <= blocked.returned_ns
    )
    return Verdict(
        ok=False,
        operations=len(history),
        sessions=len(parts),
        session_id=key,
        operation=blocked,
        prefix=tuple(prefix),
        state=state,
        expected=expected,
        reason=reason,
        candidates=candidates,
        earlier=_earlier_places(blocked, prefix, initial.get(key)),
        session_operations=len(part),
        failed_sessions=tuple(k for k, _, _ in failures),
        start_ns=start,
        final_states=final_states,
    )


def _partition_key(session_id: Any) -> Any:
    try:
        hash(session_id)
    except TypeError:
        return repr(session_id)
    return session_id


class _Entry:
    """A call's invocation or return in the search's doubly linked list of events."""

    __slots__ = ("op", "is_call", "bit", "args", "seen", "match", "prev", "next")

    def __init__(self, op: Operation | None = None, is_call: bool = False, bit: int = 0):
        self.op = op
        self.is_call = is_call
        self.bit = bit
        self.args: tuple = ()
        self.seen: Any = None  # the recorded result, in the form the model returns it
        self.match: _Entry | None = None  # on an invocation: its return (None for a pending call)
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _model_args(op: Operation) -> tuple:
    if op.name == "create_session":
        return (op.result, *op.args)
    return op.args


def _seen(op: Operation) -> Any:
    if op.name == "get_session" and op.error is None:
        try:
            return SessionState.of(op.result)
        except (AttributeError, TypeError):
            return op.result  # not a Session: matches nothing the model returns
    return op.result


def _run(state: SessionState | None, entry: _Entry) -> tuple[SessionState | None, Outcome | None]:
    """Step the model; the outcome is None if no correct manager could have made this call."""
    try:
        return step(state, entry.op.name, entry.args)
    except ContractViolation:
        return state, None


def _fits(op: Operation, seen: Any, outcome: Outcome | None) -> bool:
    """Whether op, which returned seen (in the model's form), did what outcome says."""
    if outcome is None:
        return False
    if op.pending:
        return True
    if outcome.error is not None or op.error is not None:
        return outcome.error == op.error
    return seen == outcome.value


class _Found(NamedTuple):
    """What the search found: a whole order (blocked is None), or the longest prefix."""

    prefix: list[Operation]
    state: SessionState | None  # the model's state after prefix
    blocked: Operation | None  # the call whose return the search could not get past


def _check_session(part: list[Operation], initial: SessionState | None) -> _Found:
    """Search for a linearization of one session's calls, starting from initial."""
    events = []
    for bit, op in enumerate(part):
        call = _Entry(op, True, 1 << bit)
        call.args = _model_args(op)
        call.seen = _seen(op)
        events.append((op.invoked_ns, 0, bit, call))
        if not op.pending:
            call.match = _Entry(op)
            events.append((op.returned_ns, 1, bit, call.match))
    # At equal times an invocation goes first, so the two calls count as overlapping.
    events.sort(key=lambda event: event[:3])

    head = _Entry()
    last = head
    for *_, entry in events:
        last.next, entry.prev = entry, last
        last = entry

    unfinished = sum(1 for op in part if not op.pending)
    state = initial
    taken = 0  # bitmask of the calls in the order so far
    stack: list[tuple[_Entry, SessionState | None]] = []
    explored: set[tuple[int, SessionState | None]] = set()
    longest: _Found | None = None

    entry = head.next
    while unfinished:
        if entry.is_call:
            new_state, outcome = _run(state, entry)
            if _fits(entry.op, entry.seen, outcome) and (taken | entry.bit, new_state) not in explored:
                explored.add((taken | entry.bit, new_state))
                stack.append((entry, state))
                state, taken = new_state, taken | entry.bit
                _lift(entry)
                if entry.match is not None:
                    unfinished -= 1
                entry = head.next
            else:
                entry = entry.next
            continue
        # A return: that call had to be linearized by now, and no candidate fits.
        if longest is None or len(stack) > len(longest[0]):
            longest = _Found([taken_entry.op for taken_entry, _ in stack], state, entry.op)
        if not stack:
            return longest
        taken_entry, state = stack.pop()
        taken &= ~taken_entry.bit
        _unlift(taken_entry)
        if taken_entry.match is not None:
            unfinished += 1
        entry = taken_entry.next
    return _Found([taken_entry.op for taken_entry, _ in stack], state, None)


def _lift(call: _Entry) -> None:
    """Take a call's invocation and return out of the list."""
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret = call.match
    if ret is not None:
        ret.prev.next = ret.next
        if ret.next is not None:
            ret.next.prev = ret.prev


def _unlift(call: _Entry) -> None:
    """Put a lifted call back where it was."""
    ret = call.match
    if ret is not None:
        ret.prev.next = ret
        if ret.next is not None:
            ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


# -- Explaining ----------------------------------------------------------------------


def _what_went_wrong(
    op: Operation, prefix: list[Operation], state: SessionState | None, part: list[Operation]
) -> tuple[Outcome | None, str]:
    """What op should have done after prefix, and one or two sentences saying so."""
    after = (
        f"after the {_plural(len(prefix), 'call')} that can be ordered before it"
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
        seen = _seen(op)
        differences = _differences(seen, expected.value, prefix)
        return expected, (
            f"{what} returned {_describe_session(op.result)}, but {after} the session holds "
            f"{_describe_state(expected.value, op.session_id)}: {differences}."
        )
    return expected, f"{what} {op.outcome()}, but {after} it should {_describe_outcome(op.name, expected)}."


def _earlier_places(
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
        state, _ = step(state, earlier.name, _model_args(earlier))
    return tuple(places)


def _expect(state: SessionState | None, op: Operation) -> Outcome | None:
    """What op should do in state; None if no correct manager could have made it."""
    try:
        return step(state, op.name, _model_args(op))[1]
    except ContractViolation:
        return None


def _should(op: Operation, expected: Outcome | None) -> str:
    if expected is None:
        return f"it could not return {op.result!r}: that id belongs to a live session"
    return f"it should {_describe_outcome(op.name, expected)}"


def _why_not(op: Operation, state: SessionState | None) -> str:
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


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _micros(nanoseconds: int) -> str:
    return f"{nanoseconds / 1000:g}"
