"""Session managers as they should be written: the reference.
"""

from .manager import SessionManager
from .persistent import PersistentSessionManager
from .redis_store import RedisSessionManager

__all__ = ["PersistentSessionManager", "RedisSessionManager", "SessionManager"]
