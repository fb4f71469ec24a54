"""Session managers as they should be written: the reference.
"""

from .manager import SessionManager

__all__ = ["SessionManager"]
