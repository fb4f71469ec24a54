"""Correct fixes of the stores in the wild unlike the reference: each a way an application
really serialises a session's load-change-save on top of its framework."""

from __future__ import annotations

import textwrap
from pathlib import Path

from sessionlab import implementations
from sessionlab.learner import workspace

ROOT = Path(__file__).resolve().parent.parent

# One lock for every session: correct, and requests on different sessions wait for each other.
ONE_GLOBAL_LOCK = {
    "SessionManager._session_lock": '''
        def _session_lock(self, session_id):
            """Every session's load-change-save, under one lock."""
            check_session_id(session_id)
            return self._lock
    ''',
}

# The manager's own counter lock made re-entrant and taken around the whole request: the
# counters are bumped under it again, from inside.
ONE_RLOCK = {
    "SessionManager.__init__": '''
        def __init__(self, clock=time.time):
            self._clock = clock
            # Guards the counters below, and every session's load-change-save.
            self._lock = threading.RLock()
            self._total_sessions = 0
            self._active_sessions = 0
            self._cache_hits = 0
            self._cache_misses = 0
            self._closed = False
    ''',
    "SessionManager._session_lock": '''
        def _session_lock(self, session_id):
            """Every session's load-change-save, under the re-entrant manager lock."""
            check_session_id(session_id)
            return self._lock
    ''',
}

# A lock per session kept in a dict, made under the manager's lock and dropped when the last
# request that uses it is done (a reference count), so the table never grows.
PER_KEY_LOCKS = {
    "SessionManager.__init__": '''
        def __init__(self, clock=time.time):
            self._clock = clock
            # Guards the counters below and the table of session locks.
            self._lock = threading.Lock()
            self._session_locks = {}  # session key -> [its lock, how many requests use it]
            self._total_sessions = 0
            self._active_sessions = 0
            self._cache_hits = 0
            self._cache_misses = 0
            self._closed = False
    ''',
    "SessionManager._session_lock": '''
        @contextlib.contextmanager
        def _session_lock(self, session_id):
            """This session's lock, held for the request; the table keeps it while a request uses it."""
            key = check_session_id(session_id)
            with self._lock:
                entry = self._session_locks.setdefault(key, [threading.Lock(), 0])
                entry[1] += 1
            try:
                with entry[0]:
                    yield
            finally:
                with self._lock:
                    entry[1] -= 1
                    if entry[1] == 0:
                        del self._session_locks[key]
    ''',
}

# A lock every process sharing the cache would see: the cache's atomic add, retried every
# millisecond until the request holding it deletes it (or it times out after 30 s).
SPIN_ON_CACHE_ADD = {
    "SessionManager._session_lock": '''
        @contextlib.contextmanager
        def _session_lock(self, session_id):
            """This session's lock, as a key of the cache that only one request can add."""
            from django.core.cache import caches
            from django.conf import settings

            cache = caches[settings.SESSION_CACHE_ALIAS]
            name = "lock:" + check_session_id(session_id)
            while not cache.add(name, 1, timeout=30):
                time.sleep(0.001)
            try:
                yield
            finally:
                cache.delete(name)
    ''',
}

# The same spin, but the lock taken with a get and then a set: two requests both see no key and
# both go in (the check-then-act the cache's add exists to avoid).
SPIN_ON_GET_THEN_SET = {
    "SessionManager._session_lock": '''
        @contextlib.contextmanager
        def _session_lock(self, session_id):
            """This session's lock, as a key of the cache: wait while it is there, then set it."""
            from django.core.cache import caches
            from django.conf import settings

            cache = caches[settings.SESSION_CACHE_ALIAS]
            name = "lock:" + check_session_id(session_id)
            while cache.get(name) is not None:
                time.sleep(0.001)
            cache.set(name, 1, timeout=30)
            try:
                yield
            finally:
                cache.delete(name)
    ''',
}

# The count made atomic with the cache's incr, outside the session's lock, while the request
# still saves the whole session after it: an update saved between its load and its save is lost.
COUNT_BY_INCR_THEN_SAVE = {
    "SessionManager.increment_access": '''
        def increment_access(self, session_id):
            from django.core.cache import caches
            from django.conf import settings

            now = self._clock()
            cache = caches[settings.SESSION_CACHE_ALIAS]
            session = self._open(session_id)
            name = "count:" + session_id
            cache.add(name, session["access_count"], timeout=None)
            count = cache.incr(name)
            session["access_count"] = count
            session["last_accessed"] = now
            session.save()
            return count
    ''',
}

FIXES = {
    "one global lock": ONE_GLOBAL_LOCK,
    "an RLock around the request": ONE_RLOCK,
    "a dict of per-key locks with reference counts": PER_KEY_LOCKS,
    "a spin lock on the cache's atomic add": SPIN_ON_CACHE_ADD,
}
WRONG_FIXES = {"a spin lock taken with a get, then a set": SPIN_ON_GET_THEN_SET,
               "the count by the cache's incr, the session still saved whole": COUNT_BY_INCR_THEN_SAVE}


def django_cache_fix(tmp_path: Path, name: str) -> implementations.Implementation:
    """fixed/wild/django_cache.py with one of the fixes above in place of its own."""
    source = (ROOT / "fixed" / "wild" / "django_cache.py").read_text(encoding="utf-8")
    path = tmp_path / f"django_cache_{'_'.join(name.split()[:3])}.py"
    source = source.replace("\nimport threading\n", "\nimport contextlib\nimport threading\n", 1)
    path.write_text(source, encoding="utf-8")
    workspace.replace_functions(path, {qualified: textwrap.indent(textwrap.dedent(code), "    ")
                                       for qualified, code in {**FIXES, **WRONG_FIXES}[name].items()})
    return implementations.load(str(path))
