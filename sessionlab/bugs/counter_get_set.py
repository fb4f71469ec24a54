"""Bug 13, a counter read and written: HGET the count, add one in Python, HSET it back."""

from __future__ import annotations

from sessionlab.bug import ATOMICITY_VIOLATION, Bug
from sessionlab.bugs.redis_nodes import MANAGER, SEEN, answer, checked, new_state, on_node, stored
from sessionlab.engines.exploration.threads import RaceScenario, State
from sessionlab.figure import Figure

BUG = Bug(
    number=15,
    slug="counter-get-set",
    title="A counter read with HGET and written with HSET",
    bug_class=ATOMICITY_VIOLATION,
    track=4,
    mistake=(
        "increment_access reads access_count with HGET, adds one in Python and writes it with HSET, "
        "instead of letting Redis add (HINCRBY)"
    ),
    symptom="behind a load balancer, page views, download counts and rate limits fall behind the requests",
    scenario=(
        "node 0 and node 1 each count one access of one session, under every interleaving of their Redis "
        "commands; the count must be 2 and the calls must return 1 and 2"
    ),
    functions=("RedisSessionManager.increment_access",),
    module="redis_store.py",
    manager=MANAGER,
)


def _both_counted(state: State) -> Figure:
    counted = (stored(state) or {}).get("access_count")
    returned = sorted(answer(state, n) for n in (0, 1))
    if counted == "2" and returned == [1, 2]:
        return Figure(True, "2", "2", "2 accesses on 2 nodes, counted 2; the calls returned 1 and 2")
    return Figure(False, "2", str(counted),
                  f"2 accesses on 2 nodes, Redis counted {counted}; the calls returned {returned}: both nodes "
                  f"read the same count and wrote back the same count plus one")


RACE = RaceScenario(
    BUG,
    "two app servers each count one access of the same session",
    (on_node(0, "increment_access(s)", lambda n, s: n.increment_access(s)),
     on_node(1, "increment_access(s)", lambda n, s: n.increment_access(s))),
    checked(_both_counted),
    prepare=new_state,
    why="both nodes read the count before either wrote it back",
    seen=SEEN,
)

CHECKS = ()
