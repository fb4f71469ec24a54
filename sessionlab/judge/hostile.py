"""What the contract's checks send: bad input every operation must refuse, and hostile values.

Bad names, ids, keys and values break a rule of the contract plainly; good
values are the edge cases a store must keep as they are. Hostile values say one
thing to a check and another to the store later: str and int subclasses whose
``__eq__``, ``__hash__``, ``__len__`` or ``__str__`` lie, an object whose every
method raises, a deeply nested list, a huge value. The contract's checks pass
each to every operation, which must refuse it and change nothing.
"""

from __future__ import annotations

import math
from typing import Any

from sessionlab.api import MAX_KEY_LENGTH, MAX_NAME_LENGTH, MAX_SESSION_ID_LENGTH, MAX_VALUE_LENGTH

BAD_NAMES = [None, 42, b"bytes", ["u"], "", "   ", "x" * (MAX_NAME_LENGTH + 1)]
BAD_IDS = [None, 7, b"abc", "", "has space", "../../etc/passwd", "semi;colon", "x" * (MAX_SESSION_ID_LENGTH + 1)]
BAD_KEYS = [None, 3, ("k",), "", "k" * (MAX_KEY_LENGTH + 1)]
BAD_VALUES = [[1, 2], {"a": 1}, {1}, b"raw", object(), math.nan, math.inf, -math.inf, 2**63, -(2**63),
              "v" * (MAX_VALUE_LENGTH + 1), "lone \ud800 surrogate"]
GOOD_VALUES = [None, True, False, 0, -(2**63 - 1), 2**63 - 1, 1.5, -0.0, "", "two\nlines", "x" * MAX_VALUE_LENGTH]
# Refused in user ids, user names and keys: they forge log lines, reorder them, or cannot be encoded.
CONTROL_CHARACTERS = ["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\u202e", "\u2066",
                      "\ud800", "\udfff"]


def _raise(*args: object) -> Any:
    raise RuntimeError("a hostile method was called")


_EqOnly = type("EqOnly", (str,), {"__eq__": lambda self, other: str.__eq__(self, other)})  # so its __hash__ is None
_EqRaises = type("EqRaises", (str,), {"__eq__": _raise, "__hash__": str.__hash__})
_HashRaises = type("HashRaises", (str,), {"__hash__": _raise})
_LyingLen = type("LyingLen", (str,), {"__len__": lambda self: 1})
_Shifty = type("Shifty", (str,), {"shown": "admin", "__str__": lambda self: self.shown})  # mutable: shows its attribute
_Raising = type("Raising", (), dict.fromkeys(("__repr__", "__str__", "__format__", "__len__", "__hash__", "__eq__",
                                              "__index__", "__float__", "__iter__", "__bool__"), _raise))
_PosingAsStr = type("PosingAsStr", (), {"__class__": property(lambda self: str), "__repr__": _raise})
_PosingAsBool = type("PosingAsBool", (), {"__class__": property(lambda self: bool), "__repr__": _raise})


def hostile_values(text: str = "theme") -> list[tuple[str, object]]:
    """Values, with what they are, that must be refused with InvalidInput wherever a str is expected."""
    deep: list = []
    for _ in range(10_000):  # deeper than repr can recurse
        deep = [deep]
    return [("a str subclass that overrides only __eq__ (so it has no hash)", _EqOnly(text)),
            ("a str subclass whose __eq__ raises", _EqRaises(text)),
            ("a str subclass whose __hash__ raises", _HashRaises(text)),
            ("a str subclass whose __len__ says 1 for 10000 characters", _LyingLen("x" * 10_000)),
            ("a str subclass whose __str__ changes later", _Shifty(text)),
            ("an object whose every method raises", _Raising()),
            ("an object posing as a str through __class__", _PosingAsStr()),
            ("a list nested 10000 deep", deep)]


HOSTILE_NUMBERS = [("an int subclass", type("Number", (int,), {})(5)),
                   ("a float subclass", type("Real", (float,), {})(1.5)),
                   ("an object posing as a bool through __class__", _PosingAsBool())]
