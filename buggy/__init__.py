"""Session managers as they were first written.
"""

from .manager import SessionManager
from .persistent import PersistentSessionManager
from .redis_store import RedisSessionManager

__all__ = ["PersistentSessionManager", "RedisSessionManager", "SessionManager"]
