"""Session managers as they were first written.
"""

from .manager import SessionManager

__all__ = ["SessionManager"]
