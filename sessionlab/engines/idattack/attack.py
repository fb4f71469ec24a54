"""The lab plays attacker on session ids.

A session id is a bearer token: whoever holds it is logged in as its owner.
``attack_ids`` logs many users in, one after the other, and tries what an
attacker would: read a uuid1 or a clock out of the id, step a counter in any
encoding, hash counters, users and login times, rebuild Python's Mersenne
Twister from its outputs, replay the global ``random`` with the clock stopped,
and count the random bits an id carries. The first attack that works decides.
An id needs MIN_BITS random bits (OWASP's floor); below RECOMMENDED_BITS it
is accepted with a warning, which is where a uuid4 (122 bits) stands.

Out of its sight: a private ``random.Random`` that shows less than whole 32-bit
outputs (``choices``, ``randint``, a uuid4 made from it) or draws between ids;
clocks read through ``datetime`` or a name bound before the attack (``from time
import time``); hashes of time_ns, of several fields, or with a secret salt.
Those still face the entropy rule.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import string
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from sessionlab.engines.idattack.logins import ADVICE, B64URL, EXPECTED, Login, b64_bytes, caught, id_cores, log_in
from sessionlab.engines.idattack.random_state import mersenne, reseeded
from sessionlab.figure import Figure

__all__ = ["LOGINS", "MIN_BITS", "RECOMMENDED_BITS", "attack_ids", "entropy_bits"]

LOGINS = 200  # logins sampled, by distinct users, one after the other
READ_LOGINS = 50  # the first logins whose ids are read as numbers (clocks, counters)
MIN_BITS = 64  # the least randomness a session id may carry (OWASP's floor)
RECOMMENDED_BITS = 128  # below this, an accepted id carries a warning
COUNTER_REACH = 256  # hashed counters tried: 0 .. COUNTER_REACH - 1
HASHED_LOGINS = 5  # logins whose user (the first) and login time (the most closely timed) are hashed
MAX_TIME_GUESSES = 1000  # times tried per login and unit; a wider window is skipped
MIN_HASH_CHARS = 12  # a shorter match could be luck
_HASHES = {name: getattr(hashlib, name) for name in ("md5", "sha1", "sha256", "sha512", "blake2b", "sha3_256")}
_COUNTER_FORMATS = ("{}", "{:06d}", "sess-{}", "sess-{:06d}", "sess_{}", "session-{}", "session_{}")
_UNITS = {0: "nanoseconds", 3: "microseconds", 6: "milliseconds", 9: "seconds"}
_ALNUM = string.ascii_letters + string.digits
_HEX = set("0123456789abcdefABCDEF")
_URLSAFE = bytes.maketrans(b"+/", b"-_")
# Alphabets an id is written in, and their sizes: the entropy estimate rounds up to one of them.
_CLASSES = ((string.digits, 10), ("0123456789abcdef", 16), ("0123456789ABCDEF", 16),
            (string.digits + string.ascii_lowercase, 36), (string.digits + string.ascii_uppercase, 36),
            (_ALNUM, 62), (_ALNUM + "-_", 64), (_ALNUM + "+/", 64))
_RUNS = tuple(({10: "decimal", 16: "hex"}.get(size, "base36"), chars, re.compile(f"[{chars}]+"))
              for chars, size in _CLASSES if size <= 36)
_ALNUM_RUN = re.compile("[A-Za-z0-9]{2,}")
_UUID_RE = re.compile("[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


# -- Numbers written in an id: clocks and counters ------------------------------------


class _Reading(NamedTuple):
    kind: str  # decimal, hex, base36, base64 (big-endian), base64 (little-endian)
    start: int
    end: int
    value: int
    width: int  # digits of zero padding, or bytes for base64
    style: str  # the digits, or "url"/"std" plus "=" when padded

    def stepped(self, sid: str, step: int) -> str | None:
        """sid with this number moved by step, written the same way."""
        value = self.value + step
        if value < 0:
            return None
        if self.kind.startswith("base64"):
            try:
                raw = value.to_bytes(self.width, "big" if "big" in self.kind else "little")
            except OverflowError:
                return None
            text = (base64.urlsafe_b64encode if self.style.startswith("url") else base64.b64encode)(raw).decode()
            text = text if "=" in self.style else text.rstrip("=")
        else:
            digits = []
            while value or not digits:
                value, digit = divmod(value, len(self.style))
                digits.append(self.style[digit])
            text = "".join(reversed(digits)).rjust(self.width, self.style[0])
        return sid[:self.start] + text + sid[self.end:]


def _readings(sid: str) -> list[_Reading]:
    """Every number the id could be holding: runs of digits in several bases, and base64 bytes."""
    found = []
    for kind, digits, pattern in _RUNS:
        for match in pattern.finditer(sid):
            text = match.group()
            width = len(text) if text[0] == digits[0] and len(text) > 1 else 1
            found.append(_Reading(kind, match.start(), match.end(), int(text, len(digits)), width, digits))
    for start, end in sorted({(0, len(sid))} | {match.span() for match in _ALNUM_RUN.finditer(sid)}):
        text, raw = sid[start:end], b64_bytes(sid[start:end])
        if raw:
            style = ("url" if set(text.rstrip("=")) <= B64URL else "std") + "=" * text.endswith("=")
            found += [_Reading(f"base64 ({order}-endian)", start, end, int.from_bytes(raw, order), len(raw), style)
                      for order in ("big", "little")]
    return found


def _uuid1(logins: list[Login], manager: Any) -> Figure | None:
    found = _uuids(logins, 1)
    if found is None:
        return None
    return caught(logins[0], logins[1], manager,
                   f"ids are uuid1 values, the login time in 100 ns ticks plus this machine's address; "
                   f"{logins[1].username}'s id is {logins[0].username}'s with the time moved "
                   f"{found[1].time - found[0].time} ticks on")


def _clock(logins: list[Login], readings: list[list[_Reading]], manager: Any) -> Figure | None:
    """A clock reading written in the id, in any unit and base, with little else beside it."""
    top = max(hi for login in logins for _, hi in login.clocks.values()) + 1
    hits: dict[tuple, dict[int, tuple[_Reading, int]]] = {}
    for i, (login, found) in enumerate(zip(logins, readings)):
        for r in (r for r in found if 1000 <= r.value <= top):
            for clock, (lo, hi) in login.clocks.items():
                guess = round(math.log10(lo / r.value))  # the unit, as a power of ten of nanoseconds
                for exp in range(max(0, guess - 1), min(9, guess + 1) + 1):
                    if hi // 10**exp >= 1000 and lo // 10**exp - 1 <= r.value <= hi // 10**exp + 1:
                        hits.setdefault((r.kind, r.start, r.style, clock), {})[i] = (r, exp)
    for (kind, _, _, clock), seen in hits.items():
        if len(seen) < 0.9 * len(logins):
            continue
        rest = [logins[i].session_id[:r.start] + logins[i].session_id[r.end:] for i, (r, _) in seen.items()]
        bits = entropy_bits(rest)
        if bits < MIN_BITS:
            exp = Counter(exp for _, exp in seen.values()).most_common(1)[0][0]
            return caught(logins[0], logins[1], manager,
                           f"ids are clock readings, {clock}() in {_UNITS.get(exp, f'units of {10**exp} ns')} "
                           f"written in {kind}, with about {bits:.0f} bits besides; knowing when "
                           f"{logins[1].username} logged in to the millisecond leaves "
                           + ("one guess" if exp >= 6 else f"{10 ** (6 - exp)} guesses"))
    return None


def _counter(logins: list[Login], readings: list[list[_Reading]], manager: Any) -> Figure | None:
    """A number in the id that moves by the same step at each login: the encoding that explains most ids wins."""
    by_key: dict[tuple, dict[int, _Reading]] = {}
    for i, found in enumerate(readings):
        for r in found:
            by_key.setdefault((r.kind, r.start, r.width, r.style), {})[i] = r
    best: tuple | None = None  # (predictions that worked, -|step|, step, first login it worked for, reading)
    for seen in by_key.values():
        steps = Counter(seen[i + 1].value - seen[i].value for i in seen if i + 1 in seen)
        step, count = steps.most_common(1)[0] if steps else (0, 0)
        if step == 0 or count < 2 or 2 * count < sum(steps.values()):
            continue
        worked = [i for i, r in seen.items() if i + 1 in seen and seen[i + 1].value - r.value == step
                  and r.stepped(logins[i].session_id, step) == logins[i + 1].session_id]
        if worked and (best is None or (len(worked), -abs(step)) > best[:2]):
            best = (len(worked), -abs(step), step, worked[0], seen[worked[0]])
    if best is None:
        return None
    _, _, step, i, r = best
    mine, theirs = logins[i], logins[i + 1]
    base64_bytes = r.kind.startswith("base64")
    written = f"as the base64 of its {r.width} bytes, {r.kind[8:-1]}" if base64_bytes else f"in {r.kind}"
    return caught(mine, theirs, manager,
                   f"the id holds a counter written {written}, {'up' if step > 0 else 'down'} by {abs(step)} at "
                   f"each login; stepping the counter in {mine.username}'s own id gives {theirs.username}'s")


# -- Hashes -------------------------------------------------------------------------


def _digest_forms(cores: list[str]) -> list[tuple[str, Callable[[bytes], bytes]]]:
    """How a digest could be written in these ids: hex, or base64 in the alphabet the ids use."""
    chars = set().union(*cores)
    if chars <= _HEX:
        return [("hex digest", binascii.hexlify)]
    if chars <= B64URL and chars & set("-_"):
        return [("urlsafe base64 digest", lambda d: binascii.b2a_base64(d, newline=False).translate(_URLSAFE))]
    if chars <= set(_ALNUM + "+/=") and chars & set("+/"):
        return [("base64 digest", lambda d: binascii.b2a_base64(d, newline=False))]
    return []


def _hashes(preimages: Iterable[tuple[str, Any]], targets: dict[bytes, int], lengths: set[int],
            forms: list) -> tuple[str, Any, str, str, int] | None:
    """The first preimage whose hash, in some form and cut to an id's length, is an id."""
    plans = [(name, new, form_name, form, sorted(n for n in lengths if n <= len(form(new().digest()))))
             for name, new in _HASHES.items() for form_name, form in forms]
    plans = [plan for plan in plans if plan[-1]]
    for text, label in preimages:
        data = text.encode()
        for name, new, form_name, form, cuts in plans:
            out = form(new(data).digest())
            for length in cuts:
                if out[:length] in targets:
                    return text, label, name, form_name, targets[out[:length]]
    return None


def _time_preimages(login: Login) -> Iterable[tuple[str, str]]:
    """The login time as a program would write it: whole units, and time.time()'s repr."""
    lo, hi = login.clocks["time.time"]
    for exp in (9, 6, 3):
        if hi // 10**exp - lo // 10**exp + 2 <= MAX_TIME_GUESSES:
            yield from ((str(value), _UNITS[exp]) for value in range(lo // 10**exp - 1, hi // 10**exp + 2))
    moment = lo / 1e9
    for _ in range(MAX_TIME_GUESSES):
        if moment > hi / 1e9:
            break
        yield repr(moment), "seconds, as time.time() writes them"
        moment = math.nextafter(moment, math.inf)


def _user_preimages(login: Login, n: int) -> Iterable[tuple[str, str]]:
    yield from ((login.user_id, "user id"), (login.username, "username"), (login.user_id + login.username, "names"))
    for count, sep in ((count, sep) for count in (n, n + 1) for sep in ("", "-", ":", "_")):
        yield from ((text, "user and login count") for text in
                    (f"{login.user_id}{sep}{count}", f"{count}{sep}{login.user_id}", f"{login.username}{sep}{count}"))


def _hashed(logins: list[Login], manager: Any) -> Figure | None:
    """Ids that are hashes of a counter, of the user, or of the login time."""
    ids = [login.session_id for login in logins]
    cores, _ = id_cores(ids)
    forms = _digest_forms(cores)
    lengths = {len(text) for text in cores + ids if len(text) >= MIN_HASH_CHARS}
    if not forms or not lengths:
        return None
    key = (lambda core: core.lower().encode()) if forms[0][0] == "hex digest" else str.encode
    targets: dict[bytes, int] = {}
    for i, (sid, core) in enumerate(zip(ids, cores)):
        targets.setdefault(key(core), i)
        targets.setdefault(key(sid), i)
    counters = ((fmt.format(n), (fmt, n)) for n in range(COUNTER_REACH) for fmt in _COUNTER_FORMATS)
    hit = _hashes(counters, targets, lengths, forms)
    if hit:
        _, (fmt, number), name, form, i = hit
        if i + 1 == len(logins):
            i, number = i - 1, number - 1
        mine, theirs = logins[i], logins[i + 1]
        follows = dict(forms)[form](_HASHES[name](fmt.format(number + 1).encode()).digest())[:len(cores[i + 1])] \
            == key(cores[i + 1])
        return caught(mine, theirs, manager,
                       f"{mine.username}'s id is the {name} {form} of a counter ({fmt.format(number)!r}), so "
                       + (f"{theirs.username}'s is the {name} of the next one ({fmt.format(number + 1)!r})"
                          if follows else f"the next ids are the {name} of the next numbers"), follows)
    for n in range(1, HASHED_LOGINS + 1):
        login = logins[n]
        hit = _hashes(_user_preimages(login, n), {key(cores[n]): n, key(ids[n]): n}, lengths, forms)
        if hit:
            return caught(logins[n - 1], login, manager,
                           f"{login.username}'s id is the {hit[2]} {hit[3]} of their {hit[1]} ({hit[0]!r}): "
                           f"anyone who knows it computes the id")
    width = {n: logins[n].clocks["time.time"][1] - logins[n].clocks["time.time"][0] for n in range(1, READ_LOGINS)}
    for n in sorted(width, key=width.get)[:HASHED_LOGINS]:
        login = logins[n]
        hit = _hashes(_time_preimages(login), {key(cores[n]): n, key(ids[n]): n}, lengths, forms)
        if hit:
            return caught(logins[n - 1], login, manager,
                           f"ids are the {hit[2]} {hit[3]} of the login time in {hit[1]} ({hit[0]!r}); "
                           f"hashing the moments around {login.username}'s login gives their id")
    return None


# -- Repeats and entropy --------------------------------------------------------------


def entropy_bits(ids: list[str]) -> float:
    """The randomness the ids appear to carry, counted per character position."""
    columns = [{sid[p] for sid in ids if len(sid) > p} for p in range(max(map(len, ids), default=0))]
    varying = [column for column in columns if len(column) > 1]
    seen = set().union(*varying)
    alphabet = next((size for chars, size in _CLASSES if seen <= set(chars)), len(seen))
    return sum(math.log2(alphabet if 2 * len(column) >= alphabet else len(column)) for column in varying)


def _uuids(logins: list[Login], version: int) -> list[uuid.UUID] | None:
    """The uuids the ids hold (hex with or without dashes, anywhere, or base64), if all are of this version."""
    found = []
    for login in logins:
        match, raw = _UUID_RE.search(login.session_id), b64_bytes(login.session_id) or b""
        found.append(uuid.UUID(hex=match.group()) if match else uuid.UUID(bytes=raw) if len(raw) == 16 else None)
    ok = all(u is not None and u.variant == uuid.RFC_4122 and u.version == version for u in found)
    return found if ok else None


def _duplicates(logins: list[Login]) -> Figure | None:
    owner: dict[str, Login] = {}
    for login in logins:
        first = owner.setdefault(login.session_id, login)
        if first is not login:
            return Figure(False, EXPECTED, "ids repeat", f"{first.username} and {login.username} were given the "
                          f"same session id: each is logged in as the other")
    return None


def _entropy(logins: list[Login]) -> Figure:
    """The entropy rule: reject below MIN_BITS; accept from there, with a warning below RECOMMENDED_BITS."""
    bits = entropy_bits([login.session_id for login in logins])
    tries = f"2^{max(bits - 1, 0):.0f} tries"
    if bits < MIN_BITS:
        return Figure(False, f"{MIN_BITS} bits", f"{bits:.0f} bits",
                      f"ids carry about {bits:.0f} bits of randomness; a session id needs at least {MIN_BITS} "
                      f"({ADVICE}): {logins[0].username} could guess {logins[1].username}'s in about {tries}")
    held = f"{len(logins)} logins: no clock, counter, hash or random state gave away another user's id"
    if bits >= RECOMMENDED_BITS:
        return Figure(True, EXPECTED, EXPECTED, f"{held}, and ids carry about {bits:.0f} bits of randomness")
    uuid4 = " (uuid4 values: the version and variant bits are fixed)" if _uuids(logins, 4) is not None else ""
    return Figure(True, EXPECTED, EXPECTED,
                  f"{held}; a warning: ids carry about {bits:.0f} bits of randomness{uuid4}, enough for the "
                  f"floor of {MIN_BITS} (a guess takes about {tries}); {RECOMMENDED_BITS} or more is the usual "
                  f"recommendation ({ADVICE})")


def attack_ids(new_manager: Callable[[], Any]) -> Figure:
    """Log LOGINS users in on a fresh manager and try to predict one user's id from another's."""
    with new_manager() as manager:
        logins = [log_in(manager, n) for n in range(LOGINS)]
        first, readings = logins[:READ_LOGINS], [_readings(login.session_id) for login in logins[:READ_LOGINS]]
        for attack in (lambda: _uuid1(logins, manager), lambda: _clock(first, readings, manager),
                       lambda: _counter(first, readings, manager), lambda: _hashed(logins, manager),
                       lambda: _duplicates(logins), lambda: mersenne(logins, manager)):
            figure = attack()
            if figure is not None:
                return figure
    return reseeded(new_manager) or _entropy(logins)
