"""The engines: the ways the lab runs an implementation to expose a bug.

Each engine is handed the scenario it runs (a bug's ``Home`` holds them, see
``sessionlab.catalogue``) and knows nothing of any one bug or of the
catalogue:

stress            real OS threads, free-running, rounds bounded by a measured rate
exploration/      deterministic exploration: threads under every interleaving (frontrun),
                  processes on one SQLite file interleaved statement by statement
linearizability/  histories of calls, the sequential model, and the linearizability checker
idattack/         the attacker on session ids
bounded           running code within a bound, and saying where each thread waits
untraced          keeping the lab's own helpers out of the exploration's trace
"""
