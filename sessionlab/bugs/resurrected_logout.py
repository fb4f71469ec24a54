"""Bug 14, a resurrected logout: a write that started before a logout on another node saves after it."""

from __future__ import annotations

from sessionlab.bug import ATOMICITY_VIOLATION, Bug
from sessionlab.bugs.redis_nodes import MANAGER, SEEN, answer, checked, new_state, on_node, stored
from sessionlab.engines.exploration.threads import RaceScenario, State, explore
from sessionlab.figure import Figure
from sessionlab.implementations import Implementation

BUG = Bug(
    number=16,
    slug="resurrected-logout",
    title="A logout undone by a concurrent save",
    bug_class=ATOMICITY_VIOLATION,
    track=4,
    mistake=(
        "update_session and increment_access check that the session exists, then write it in a later "
        "command (HSET creates a hash that is not there): a logout another node runs in between is undone"
    ),
    symptom="a user logs out, and a request still in flight on another app server logs them back in",
    scenario=(
        "node 0 saves a key (or counts an access) while node 1 logs the session out, under every "
        "interleaving of their Redis commands; afterwards the server must hold no such session"
    ),
    functions=("RedisSessionManager.update_session", "RedisSessionManager.increment_access"),
    module="redis_store.py",
    manager=MANAGER,
)


def _stays_logged_out(state: State) -> Figure:
    held = stored(state)
    if answer(state, 1) == "SessionNotFound":
        return Figure(False, "logged out", "logout refused",
                      "node 1's logout answered SessionNotFound for a session that was there")
    if held is None:
        return Figure(True, "logged out", "logged out", "the session stayed logged out")
    fields = ", ".join(sorted(held))
    return Figure(False, "no session", f"{len(held)} fields",
                  f"node 1 logged the session out, and node 0's write, begun before the logout, saved it "
                  f"again: Redis holds the session's hash again ({fields})")


def _logout_beside(label: str, call) -> RaceScenario:
    return RaceScenario(
        BUG,
        "a request on one app server writes the session while the user logs out on another",
        (on_node(0, label, call, gone_is_an_answer=True),
         on_node(1, "delete_session(s)", lambda n, s: n.delete_session(s), gone_is_an_answer=True)),
        checked(_stays_logged_out),
        prepare=lambda implementation: new_state(implementation, (("cart", "1 book"),)),
        why="node 0 found the session, node 1 deleted it, then node 0 wrote it and so made it again",
        seen=SEEN,
    )


RACE = _logout_beside("update_session(s, 'cart', '3 books')", lambda n, s: n.update_session(s, "cart", "3 books"))
COUNTED = _logout_beside("increment_access(s)", lambda n, s: n.increment_access(s))


def a_count_beside_a_logout(implementation: Implementation) -> Figure:
    """resurrected-logout: an access counted on one node while another logs out never brings it back."""
    report = explore(COUNTED, implementation)
    held = report.held and report.complete
    return Figure(held, "holds", "holds" if held else "broke", report.message.split(": ", 1)[-1],
                  history="" if report.held else report.text())


CHECKS = (("a count beside a logout, every interleaving (frontrun)", a_count_beside_a_logout),)
