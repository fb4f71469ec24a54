"""Session managers as they were first written.
"""

from .manager import SessionManager
from .persistent import PersistentSessionManager

__all__ = ["PersistentSessionManager", "SessionManager"]
