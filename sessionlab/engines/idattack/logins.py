"""The logins an attacker on session ids watches, and what a successful guess looks like."""

from __future__ import annotations

import base64
import binascii
import os
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sessionlab.figure import Figure

EXPECTED = "no id predicted"
ADVICE = "secrets.token_urlsafe(32)"


NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yvonne")


CLOCKS = {"time.time": time.time_ns, "time.monotonic": time.monotonic_ns, "time.perf_counter": time.perf_counter_ns}
_ALNUM = string.ascii_letters + string.digits
B64URL = set(_ALNUM + "-_")


def username(n: int) -> str:
    return NAMES[n % len(NAMES)] + (str(n // len(NAMES) + 1) if n >= len(NAMES) else "")


@dataclass(frozen=True)
class Login:
    user_id: str
    username: str
    session_id: str
    clocks: dict[str, tuple[int, int]]  # clock -> (ns before create_session, ns after)


def log_in(manager: Any, n: int) -> Login:
    before = {name: clock() for name, clock in CLOCKS.items()}
    session_id = manager.create_session(f"user-{n + 1}", username(n))
    after = {name: clock() for name, clock in CLOCKS.items()}
    return Login(f"user-{n + 1}", username(n), session_id, {k: (before[k], after[k]) for k in before})


def caught(attacker: Login, victim: Login, manager: Any, how: str, confirmed: bool = True) -> Figure:
    """The attacker predicted the victim's id; trying it shows whether it opens their session."""
    try:
        entered = confirmed and manager.get_session(victim.session_id).user_id == victim.user_id
    except Exception:  # the implementation's own error: the prediction still stands
        entered = False
    tried = f"; {attacker.username} tried it and got into {victim.username}'s session" if entered else ""
    return Figure(False, EXPECTED, f"{victim.username}'s id predicted",
                  f"predicted {victim.username}'s id from {attacker.username}'s: {how}{tried}")


def id_cores(ids: list[str]) -> tuple[list[str], Callable[[str], str]]:
    """The ids without the prefix and suffix they all share, and how to cut another id the same way.

    Too few distinct ids could share a character by chance: those are left whole.
    """
    if len(set(ids)) < 16:
        return list(ids), str
    head = len(os.path.commonprefix(ids))
    tail = min(len(os.path.commonprefix([sid[::-1] for sid in ids])), min(map(len, ids)) - head)

    def cut(sid: str) -> str:
        return sid[head: len(sid) - tail]

    return [cut(sid) for sid in ids], cut


def b64_bytes(text: str) -> bytes | None:
    bare = text.rstrip("=")
    if len(bare) % 4 == 1:
        return None
    try:
        return base64.b64decode(bare + "=" * (-len(bare) % 4), altchars=b"-_" if set(bare) <= B64URL else None,
                                validate=True)
    except (binascii.Error, ValueError):
        return None
