"""Checks judge behaviour, not text.

For every exercise, a correct fix that differs from the reference is accepted,
and plausible wrong fixes are rejected: locking only half of the work, a
sleep, a retry loop that checks outside the lock, a counter that is unique but
guessable. Each variant is a copy of the pristine buggy/ with only that
exercise's functions rewritten.
"""

from __future__ import annotations

import persistent_variants
import pytest
from variants import variant

from sessionlab import catalogue
from sessionlab.engines import exploration
from sessionlab.judge import checks

AVAILABLE, WHY = exploration.frontrun_available()


CORRECT = {
    "lost-updates": {
        # Optimistic: edit a copy outside the lock, store it only if nobody stored another meanwhile.
        "SessionManager.update_session": '''
        def update_session(self, session_id, key, value):
            check_session_id(session_id)
            check_key(key)
            check_value(value)
            while True:
                with self._lock:
                    record = self._require(session_id)
                    seen = record.metadata
                metadata = dict(seen)
                metadata[key] = value
                check_metadata_size(metadata)
                now = self._clock()
                with self._lock:
                    if record.metadata is seen:
                        record.metadata = metadata
                        record.last_accessed = now
                        return
        ''',
    },
    "lost-increments": {
        # Take the timestamp before the lock; count inside it.
        "SessionManager.increment_access": '''
        def increment_access(self, session_id):
            check_session_id(session_id)
            now = self._clock()
            with self._lock:
                record = self._require(session_id)
                record.access_count += 1
                record.last_accessed = now
                return record.access_count
        ''',
    },
    "cleanup-leak": {
        # Drain the queue: a release that freed nothing is still done.
        "SessionManager._run_cleanup": '''
        def _run_cleanup(self):
            while self._cleanup_queue:
                self._release(self._cleanup_queue.popleft())
        ''',
    },
    "stats-drift": {
        # Two critical sections, but the second one decides: only one pop finds the session.
        "SessionManager.delete_session": '''
        def delete_session(self, session_id):
            check_session_id(session_id)
            with self._lock:
                record = self._require(session_id)
            log.info("logout: session %s for user %s", session_id, record.user_id)
            with self._lock:
                if self._sessions.pop(session_id, None) is None:
                    raise SessionNotFound(session_id)
                self._cleanup_queue.append(record)
                self._run_cleanup()
                self._active_sessions -= 1
        ''',
    },
    "id-collision": {
        "SessionManager._new_session_id": '''
        def _new_session_id(self):
            import secrets

            return secrets.token_hex(16)  # 128 random bits, in hex
        ''',
    },
    "shared-snapshot": {
        # Keep the view, but never change a dict once a view of it was handed out.
        "SessionManager._release": '''
        def _release(self, record):
            freed = len(record.metadata)
            record.metadata = {}
            record.is_authenticated = False
            return freed
        ''',
    },
}

WRONG = {
    "lost-updates": {
        "merge the stale copy back": {
            "SessionManager.update_session": '''
            def update_session(self, session_id, key, value):
                check_session_id(session_id)
                check_key(key)
                check_value(value)
                with self._lock:
                    record = self._require(session_id)
                    metadata = dict(record.metadata)
                metadata[key] = value
                check_metadata_size(metadata)
                now = self._clock()
                with self._lock:
                    record.metadata = {**record.metadata, **metadata}
                    record.last_accessed = now
            ''',
        },
        "retry loop that checks outside the lock": {
            "SessionManager.update_session": '''
            def update_session(self, session_id, key, value):
                check_session_id(session_id)
                check_key(key)
                check_value(value)
                while True:
                    with self._lock:
                        record = self._require(session_id)
                        seen = record.metadata
                    metadata = dict(seen)
                    metadata[key] = value
                    check_metadata_size(metadata)
                    if record.metadata is seen:
                        with self._lock:
                            record.metadata = metadata
                            record.last_accessed = self._clock()
                        return
            ''',
        },
    },
    "lost-increments": {
        "lock only the write": {
            "SessionManager.increment_access": '''
            def increment_access(self, session_id):
                check_session_id(session_id)
                with self._lock:
                    record = self._require(session_id)
                count = record.access_count + 1
                record.last_accessed = self._clock()
                with self._lock:
                    record.access_count = count
                return count
            ''',
        },
        "a sleep to let the others finish": {
            "SessionManager.increment_access": '''
            def increment_access(self, session_id):
                check_session_id(session_id)
                with self._lock:
                    record = self._require(session_id)
                time.sleep(0.001)
                count = record.access_count + 1
                record.last_accessed = self._clock()
                record.access_count = count
                return count
            ''',
        },
        "retry until the count looks unchanged": {
            "SessionManager.increment_access": '''
            def increment_access(self, session_id):
                check_session_id(session_id)
                while True:
                    with self._lock:
                        record = self._require(session_id)
                    count = record.access_count
                    record.last_accessed = self._clock()
                    if record.access_count == count:
                        record.access_count = count + 1
                        return count + 1
            ''',
        },
    },
    "cleanup-leak": {
        "give up on a failed release after three tries": {
            "SessionManager._run_cleanup": '''
            def _run_cleanup(self):
                for _ in range(len(self._cleanup_queue)):
                    record = self._cleanup_queue.popleft()
                    if not self._release(record):
                        self._failed_cleanups += 1
                        record.tries = getattr(record, "tries", 0) + 1
                        if record.tries < 3:
                            self._cleanup_queue.append(record)
            ''',
        },
        "empty the queue only once it is large": {
            "SessionManager._run_cleanup": '''
            def _run_cleanup(self):
                for _ in range(len(self._cleanup_queue)):
                    record = self._cleanup_queue.popleft()
                    if not self._release(record):
                        self._failed_cleanups += 1
                        self._cleanup_queue.append(record)
                if len(self._cleanup_queue) > 1000:
                    self._cleanup_queue.clear()
            ''',
        },
    },
    "stats-drift": {
        "count inside the lock, still check then act": {
            "SessionManager.delete_session": '''
            def delete_session(self, session_id):
                check_session_id(session_id)
                with self._lock:
                    record = self._require(session_id)
                log.info("logout: session %s for user %s", session_id, record.user_id)
                with self._lock:
                    self._sessions.pop(session_id, None)
                    self._cleanup_queue.append(record)
                    self._run_cleanup()
                    self._active_sessions -= 1
            ''',
        },
        "never let the count go below zero": {
            "SessionManager.delete_session": '''
            def delete_session(self, session_id):
                check_session_id(session_id)
                with self._lock:
                    record = self._require(session_id)
                log.info("logout: session %s for user %s", session_id, record.user_id)
                with self._lock:
                    self._sessions.pop(session_id, None)
                    self._cleanup_queue.append(record)
                    self._run_cleanup()
                    if self._active_sessions > len(self._sessions):
                        self._active_sessions -= 1
            ''',
        },
    },
    "id-collision": {
        "the same counter, under the lock": {
            "SessionManager._new_session_id": '''
            def _new_session_id(self):
                with self._lock:
                    number = self._next_id
                    self._next_id = number + 1
                return "sess-{:06d}".format(number)
            ''',
        },
        "an atomic counter": {
            "SessionManager.__init__": '''
            def __init__(self, clock=time.time):
                import itertools

                self._clock = clock
                self._lock = threading.Lock()
                self._sessions = {}
                self._cleanup_queue = deque()
                self._closed = False
                self._total_sessions = 0
                self._active_sessions = 0
                self._cache_hits = 0
                self._cache_misses = 0
                self._failed_cleanups = 0
                self._ids = itertools.count(1)
            ''',
            "SessionManager._new_session_id": '''
            def _new_session_id(self):
                return "sess-{:06d}".format(next(self._ids))
            ''',
        },
    },
    "shared-snapshot": {
        "delete the keys one by one instead of clear()": {
            "SessionManager._release": '''
            def _release(self, record):
                freed = len(record.metadata)
                for key in list(record.metadata):
                    del record.metadata[key]
                record.is_authenticated = False
                return freed
            ''',
        },
        "a layered view instead of a copy": {
            "_Record.snapshot": '''
            def snapshot(self):
                from collections import ChainMap

                return Session(
                    session_id=self.session_id,
                    user_id=self.user_id,
                    username=self.username,
                    is_authenticated=self.is_authenticated,
                    access_count=self.access_count,
                    metadata=MappingProxyType(ChainMap(self.metadata)),
                    created_at=self.created_at,
                    last_accessed=self.last_accessed,
                )
            ''',
        },
    },
}


CORRECT.update(persistent_variants.CORRECT)
WRONG.update(persistent_variants.WRONG)


def judged(tmp_path, name: str, slug: str, replacements: dict[str, str]) -> checks.Verdict:
    """The deterministic verdict on a copy of buggy/ with the functions of one bug rewritten."""
    implementation = variant(tmp_path, name, replacements, module=catalogue.find(slug).module)
    return checks.judge(catalogue.find(slug), implementation, stress_too=False)


def test_every_exercise_has_one_correct_and_two_wrong_variants():
    for bug in catalogue.BUGS:
        if bug.track == 4:  # the Redis track's held-out fixes: tests/redis_variants.py
            continue
        assert bug.slug in CORRECT and len(WRONG.get(bug.slug, {})) >= 2, bug.slug
        touched = set(CORRECT[bug.slug]).union(*WRONG[bug.slug].values())
        assert touched <= set(bug.functions), f"{bug.slug} variants rewrite {touched - set(bug.functions)}"


@pytest.mark.skipif(not AVAILABLE, reason=WHY)
@pytest.mark.parametrize("slug", list(CORRECT))
def test_a_correct_fix_unlike_the_reference_is_accepted(tmp_path, slug):
    # Stress only confirms, and tests/test_unseen_fixes.py runs it on a correct fix of every bug.
    verdict = judged(tmp_path, "alternative", slug, CORRECT[slug])
    assert verdict.fixed, f"{slug}: a correct alternative fix was rejected: {verdict.evidence}"
    assert [result.check.name for result in verdict.results] == [
        check.name for check in checks.checks_for(catalogue.home(verdict.bug)) if check.kind == checks.DETERMINISTIC]


@pytest.mark.skipif(not AVAILABLE, reason=WHY)
@pytest.mark.parametrize("slug, name", [(slug, name) for slug, wrong in WRONG.items() for name in wrong])
def test_a_wrong_fix_is_rejected(tmp_path, slug, name):
    verdict = judged(tmp_path, "wrong", slug, WRONG[slug][name])
    assert not verdict.fixed, f"{slug}: the wrong fix '{name}' was accepted: {verdict.evidence}"
    assert verdict.evidence.startswith(f"{slug}: ")
