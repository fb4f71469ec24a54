"""One home per bug: each module here holds a bug's catalogue entry and its lab side.

A bug's module defines ``BUG`` (its catalogue entry, a ``sessionlab.bug.Bug``)
and what exposes it: ``STRESS`` (a scenario for real threads,
``sessionlab.engines.stress``), ``RACE`` (a scenario for deterministic
exploration of threads, ``sessionlab.engines.exploration.threads``),
``EXPLORE`` (an exploration of its own, such as two processes on one file) and
``CHECKS`` (single-thread checks: ``(name, function)`` pairs, each function
taking an implementation and returning a Figure). The engines that run them
live in ``sessionlab/engines/`` and know nothing of any one bug: they are
handed the scenario.

Adding a bug is one module here (listed in ``sessionlab.catalogue``), one
exercise folder, and the code in buggy/ and fixed/.
"""
