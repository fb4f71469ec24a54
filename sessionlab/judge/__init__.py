"""The judge: is a bug fixed yet? Where verdicts are made.

``checks`` runs every check of one bug against one implementation and gives
the verdict (FIXED, STILL BUGGY, ERROR, HANGS, UNPROVEN); the checks every bug
shares are the ``contract`` one call at a time (with ``hostile`` input), and
``pairs``, every pair of operations under every interleaving. ``wild`` runs the
track-1 bugs' own checks on the stores on real frameworks.
"""
