"""One execution of a pair of the persistent manager's operations, judged against its sequential specification.

An execution holds when one order of the two calls, run one after the other by
``engines.linearizability.lifecycle``, gives what each call returned and what
every manager now answers (through its cache, and a fresh one through the file).
``persistent_pairs`` runs the pairs; this says whether each execution holds,
and if not, what broke in the learner's terms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sessionlab.engines.exploration.statements import Raised, encode
from sessionlab.engines.linearizability import lifecycle
from sessionlab.engines.linearizability.lifecycle import Call, Expected

START, TTL = 1_700_000_000.0, 60.0
NOW = START + TTL + 10  # the session is idle past its time to live: a sweep may expire it

_LABELS = {"create": "create_session('user-{k}', ...)", "get": "get_session(s)",
           "update": "update_session(s, {key!r}, {value!r})", "increment": "increment_access(s)",
           "delete": "delete_session(s)", "stats": "get_stats()", "status": "set_status(s, 'in_progress')",
           "progress": "record_progress(s, current_file='file-{k}')", "files": "record_files(s, ...)",
           "sweep": "expire_sessions()", "close": "close()"}
KEYS, VALUES = ("cart", "theme"), ("3 books", "dark")


def label(operation: str, k: int) -> str:
    return _LABELS[operation].format(k=k, key=KEYS[k], value=VALUES[k])


# -- The calls, and what a manager answers after them ----------------------------------------


def _model_call(operation: str, session_id: str, k: int, returned: Any) -> Call:
    args = {"create": (returned, f"user-{k}", f"user {k}"), "update": (KEYS[k], VALUES[k]),
            "status": ("in_progress",), "progress": (1, f"file-{k}"),
            "files": (f"capture-{k}.pcap", f"keys-{k}.log")}.get(operation, ())
    return Call(operation, session_id, args)


def answer(call: Callable[[], Any]) -> Any:
    try:
        return encode(call())
    except Exception as exc:
        return Raised.of(exc)


def _progress(progress: Any) -> tuple:
    return progress.total, progress.processed, progress.current_file, tuple(progress.failed_files)


def answers(manager: Any, session_id: str) -> dict[str, Any]:
    """What a manager answers about the session and the store."""
    return {"session": answer(lambda: manager.get_session(session_id)),
            "status": answer(lambda: manager.get_status(session_id)),
            "progress": answer(lambda: _progress(manager.get_progress(session_id))),
            "files": answer(lambda: manager.get_files(session_id)),
            "counts": answer(lambda: (manager.get_stats().active_sessions, manager.get_active_count()))}


def _expected_answers(store: lifecycle.Store, session_id: str) -> dict[str, Any]:
    record = dict(store).get(session_id)
    if record is None or record.deleted:
        session: Any = "SessionNotFound"
    else:
        session = "SessionExpired" if record.status == "expired" else record.view()
    progress = lifecycle.progress_of(store, session_id)
    _, active = lifecycle.stats(store)
    return {"session": session, "status": lifecycle.status_of(store, session_id),
            "progress": progress if isinstance(progress, str) else (0, *progress),
            "files": lifecycle.files_of(store, session_id), "counts": (active, active)}


def _fits(seen: Any, expected: Any) -> bool:
    if isinstance(seen, Raised):
        return isinstance(expected, str) and seen.is_a(expected)
    if isinstance(expected, Expected):
        return False
    if isinstance(seen, list):
        seen = tuple(seen)
    return seen == expected


def _returned_fits(operation: str, seen: Any, expected: Expected, session_id: str) -> bool:
    if expected.error:
        return isinstance(seen, Raised) and seen.is_a(expected.error)
    if isinstance(seen, Raised):
        return False
    if operation == "create":
        return isinstance(seen, str) and seen != session_id
    if operation == "stats" and isinstance(seen, (list, tuple)):
        return tuple(seen) == expected.value[:2]
    return seen == expected.value


@dataclass(frozen=True)
class Failure:
    summary: str


def judge_execution(pair: tuple[str, str], session_id: str, initial: lifecycle.Store, returned: dict[int, Any],
                    seen: dict[str, dict[str, Any]], closed: set[str] = frozenset()) -> Failure | None:
    """None if one order of the pair explains every result and answer; else what broke."""
    for k, value in returned.items():
        if isinstance(value, Raised) and not value.contract:
            return Failure(f"{label(pair[k], k)} raised {value}, an error the contract does not define")
    best: tuple[tuple[int, int], str] | None = None
    for order in ((0, 1), (1, 0)):
        store, wrong, closed_now = initial, [], False
        for k in order:
            op = pair[k]
            if op == "close":
                closed_now = True
                if isinstance(returned[k], Raised):
                    wrong.append(f"close() raised {returned[k].kind}")
                continue
            if closed_now:
                if not (isinstance(returned[k], Raised) and returned[k].contract):
                    wrong.append(f"{label(op, k)} returned after close() had closed the manager")
                continue
            store, expected = lifecycle.apply(store, _model_call(op, session_id, k, returned[k]), NOW, TTL)
            if not _returned_fits(op, returned[k], expected, session_id):
                wrong.append(f"{label(op, k)} {_gave(returned[k])}, where {_would(expected)}")
        returns_wrong = len(wrong)
        expected_answers = _expected_answers(store, session_id)
        database = seen.get("the database", {})
        for who, answered in seen.items():
            if who in closed:
                continue
            for what, value in answered.items():
                if _fits(value, expected_answers[what]):
                    continue
                if who != "the database" and what == "session" and _fits(database.get(what), expected_answers[what]):
                    wrong.append(f"{who} serves {_shown(value)} from its cache while the database holds "
                                 f"{_shown(database[what])}: the cache is stale")
                else:
                    wrong.append(f"{who} answers {what} {_shown(value)}, where {_shown(expected_answers[what])} "
                                 f"was due")
        if not wrong:
            return None
        text = f"run one after the other ({' then '.join(label(pair[k], k) for k in order)}): " + "; ".join(wrong)
        rank = (returns_wrong, len(wrong))
        if best is None or rank < best[0]:
            best = (rank, text)
    return Failure(f"no order of the two calls gives these results; the closest, {best[1]}")


def _gave(value: Any) -> str:
    return f"raised {value.kind}" if isinstance(value, Raised) else f"returned {_shown(value)}"


def _would(expected: Expected) -> str:
    return f"it would raise {expected.error}" if expected.error else f"it would return {_shown(expected.value)}"


def _shown(value: Any) -> str:
    if isinstance(value, Raised):
        return value.kind
    if isinstance(value, dict) and "access_count" in value:
        return f"access_count={value['access_count']}, metadata={value['metadata']}"
    return repr(value) if not isinstance(value, str) else value


