"""The attacker on session ids: can one user's id be guessed from another's?

``attack`` reads the ids of a run of logins (``logins``) for counters in any
encoding, hashes of counters, times and users, time-based ids, too little
entropy, and ids drawn from Python's ``random`` (``random_state`` rebuilds or
replays its state).
"""

from sessionlab.engines.idattack.attack import attack_ids  # noqa: F401
