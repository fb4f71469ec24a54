"""The persistent manager's contract, one call at a time: lifecycle, progress, files, expiry, restarts.

``contract.run_contract`` runs these too when the class is PersistentSessionManager: the lifecycle's moves and
no other; progress, files and bad input to them; a sweep expires exactly the pending and in-progress sessions
not written within the ttl; an expired session refuses every write and can log out; a deleted one is found by
no call; a restart keeps every field. A refused call changes nothing, read here and by a second manager opened
on the same file (its cache starts empty: it reads what the database holds). Each check has a file of its own
and a clock moved by hand; the sweeper never runs by itself. buggy holds every check (its bugs need threads or
processes). The whole of it takes about 0.2 s on fixed.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sessionlab import api
from sessionlab.api import IllegalTransition, InvalidInput, Progress, SessionError, SessionExpired, SessionNotFound
from sessionlab.api import _describe as describe
from sessionlab.engines.linearizability.lifecycle import EXPIRING, NEXT
from sessionlab.figure import Broken, Figure, expect
from sessionlab.implementations import CodeError, Implementation
from sessionlab.judge import hostile

MANAGER = "PersistentSessionManager"
START, TTL = 1_000_000.0, 60.0  # where every check's clock starts; the time to live
QUIET = 3600.0  # a sweep interval the background sweeper never reaches during a check
LIFECYCLE = "pending -> in_progress or failed, in_progress -> completed or failed; only the sweep expires"
FIELDS = tuple(field for field in api.Session.__dataclass_fields__ if field != "session_id")
_ON_THE_WAY = {"pending": (), "in_progress": ("in_progress",), "completed": ("in_progress", "completed"),
               "failed": ("failed",)}
READS = ("get_session", "get_status", "get_progress", "get_files", "session_exists")
WRITES = {"update_session": ("seen", True), "increment_access": (), "set_status": ("in_progress",), "set_total": (9,),
          "record_progress": (), "record_files": ("/captures/z.pcap", "/captures/z.keys")}  # the arguments after the id


def _call(manager: Any, method: str, session_id: Any) -> Any:
    return getattr(manager, method)(session_id, *WRITES.get(method, ()))


class _Said(str):  # an answer that is no value: "raises SessionExpired", "returns a session"
    __repr__ = str.__str__


def _answers(manager: Any, watch: dict[str, str]) -> dict[str, Any]:
    """Everything the manager answers about the watched sessions (by name), and its counts."""
    found: dict[str, Any] = {}
    for name, session_id in watch.items():
        prefix = f"{name}'s " if name else ""
        for read in READS:
            try:
                answer = _call(manager, read, session_id)
            except SessionError as exc:
                found[f"{prefix}{read}()"] = _Said(f"raises {type(exc).__name__}")
                continue
            if read == "get_session":
                found[f"{prefix}get_session()"] = _Said("returns a session")
                found.update({f"{prefix}get_session().{field}": dict(answer.metadata) if field == "metadata"
                              else getattr(answer, field) for field in FIELDS})
            elif read == "get_progress":
                found.update(_progress(answer, prefix))
            else:
                found[f"{prefix}{read}()"] = tuple(answer) if read == "get_files" else answer
    stats = manager.get_stats()
    return {**found, "get_stats().total_sessions": stats.total_sessions, "get_stats().active_sessions":
            stats.active_sessions, "get_active_count()": manager.get_active_count(),
            "get_cleanup_queue_size()": manager.get_cleanup_queue_size()}


def _progress(progress: Any, prefix: str = "") -> dict[str, Any]:
    expect(isinstance(progress, Progress), f"get_progress returned {describe(progress)}, not a Progress")
    return {f"{prefix}get_progress().{field}": getattr(progress, field) for field in Progress.__dataclass_fields__}


def _listed(found: list[str]) -> str:
    return ", ".join(found[:4] + ([f"and {len(found) - 4} more"] if len(found) > 4 else []))


def _changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What differs between two sets of answers (the questions both asked), in words; empty if nothing."""
    return _listed([f"{key} {old!r} -> {after[key]!r}" for key, old in before.items()
                    if key in after and (type(old), old) != (type(after[key]), after[key])])


def _mismatches(want: dict[str, Any], got: dict[str, Any]) -> str:
    """Where the answers are not what they should be, in words; empty if they all are."""
    got = {key: got.get(key, _Said("not answered")) for key in want}
    return _listed([f"{key} is {got[key]!r}, not {value!r}" for key, value in want.items()
                    if (type(value), value) != (type(got[key]), got[key])])


class _Probe:
    """A manager of the implementation on a file of its own, under a clock (the probe) moved by hand."""

    def __init__(self, implementation: Implementation):
        self.implementation, self.files, self.now, self.watched = implementation, implementation.files, START, {}
        self.folder, self.manager = Path(tempfile.mkdtemp(prefix="sessionlab-contract-")), None

    def __call__(self) -> float:
        return self.now

    def open(self) -> Any:
        """A new manager on the probe's file: its cache starts empty, so it reads what the database holds."""
        return self.implementation.new(MANAGER, path=str(self.folder / "sessions.sqlite3"), ttl=TTL,
                                       sweep_interval=QUIET, clock=self)

    def login(self, status: str = "pending", user_id: str = "u-1") -> str:
        """A session holding metadata, progress and files, moved along the lifecycle to status."""
        session_id = self.manager.create_session(user_id, "Ada")
        self.manager.update_session(session_id, "theme", "dark")
        self.manager.set_total(session_id, 4)
        self.manager.record_progress(session_id, processed=2, current_file="b.pcap", failed_file="a.pcap")
        self.manager.record_files(session_id, f"/captures/{user_id}.pcap", f"/captures/{user_id}.keys")
        for step in _ON_THE_WAY[status]:
            self.manager.set_status(session_id, step)
        return session_id

    def expire(self, session_id: str) -> None:
        """Let every session idle past the ttl and sweep (before the check's other sessions exist)."""
        self.now += TTL + 1
        self.manager.expire_sessions()
        expect(self.manager.get_status(session_id) == "expired", "expire_sessions() did not expire an "
                f"in-progress session idle {TTL + 1:g} s (the ttl is {TTL:g} s)")

    def raised(self, exc: Exception) -> str:
        where = CodeError.of(exc, self.files).where  # a session error's text may hold the id, a secret: not shown
        return (type(exc).__name__ if isinstance(exc, SessionError) else CodeError.of(exc).message) + (
            f" ({where})" if where else "")

    def refused(self, operation: str, label: str, call: Callable[[], object], *, rule: str, watch: dict[str, str],
                error: type[Exception] | tuple[type[Exception], ...] = InvalidInput, stored: bool = True) -> None:
        """call() must raise error and change nothing: here, and (if stored) in the database."""
        names = " or ".join(kind.__name__ for kind in (error if isinstance(error, tuple) else (error,)))
        before = _answers(self.manager, watch)
        self.now += 1  # a session touched anyway shows it in last_accessed
        try:
            result = call()
        except error:
            pass
        except Exception as exc:
            raise Broken(f"{operation} raised {self.raised(exc)} for {label}; the contract says {names}: {rule}",
                          names, type(exc).__name__) from None
        else:
            changes = _changes(before, after := _answers(self.manager, watch))
            renewed = before.get("get_status()") == "expired" != after.get("get_status()")
            raise Broken(f"{operation} accepted {label}" + (f", returned {describe(result)}" if result is not None
                          else "") + (" and renewed it" if renewed else "") + (f" ({changes})" if changes else "")
                          + f"; {rule}", names, "accepted")
        changes = _changes(before, _answers(self.manager, watch))
        expect(not changes, f"{operation} refused {label} but changed {changes}", "nothing changed", changes)
        if stored:
            self.agrees(before, watch, f"{operation} refused {label}", "a manager answers what the database holds, "
                        "and a refused call changes neither", here=False)

    def agrees(self, want: dict[str, Any], watch: dict[str, str], what: str, why: str, here: bool = True) -> None:
        """The answers are what they should be, here (if here) and as a second manager on the file reads them."""
        if here:
            wrong = _mismatches(want, _answers(self.manager, watch))
            expect(not wrong, f"{what}, {wrong}: {why}")
        second = self.open()
        try:
            wrong = _mismatches(want, _answers(second, watch))
        finally:
            second.close()
        expect(not wrong, f"{what}, a second manager opened on the same file reads that {wrong}: "
                + ("the database does not hold what this manager answers" if here else why))


_CHECKS: list[tuple[str, Callable[[_Probe], str]]] = []


def _check(name: str) -> Callable[[Callable[[_Probe], str]], Callable[[_Probe], str]]:
    """Register a check: it returns what held, or raises Broken saying what broke."""
    return lambda function: _CHECKS.append((name, function)) or function


def _runner(function: Callable[[_Probe], str]) -> Callable[[Implementation], Figure]:
    def run(implementation: Implementation) -> Figure:
        probe = _Probe(implementation)
        try:
            probe.manager = probe.open()
            summary = function(probe)
            probe.manager.close()  # a close that raises is the code's error, reported where it raised
            return Figure(True, "holds", "holds", summary)
        except Broken as broken:
            return broken.figure()
        finally:
            with contextlib.suppress(Exception):  # closing twice is harmless; what broke is the figure
                probe.manager.close()
            shutil.rmtree(probe.folder, ignore_errors=True)

    return run


def contract_checks() -> tuple[tuple[str, Callable[[Implementation], Figure]], ...]:
    """Every check of the persistent contract, in the order they run: (name, check)."""
    return tuple((name, _runner(function)) for name, function in _CHECKS)


# -- The checks --------------------------------------------------------------------------------


@_check("expire_sessions expires exactly the pending and in-progress sessions not written within the ttl")
def _expiry(p: _Probe) -> str:
    idle = f"a session not written for {TTL + 1:g} s (the ttl is {TTL:g} s) expires; reads do not refresh it"
    done = "a finished job's status was rewritten to expired"
    plan = {f"an idle {s} session": (p.login(s, f"u-{s}"), "expired", idle) for s in EXPIRING}
    plan.update({f"a {s} session": (p.login(s, f"u-{s}"), s, done) for s in ("completed", "failed")})
    plan["a deleted session"] = (p.login("pending", "u-gone"), _Said("raises SessionNotFound"), "it stays deleted")
    p.manager.delete_session(plan["a deleted session"][0])
    for method in READS:
        plan[f"a session only read by {method}"] = (p.login("pending", f"r-{method}"), "expired",
                                                    "reads do not refresh the last update")
    for method in WRITES:
        plan[f"a session written {TTL - 1:g} s before by {method}"] = (
            p.login("pending" if method == "set_status" else "in_progress", f"w-{method}"), "in_progress",
            "a session written within the ttl keeps its status (every write refreshes the last update)")
    p.now += 2
    for name, (session_id, _, _) in plan.items():
        if name.startswith(("a session only read by ", "a session written ")):
            _call(p.manager, name.split(" by ")[-1], session_id)
    plan["a session created within the ttl"] = (p.manager.create_session("u-new", "Ada"), "pending", "it is new")
    p.watched = everyone = {name: session_id for name, (session_id, _, _) in plan.items()}
    want, p.now = _answers(p.manager, everyone), p.now + TTL - 1
    count, after = p.manager.expire_sessions(), _answers(p.manager, everyone)
    for name, (_, should, why) in plan.items():
        got = after[f"{name}'s get_status()"]
        expect(got == should, f"expire_sessions() expired {name}: {why}" if got == "expired" else
                f"expire_sessions() left {name} as {got!r}, not {should!r}: {why}", repr(should), repr(got))
    expired = [name for name, (_, should, _) in plan.items() if should == "expired"]
    expect(type(count) is int and count == len(expired), f"expire_sessions() returned {describe(count)}; it expired "
            f"{len(expired)} sessions (a deleted one is purged, not counted)", str(len(expired)), describe(count))
    for name in expired:
        want = {key: value for key, value in want.items() if not key.startswith(f"{name}'s get_session().")}
        want.update({f"{name}'s get_status()": "expired", f"{name}'s get_session()": _Said("raises SessionExpired")})
    want.update({"get_active_count()": want["get_active_count()"] - len(expired), "get_cleanup_queue_size()": 0})
    p.agrees({key: value for key, value in want.items() if not key.startswith("get_stats()")}, everyone,
             "after expire_sessions()", "a sweep expires sessions, which keep what they hold, and purges deleted rows")
    again, changes = p.manager.expire_sessions(), _changes(after, _answers(p.manager, everyone))
    expect(again == 0 and not changes, f"a second sweep at once returned {describe(again)}"
            + (f" and changed {changes}" if changes else "") + ": it has nothing left to expire")
    return (f"{len(expired)} of {len(plan)} sessions expired (idle, or only read); finished, written and deleted ones "
            f"not; a second sweep expires nothing")


@_check("set_status moves a session along its lifecycle only; a refused move changes nothing")
def _lifecycle(p: _Probe) -> str:
    by_status = {"expired": p.login("in_progress", "u-0")}
    p.expire(by_status["expired"])
    by_status.update({status: p.login(status, f"u-{status}") for status in _ON_THE_WAY})
    for current in NEXT:
        for target in NEXT:
            label, watch = f"{current} -> {target}", {"": by_status[current]}
            if target not in NEXT[current]:
                p.refused("set_status", label, partial(p.manager.set_status, watch[""], target), watch=watch,
                          error=(IllegalTransition, SessionExpired) if current == "expired" else IllegalTransition,
                          rule=f"a {current} session may become {' or '.join(NEXT[current]) or 'nothing else'} "
                          f"(the lifecycle: {LIFECYCLE})")
                continue
            watch = {"": p.login(current, "u-moved")}
            want, p.now = _answers(p.manager, watch), p.now + 1
            try:
                result = p.manager.set_status(watch[""], target)
            except SessionError as exc:
                raise Broken(f"set_status refused {label} ({p.raised(exc)}); the lifecycle allows it: {LIFECYCLE}")
            expect(result is None, f"set_status returned {describe(result)}; it returns None")
            want.update({"get_status()": target, "get_session().last_accessed": p.now})
            p.agrees(want, watch, f"after set_status {label}", "a move sets the status and the last update only")
    watch = {"": by_status["pending"]}
    before, bad = _answers(p.manager, watch), [(f"status {describe(value)}", value) for value in
                                               (None, 1, b"in_progress", "", "IN_PROGRESS", "in progress", "done")]
    for label, value in bad + [(f"{what} as status", value) for what, value in hostile.hostile_values("in_progress")]:
        p.refused("set_status", label, partial(p.manager.set_status, watch[""], value), stored=False, watch=watch,
                  rule="a status is one of " + ", ".join(NEXT) + ", as an exact str")
    p.agrees(before, watch, "set_status refused bad statuses", "a refused call changes nothing", here=False)
    return (f"the {sum(map(len, NEXT.values()))} legal moves made, every other refused, {len(bad)} bad and "
            f"{len(hostile.hostile_values())} hostile statuses refused, nothing changed")


@_check("set_total, record_progress and record_files store what they are given and touch the session")
def _progress_and_files(p: _Probe) -> str:
    other, manager = {"another session": p.login("in_progress", "u-2")}, p.manager
    watch, failed = {"": manager.create_session("u-1", "Ada"), **other}, ("b.pcap", "d.pcap")
    steps = [("set_total", (10,), {}, (10, 0, None, ())), ("record_progress", (), {}, (10, 1, None, ())),
             ("record_progress", (), {"processed": 2, "current_file": "a.pcap"}, (10, 3, "a.pcap", ())),
             ("record_progress", (), {"processed": 0, "failed_file": "b.pcap"}, (10, 3, "a.pcap", failed[:1])),
             ("record_progress", (), {"current_file": "c.pcap", "failed_file": "d.pcap"}, (10, 4, "c.pcap", failed)),
             ("set_total", (0,), {}, (0, 4, "c.pcap", failed)), ("record_files", ("/c/1.pcap", "/c/1.keys"), {}, None),
             ("record_progress", (), {"current_file": "données/π.pcap"}, (0, 5, "données/π.pcap", failed)),
             ("record_files", ("/d/2.pcap", "/d/2.keys"), {}, None)]
    want = {**_answers(manager, other), **_progress(Progress(0, 0, None, ())), "get_files()": (None, None),
            "get_session().last_accessed": START}  # and the other session keeps all it holds
    for name, args, options, progress in [("create_session", (), {}, None)] + steps:
        text = f"{name}(s{''.join(f', {arg!r}' for arg in args)}{''.join(f', {k}={v!r}' for k, v in options.items())})"
        if name != "create_session":
            p.now += 1
            result = getattr(manager, name)(watch[""], *args, **options)
            expect(result is None, f"{text} returned {describe(result)}; it returns None")
            want.update({**(_progress(Progress(*progress)) if progress else {"get_files()": args}),
                         "get_session().last_accessed": p.now})
        wrong = _mismatches(want, _answers(manager, watch))
        expect(not wrong, f"after {text}, {wrong} (processed adds up, current_file is kept when a call gives none, "
                f"each call appends its failed file once, every write refreshes the last update)")
    p.agrees(_answers(manager, watch), watch, "after the progress and file calls", "they must be in the database, "
             "not only in this manager's memory", here=False)
    return f"{len(steps)} progress and file calls read back here and from the file, each touching the session"


@_check("bad ids, numbers and file names given to the persistent methods are refused")
def _bad_input(p: _Probe) -> str:
    manager, watch = p.manager, {"": p.login("in_progress")}
    s, before = watch[""], _answers(p.manager, watch)
    calls = [(method, label, partial(_call, manager, method, bad), "a session id is a non-empty string of letters, "
              "digits, '-' and '_'") for label, bad in [(f"session_id {describe(bad)}", bad) for bad in hostile.BAD_IDS]
             + [(f"{what} as session_id", bad) for what, bad in hostile.hostile_values()]
             for method in READS[1:] + tuple(WRITES)[2:]]
    for bad in (-1, True, False, 1.0, None, "3", 2**63, hostile.HOSTILE_NUMBERS[0][1]):
        calls += [("set_total", f"total {describe(bad)}", partial(manager.set_total, s, bad), "a total is an int >= 0"),
                  ("record_progress", f"processed {describe(bad)}", partial(manager.record_progress, s, processed=bad),
                   "processed is an int >= 0")]
    rule = "a file name is a non-empty printable str of at most 128 characters"
    for label, bad in ([(describe(bad), bad) for bad in hostile.BAD_NAMES if bad is not None] + [
            (f"holding {char!a}", f"a{char}.pcap") for char in hostile.CONTROL_CHARACTERS] + hostile.hostile_values()):
        calls += [("record_progress", f"{field} {label}", partial(manager.record_progress, s, **{field: bad}), rule)
                  for field in ("current_file", "failed_file")] + [
            ("record_files", f"capture_path {label}", partial(manager.record_files, s, bad, "k.log"), rule),
            ("record_files", f"keylog_path {label}", partial(manager.record_files, s, "c.pcap", bad), rule)]
    calls.append(("record_files", "capture_path None", partial(manager.record_files, s, None, "k.log"), rule))
    for method, label, call, rule in calls:
        p.refused(method, label, call, rule=rule, watch={} if "session_id" in label else watch, stored=False)
    p.agrees(before, watch, f"{len(calls)} bad calls were refused", "a refused call changes nothing", here=False)
    return f"{len(calls)} bad ids, numbers and file names refused by the persistent methods, nothing changed"


@_check("an expired session refuses every write and can log out; a deleted one is found by no call")
def _expired_then_deleted(p: _Probe) -> str:
    watch = {"": p.login("in_progress")}
    p.expire(watch[""])
    watch.update(other := {"another session": p.login("in_progress", "u-2")})
    p.agrees({"get_session()": _Said("raises SessionExpired"), "get_status()": "expired", "session_exists()": True,
              **_progress(Progress(4, 2, "b.pcap", ("a.pcap",))), "get_files()": ("/captures/u-1.pcap",
              "/captures/u-1.keys")}, watch, "for an expired session", "it stays, and keeps what it holds")
    for method in WRITES:
        p.refused(method, "an expired session", partial(_call, p.manager, method, watch[""]), watch=watch,
                  error=(IllegalTransition, SessionExpired) if method == "set_status" else SessionExpired,
                  rule="it must raise SessionExpired and change nothing")
    want = {**_answers(p.manager, other), **{f"{method}()": _Said("raises SessionNotFound") for method in READS[:-1]},
            "session_exists()": False}
    try:
        p.manager.delete_session(watch[""])
    except SessionError as exc:
        raise Broken(f"delete_session raised {p.raised(exc)} for an expired session; an expired session can still "
                      f"log out, as any session not yet deleted") from None
    want["get_cleanup_queue_size()"] += 1
    expect(p.manager.session_exists("no-such-session") is False, "session_exists is not False for an unknown id")
    p.agrees(want, watch, "after delete_session on an expired session", "a deleted session is found by no call")
    for session_id, label in ((watch[""], "a deleted session"), ("no-such-session", "an unknown session id")):
        for method in (*READS[:-1], *WRITES, "delete_session"):
            p.refused(method, label, partial(_call, p.manager, method, session_id), error=SessionNotFound,
                      watch=other, rule="no call finds a session that was deleted or never created", stored=False)
    count = p.manager.expire_sessions()
    expect(count == 0, f"expire_sessions() returned {describe(count)} with nothing to expire: a deleted session "
            "is purged, not expired")
    del want["get_stats().total_sessions"]  # the purged row may no longer be counted
    p.agrees({**want, "get_cleanup_queue_size()": 0}, watch, "after expire_sessions()", "the sweep purges the "
             "deleted row and changes nothing else")
    return (f"{len(WRITES)} writes on an expired session refused, its logout made; "
            f"{2 * (len(READS) + len(WRITES))} calls on deleted and unknown ids not found; the row purged")


@_check("a restart (close, then a new manager on the same file) keeps every session as it was")
def _restart(p: _Probe) -> str:
    _expiry(p)  # sessions of every status, written, read, expired, deleted and purged
    watch = {**p.watched, "a session deleted after the sweep": p.login("in_progress", "u-late")}
    p.manager.delete_session(watch["a session deleted after the sweep"])
    before = _answers(p.manager, watch)
    p.manager.close()
    p.manager = p.open()
    changes = _changes(before, _answers(p.manager, watch))
    expect(not changes, f"a restart changed {changes}: all a session holds is kept in the database")
    count = p.manager.increment_access(watch["a session written 59 s before by increment_access"])
    expect(count == 2, f"after a restart increment_access counted {describe(count)}, not 2: the count is kept")
    return f"{len(watch)} sessions of every status, with their counts, metadata, progress and files, kept"
