"""Bug 5, session-id collision: ids from a shared counter, read and bumped without the lock."""

from __future__ import annotations

import threading

from sessionlab.bug import SECURITY, Bug
from sessionlab.engines.exploration.threads import RaceScenario, State, Worker
from sessionlab.engines.stress import NOISE, NewManager, Scenario, run_threads
from sessionlab.figure import Figure
from sessionlab.implementations import Implementation

BUG = Bug(
    number=5,
    slug="id-collision",
    title="Session-id collision",
    bug_class=SECURITY,
    track=1,
    mistake=(
        "session ids come from a shared counter that is read and bumped without the lock, "
        "and they are sequential, so anyone can guess the next one"
    ),
    symptom="two users get the same session: one sees the other's data, one logout logs both out",
    scenario=(
        "10 threads x 100 logins by distinct users; every id must be distinct and "
        "belong to the user who logged in with it"
    ),
    functions=("SessionManager.__init__", "SessionManager._new_session_id"),
)


# -- Stress: 10 threads log 100 users in each --------------------------------------------

LOGIN_THREADS = 10
LOGINS_PER_THREAD = 100


def stress_round(new_manager: NewManager) -> Figure:
    issued: list[list[tuple[str, str]]] = [[] for _ in range(LOGIN_THREADS)]
    with new_manager() as manager:
        barrier = threading.Barrier(LOGIN_THREADS)

        def worker(index: int) -> None:
            barrier.wait()
            for n in range(LOGINS_PER_THREAD):
                user = f"user-{index}-{n}"
                issued[index].append((user, manager.create_session(user, user)))

        run_threads(LOGIN_THREADS, worker, barriers=[barrier])
        logins = [pair for pairs in issued for pair in pairs]
        owner = {session_id: manager.get_session(session_id).user_id for _, session_id in logins}
    users_by_id: dict[str, list[str]] = {}
    for user, session_id in logins:
        users_by_id.setdefault(session_id, []).append(user)
    wrong = [(user, session_id) for user, session_id in logins if owner[session_id] != user]
    if not wrong and len(users_by_id) == len(logins):
        return Figure(True, str(len(logins)), str(len(users_by_id)),
                      f"{len(logins)} logins got {len(users_by_id)} distinct ids, each owned by its user")
    shared = next(sid for sid, users in users_by_id.items() if len(users) > 1)
    return Figure(
        False, f"{len(logins)} distinct ids", f"{len(users_by_id)} distinct ids",
        f"{len(logins)} logins got {len(users_by_id)} distinct ids; {len(wrong)} users hold a session "
        f"that belongs to someone else (id {shared} was issued to {' and '.join(users_by_id[shared])}; "
        f"it now belongs to {owner[shared]})",
    )


STRESS = Scenario(BUG, stress_round, round_rate=0.7, noise=NOISE)


# -- Race: two users log in at the same moment --------------------------------------------


def _login(user: str) -> Worker:
    def login(state: State) -> None:
        state.seen[user] = state.manager.create_session(user, user)

    return Worker(f"create_session({user!r}, ...)", login)


def _two_ids(state: State) -> Figure:
    ids = dict(state.seen)
    owners = {user: state.manager.get_session(sid).user_id for user, sid in ids.items()}
    if len(set(ids.values())) == len(ids) and all(owners[user] == user for user in ids):
        return Figure(True, "2 distinct ids", "2 distinct ids", "each login got its own id")
    (first, shared), (second, _) = sorted(ids.items())
    return Figure(False, "2 distinct ids", f"{len(set(ids.values()))} distinct id",
                  f"{first} and {second} were both given session id {shared}; it now belongs to "
                  f"{owners[first]}, so the other user is logged in as someone else")


RACE = RaceScenario(
    BUG,
    "two users log in at the same moment",
    (_login("alice"), _login("bob")),
    _two_ids,
)


# -- Single thread: an id is a secret -------------------------------------------------------


def ids_not_predictable(implementation: Implementation) -> Figure:
    """id-collision: no id can be predicted from the ids other users were given."""
    from sessionlab.engines import idattack

    return idattack.attack_ids(implementation.new_manager)


CHECKS = (
    ("single thread: ids cannot be predicted", ids_not_predictable),
)
