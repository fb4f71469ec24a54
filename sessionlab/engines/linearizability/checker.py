"""Checking that a recorded history of a session manager is linearizable.

A history is linearizable if every call can be given one instant between its
invocation and its return such that, run one at a time in the order of those
instants, the calls of the sequential model (``sessionlab.engines.linearizability.model``) return
exactly what the real calls returned. A history that is not linearizable is
proof of a bug, even when the final counts happen to look right.

``check(operations)`` runs the search of Wing and Gong with Lowe's
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

from sessionlab.engines.linearizability.history import Operation, _describe_state
from sessionlab.engines.linearizability.model import ContractViolation, Outcome, SessionState, step
from sessionlab.engines.linearizability.violation import (
    earlier_places, model_args, observed, should, what_went_wrong, why_not)
from sessionlab.figure import plural

# explain() lists at most this many calls of the consistent order, and wraps prose at this width.
SHOWN_PREFIX = 12
WIDTH = 100

__all__ = ["Verdict", "check"]

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
                f"Linearizable: the {plural(self.operations, 'call')} on "
                f"{plural(self.sessions, 'session')} can be put in one order that the "
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
            f"{self.session_operations} calls on this session, {plural(threads, 'thread')}):",
        ]
        shown = self.prefix[-SHOWN_PREFIX:]
        if len(shown) < len(self.prefix):
            lines.append(f"  ... {plural(len(self.prefix) - len(shown), 'earlier call')}")
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
                fits = _fits(op, observed(op), expected)
                lines.append(
                    f"  before call {index + 1}: {should(op, expected)}"
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
                f"The calls on {plural(len(others), 'other session')} cannot be linearized either: "
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
    expected, reason = what_went_wrong(blocked, prefix, state, part)
    ordered = {id(op) for op in prefix}
    candidates = tuple(
        (other, why_not(other, state))
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
        earlier=earlier_places(blocked, prefix, initial.get(key)),
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
        call.args = model_args(op)
        call.seen = observed(op)
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


def _micros(nanoseconds: int) -> str:
    return f"{nanoseconds / 1000:g}"
