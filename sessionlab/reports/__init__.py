"""The reports: what the engines found, drawn for a learner.

``race`` is the race report of an exploration (what broke, why, how to replay
it), ``steps`` groups a run's events (``trace``) into the lines and steps each
thread ran, and ``text`` lays them out, one column per thread, on a terminal.
"""
