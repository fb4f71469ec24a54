"""Session managers as they should be written: the reference.
"""

from .manager import SessionManager
from .persistent import PersistentSessionManager

__all__ = ["PersistentSessionManager", "SessionManager"]
