"""What kind of wrong a history that cannot be linearized shows, in the contract's terms.

A read is where a lost write shows: the read was handed a session without a key an update had
set (a lost update), with a count an increment had passed (a lost increment), or with data
after its logout succeeded (an undone logout: a request saved the whole session back after it).
Which scenario's round recorded the history does not change what kind it is. Kinds are for
stores without a cache of their own: with one, the same read may be a stale one instead.
"""

from __future__ import annotations

from typing import Any

from sessionlab.engines.linearizability.model import SessionState
from sessionlab.engines.linearizability.violation import observed

UNDONE_LOGOUT, LOST_UPDATE, LOST_INCREMENT = "an undone logout", "a lost update", "a lost increment"


def kind_of(verdict: Any) -> str:
    """The kind of the first call that cannot be linearized, or "" when it is none of these."""
    op, expected = verdict.operation, verdict.expected
    if op is None or op.name != "get_session" or op.error is not None or expected is None:
        return ""
    if expected.error is not None:
        logout = next((p for p in reversed(verdict.prefix) if p.name == "delete_session"), None)
        return UNDONE_LOGOUT if logout is not None and logout.error is None else ""
    seen, want = observed(op), expected.value
    if not isinstance(seen, SessionState) or not isinstance(want, SessionState):
        return ""
    if any(key not in dict(seen.metadata) for key in dict(want.metadata)):
        return LOST_UPDATE
    if seen.access_count < want.access_count:
        return LOST_INCREMENT
    return ""
