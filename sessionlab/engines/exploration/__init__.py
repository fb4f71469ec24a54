"""Deterministic exploration: every meaningfully different interleaving of a scenario.

``search`` runs one search of some workers under frontrun's scheduler (with
``search_state``, ``capture`` and ``witness`` beside it); ``threads`` explores a
bug's thread scenario and returns its race report; ``processes`` interleaves two
processes on one SQLite file, statement by statement.
"""

from sessionlab.engines.exploration.search import (  # noqa: F401  (the search's API)
    MAX_EXECUTIONS, Exploration, FrontrunUnavailable, Inconclusive, Scope, Tracing, configure, explore_workers,
    frontrun_available, scope_of)
