"""Keeping the lab's own helpers out of frontrun's trace.

frontrun traces every function outside the standard library and site-packages,
the lab's too, and makes each traced line a scheduling point and each of its
reads and writes a shared access. Some of the lab's code runs inside the runs it
explores: the history recorder around every call, and the hooks that watch lock
operations (where a scheduling point would hang the run). Their code is given a
file name frontrun never traces ("<frozen ...>"); their line numbers stay the same.
"""

from __future__ import annotations

import types
from typing import TypeVar

T = TypeVar("T")

# The start of the file name of every function hidden here.
UNTRACED = "<frozen sessionlab"


def untraced(target: T) -> T:
    """Hide a function, or every method of a class, from frontrun's tracer (a decorator)."""
    where = f"{UNTRACED}.{getattr(target, '__module__', 'sessionlab').rsplit('.', 1)[-1]}>"

    def rename(code: types.CodeType) -> types.CodeType:
        consts = tuple(rename(c) if isinstance(c, types.CodeType) else c for c in code.co_consts)
        return code.replace(co_filename=where, co_consts=consts)

    functions = [v for v in vars(target).values() if isinstance(v, types.FunctionType)] \
        if isinstance(target, type) else [target]
    for function in functions:
        function.__code__ = rename(function.__code__)
    return target
