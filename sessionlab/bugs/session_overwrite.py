"""Bug 12, session overwrite: each node reads the whole session and saves the whole session back."""

from __future__ import annotations

from sessionlab.bug import ATOMICITY_VIOLATION, Bug
from sessionlab.bugs.redis_nodes import MANAGER, SEEN, checked, new_state, on_node, stored
from sessionlab.engines.exploration.threads import RaceScenario, State
from sessionlab.figure import Figure

BUG = Bug(
    number=14,
    slug="session-overwrite",
    title="Whole-session overwrite between nodes",
    bug_class=ATOMICITY_VIOLATION,
    track=4,
    mistake=(
        "update_session reads the whole session (HGETALL), changes one key in Python and saves every "
        "field back (HSET of the whole session), so it writes back what another node changed in between"
    ),
    symptom="two requests of one user on two app servers save different keys; one of the keys is gone",
    scenario=(
        "node 0 sets cart and node 1 sets theme of one session, under every interleaving of their Redis "
        "commands; the server must hold both"
    ),
    functions=("RedisSessionManager.update_session",),
    module="redis_store.py",
    manager=MANAGER,
)

WANTED = {"cart": '"3 books"', "theme": '"dark"'}


def _both_kept(state: State) -> Figure:
    held = stored(state) or {}
    shown = ", ".join(f"{key}={held.get('m:' + key)}" for key in WANTED)
    lost = [key for key, value in WANTED.items() if held.get("m:" + key) != value]
    if not lost:
        return Figure(True, "cart=\"3 books\", theme=\"dark\"", shown, "both nodes' updates were kept")
    return Figure(False, "cart=\"3 books\", theme=\"dark\"", shown,
                  f"node 0 set cart to '3 books', node 1 set theme to 'dark'; Redis holds {shown}: the update "
                  f"of {' and '.join(lost)} was lost, overwritten by the other node's save of the whole session")


RACE = RaceScenario(
    BUG,
    "two app servers each change a different key of one session in Redis",
    (on_node(0, "update_session(s, 'cart', '3 books')", lambda n, s: n.update_session(s, "cart", "3 books")),
     on_node(1, "update_session(s, 'theme', 'dark')", lambda n, s: n.update_session(s, "theme", "dark"))),
    checked(_both_kept),
    prepare=lambda implementation: new_state(implementation, (("cart", "empty"), ("theme", "light"))),
    why="both nodes read the whole session before either saved it; each saved every field it had read",
    seen=SEEN,
)

CHECKS = ()
