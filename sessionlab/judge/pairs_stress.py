"""Every pair of operations on real threads, where the search of the pairs was bounded.

Through a framework, the search of every pair is bounded (pairs.PREEMPTIONS_WITH_A_FRAMEWORK),
and a search under a preemption bound can prune an interleaving within the bound: an increment
that saves the whole session beside an update loses the update after one preemption, and the
bounded search of that pair ran 11 interleavings, all of which held. So each pair also runs on
two real threads, released together by a barrier with the interpreter switching threads every
microsecond, round after round, and each round is judged as an execution of the search is
(``pairs.judge_run``). Like every stress check, it can find a bug, never prove one absent.
"""

from __future__ import annotations

import threading

from sessionlab.bug import Bug
from sessionlab.engines.bounded import join_all
from sessionlab.engines.exploration import Inconclusive
from sessionlab.engines.stress import fast_switching
from sessionlab.figure import Figure, plural
from sessionlab.implementations import Implementation
from sessionlab.judge import pairs

# Rounds of each pair on each kind of session. Measured on 2 cores kept busy by other programs:
# the update lost beside an increment that saves the whole session (tests/wild_fixes.py) broke
# 86 rounds of 800 (11%); 60 rounds on each of the 2 kinds of session miss it once in a million.
ROUNDS = 60
# A round's two calls are done within this, or the round has hung.
ROUND_SECONDS = 10.0


def _round(implementation: Implementation, pair: tuple[str, str], start: str) -> pairs.Failure | None:
    run = pairs.new_run(implementation, start)
    barrier = threading.Barrier(2)

    def thread(number: int) -> None:
        barrier.wait()
        pairs.call(run, pair, number)

    workers = [threading.Thread(target=thread, args=(n,), name=f"pair-{n}", daemon=True) for n in (0, 1)]
    for worker in workers:
        worker.start()
    join_all(workers, ROUND_SECONDS, f"{pair[0]} and {pair[1]} on real threads", implementation.files)
    try:
        failure = pairs.judge_run(run, pair, implementation.files)
    finally:
        run.manager.close()
    return None if failure is None else failure.masked([run.session_id])


def applies(implementation: Implementation) -> bool:
    """Whether the search of the pairs was bounded, leaving real threads something to find."""
    return pairs.preemption_bound(implementation) is not None


def stress(bug: Bug, implementation: Implementation) -> Figure:
    """Each pair that involves the bug's operations, ROUNDS times on each kind of session."""
    if not applies(implementation):
        raise Inconclusive("the search of every pair was complete: real threads have nothing left to find")
    own = pairs.pairs_for(bug)
    rounds = 0
    with fast_switching():
        for start, kind in pairs.STARTS.items():
            for pair in own:
                for _ in range(ROUNDS):
                    rounds += 1
                    failure = _round(implementation, pair, start)
                    if failure is not None and bug.slug in failure.owners:
                        return Figure(False, "every pair holds", f"{pair[0]} + {pair[1]} broke",
                                      f"{pair[0]} and {pair[1]} at once on {kind}, on real threads: "
                                      f"{failure.summary} (in round {rounds})")
    return Figure(True, "every pair holds", "every pair holds",
                  f"{plural(len(own), 'pair')} of operations on real threads, {ROUNDS} rounds each on "
                  f"{len(pairs.STARTS)} kinds of session ({rounds} rounds), all held")
