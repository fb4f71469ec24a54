"""Linearizability: an order of the calls that explains every result.

``recording`` records a history of calls from any number of threads
(``history`` is one call as a thread saw it), ``model`` is the sequential
specification of a session manager, ``checker`` searches for an order of the
calls that the model explains, and ``violation`` says why a call cannot be
placed in any.
"""

from sessionlab.engines.linearizability.checker import Verdict, check  # noqa: F401
from sessionlab.engines.linearizability.history import RECORDED_OPERATIONS, Operation  # noqa: F401
from sessionlab.engines.linearizability.recording import HistoryRecorder, RecordingManager  # noqa: F401
