"""Bug 16, a WATCH that watches nothing: sent on another connection than the MULTI/EXEC it guards."""

from __future__ import annotations

from sessionlab.bug import ATOMICITY_VIOLATION, Bug
from sessionlab.bugs.redis_nodes import MANAGER, SEEN, answer, checked, new_state, on_node, stored
from sessionlab.engines.exploration.threads import RaceScenario, State
from sessionlab.figure import Figure

BUG = Bug(
    number=18,
    slug="watch-shared-connection",
    title="WATCH on another connection than the transaction",
    bug_class=ATOMICITY_VIOLATION,
    track=4,
    mistake=(
        "delete_session calls WATCH on the pooled client, not on the pipeline that runs MULTI/EXEC: the "
        "watch is on another connection (redis-py only warns), so EXEC never fails and the check it "
        "guards is check-then-act"
    ),
    symptom="two tabs log out on two app servers at once; both are told they logged out a live session",
    scenario=(
        "node 0 and node 1 log one session out at once, under every interleaving of their Redis commands; "
        "exactly one logout succeeds, the other answers SessionNotFound"
    ),
    functions=("RedisSessionManager.delete_session",),
    module="redis_store.py",
    manager=MANAGER,
)


def _one_logout(state: State) -> Figure:
    answers = [answer(state, n) for n in (0, 1)]
    shown = " and ".join("SessionNotFound" if answer == "SessionNotFound" else "logged out" for answer in answers)
    gone = stored(state) is None
    if sorted(map(str, answers)) == ["None", "SessionNotFound"] and gone:
        return Figure(True, "one logout", "one logout", "one logout succeeded, the other found nothing")
    return Figure(False, "logged out and SessionNotFound", shown,
                  f"two nodes logged one session out and answered {shown}: both ran their transaction, as "
                  f"the WATCH each sent guarded no transaction" if gone else
                  f"two nodes logged one session out and answered {shown}, and Redis still holds it")


RACE = RaceScenario(
    BUG,
    "the same user logs out from two tabs served by two app servers",
    (on_node(0, "delete_session(s)", lambda n, s: n.delete_session(s), gone_is_an_answer=True),
     on_node(1, "delete_session(s)", lambda n, s: n.delete_session(s), gone_is_an_answer=True)),
    checked(_one_logout),
    prepare=new_state,
    why="both nodes found the session before either deleted it; no WATCH guarded their transactions",
    seen=SEEN,
)

CHECKS = ()
