"""Predicting ids drawn from Python's random: rebuild the Mersenne Twister, or replay a reseed."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from typing import Any

from sessionlab.engines.idattack.logins import ADVICE, EXPECTED, Login, b64_bytes, caught, id_cores, log_in, username
from sessionlab.figure import Figure

RESEED_LOGINS = 8  # logins per run of the reseeding experiment
MT_WORDS, MASK = 624, 0xFFFFFFFF

_STOPPED = ("time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns",
            "process_time", "process_time_ns", "thread_time", "thread_time_ns")
_HEX = set("0123456789abcdefABCDEF")


def _untemper(y: int) -> int:
    """The Mersenne Twister state word behind one 32-bit output."""
    y ^= y >> 18
    y ^= (y << 15) & 0xEFC60000
    x = y
    for _ in range(4):
        x = y ^ ((x << 7) & 0x9D2C5680)
    return x ^ (x >> 11) ^ (x >> 22)


def _word_formats(cores: list[str]) -> Iterable[tuple[Callable[[str], int], int]]:
    """Ways an id could hold getrandbits(k) or randbytes(n): (decode, 32-bit words per id)."""
    hexes = [core.replace("-", "") for core in cores]
    if len({len(text) for text in hexes}) == 1 and len(hexes[0]) % 8 == 0 and set().union(*hexes) <= _HEX:
        yield (lambda c: int(c.replace("-", ""), 16)), len(hexes[0]) // 8
        yield (lambda c: int.from_bytes(bytes.fromhex(c.replace("-", "")), "little")), len(hexes[0]) // 8
    if all(core.isdigit() for core in cores):
        top = max(int(core) for core in cores)
        words = next((words for words in (1, 2, 4) if top < 1 << (32 * words)), 0)
        if words:
            yield int, words
    raws = [b64_bytes(core) for core in cores]
    if all(raws) and len({len(raw) for raw in raws}) == 1 and len(raws[0]) % 4 == 0:
        for order in ("little", "big"):
            yield (lambda c, o=order: int.from_bytes(b64_bytes(c) or b"", o)), len(raws[0]) // 4


def mersenne(logins: list[Login], manager: Any) -> Figure | None:
    """Rebuild a Mersenne Twister from 624 outputs read out of the ids, then predict the next login."""
    cores, cut = id_cores([login.session_id for login in logins])
    seen = list(logins)
    for decode, per_id in _word_formats(cores):
        while len(seen) * per_id < MT_WORDS + per_id:
            seen.append(log_in(manager, len(seen)))
        try:
            words = [(decode(cut(login.session_id)) >> (32 * j)) & MASK for login in seen for j in range(per_id)]
        except ValueError:
            continue
        rng = random.Random()
        rng.setstate((3, tuple(_untemper(w) for w in words[:MT_WORDS]) + (MT_WORDS,), None))
        if any(rng.getrandbits(32) != word for word in words[MT_WORDS:]):
            continue
        predicted = sum(rng.getrandbits(32) << (32 * j) for j in range(per_id))
        victim = log_in(manager, len(seen))
        try:
            hit = decode(cut(victim.session_id)) == predicted
        except ValueError:
            hit = False
        if hit:
            return caught(seen[-1], victim, manager,
                           f"ids come from Python's random module (a Mersenne Twister): after seeing "
                           f"{-(-MT_WORDS // per_id)} ids the attacker rebuilt its state and predicted the "
                           f"next login's id exactly")
    return None


class _ReplayClock:
    """A stopped clock that ticks once per call; setting calls to 0 starts it again."""

    def __init__(self, real: Callable[[], float]):
        self.start, self.calls = real(), 0

    def __call__(self) -> float:
        self.calls += 1
        return self.start + self.calls * (1000 if isinstance(self.start, int) else 1e-6)


def reseeded(new_manager: Callable[[], Any]) -> Figure | None:
    """Reseed the global random, replay the clock, log the same users in again: the same ids?"""
    real = {name: getattr(time, name) for name in _STOPPED if hasattr(time, name)}
    state = random.getstate()
    runs = []
    try:
        clocks = {name: _ReplayClock(function) for name, function in real.items()}
        for name, clock in clocks.items():
            setattr(time, name, clock)
        for seed in (1, 1, 2):
            random.seed(seed)
            for clock in clocks.values():
                clock.calls = 0
            with new_manager() as manager:
                runs.append([manager.create_session(f"user-{n + 1}", username(n)) for n in range(RESEED_LOGINS)])
    finally:
        for name, function in real.items():
            setattr(time, name, function)
        random.setstate(state)
    first, again, other = runs
    repeats = [(i, first.index(sid)) for i, sid in enumerate(again) if sid in first]
    if not repeats:
        return None
    i, j = repeats[0]
    same = f"{username(i)} got the same id again" if i == j else f"{username(i)} got the id {username(j)} had"
    cause = ("ids follow from the clock and the login order, nothing secret: whatever random's seed, "
             if other == first else "ids come from Python's random module: reseeded with the same value, ")
    return Figure(False, EXPECTED, "ids repeat",
                  f"{cause}with the clock replayed, a fresh manager gave {len(repeats)} of {RESEED_LOGINS} logins "
                  f"the same ids again ({same}); whoever learns the seed or the state predicts every id; use {ADVICE}")
