"""Fixes a learner writes for track 4, right and wrong, each one method of buggy/redis_store.py rewritten.

Each is judged by the checks of its bug in tests/test_redis_fixes.py: a right
one must hold under every order of the nodes' commands, a wrong one must be
caught, with the reason it is wrong beside it.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from sessionlab import implementations
from sessionlab.learner import workspace

ROOT = Path(__file__).resolve().parent.parent

# -- update_session ------------------------------------------------------------------------------

UPDATE_WATCH_RETRY = '''
def update_session(self, session_id, key, value):
    check_session_id(session_id)
    check_key(key)
    check_value(value)
    self._check_open()
    now = self._clock()
    stored_key = self._key(session_id)
    with self._talking():
        for _ in range(_WATCH_RETRIES):
            with self._redis.pipeline() as tx:
                try:
                    tx.watch(stored_key)
                    session = _snapshot(session_id, tx.hgetall(stored_key))
                    metadata = dict(session.metadata)
                    metadata[key] = value
                    check_metadata_size(metadata)
                    tx.multi()
                    tx.hset(stored_key, mapping={_META + key: json.dumps(value), "last_accessed": repr(now)})
                    tx.pexpire(stored_key, self._ttl_ms)
                    tx.execute()
                    return
                except redis.WatchError:
                    continue
        raise StoreError("the update was interrupted too often")
'''

# Read again just before the save, merge what changed, save the whole session: connect-redis's #347.
UPDATE_GET_MERGE_SET = '''
def update_session(self, session_id, key, value):
    check_session_id(session_id)
    check_key(key)
    check_value(value)
    self._check_open()
    now = self._clock()
    stored_key = self._key(session_id)
    with self._talking():
        fields = self._redis.hgetall(stored_key)
        session = _snapshot(session_id, fields)
        metadata = dict(session.metadata)
        metadata[key] = value
        check_metadata_size(metadata)
        latest = self._redis.hgetall(stored_key)
        merged = dict(latest)
        merged.update({_META + item: json.dumps(stored) for item, stored in metadata.items()})
        merged["last_accessed"] = repr(now)
        self._redis.hset(stored_key, mapping=merged)
        self._redis.pexpire(stored_key, self._ttl_ms)
'''

# A lock in this process: the other node is another process, with a lock of its own.
UPDATE_UNDER_A_LOCAL_LOCK = '''
def update_session(self, session_id, key, value):
    check_session_id(session_id)
    check_key(key)
    check_value(value)
    self._check_open()
    now = self._clock()
    stored_key = self._key(session_id)
    with self._lock, self._talking():
        fields = self._redis.hgetall(stored_key)
        session = _snapshot(session_id, fields)
        metadata = dict(session.metadata)
        metadata[key] = value
        check_metadata_size(metadata)
        record = {name: fields[name] for name in _FIELDS}
        record["last_accessed"] = repr(now)
        record.update({_META + item: json.dumps(stored) for item, stored in metadata.items()})
        self._redis.hset(stored_key, mapping=record)
        self._redis.pexpire(stored_key, self._ttl_ms)
'''

# -- increment_access ----------------------------------------------------------------------------

# HINCRBY alone: no count is lost, but a count after a logout makes the session again.
INCREMENT_HINCRBY_ALONE = '''
def increment_access(self, session_id):
    check_session_id(session_id)
    self._check_open()
    now = self._clock()
    key = self._key(session_id)
    with self._talking():
        if not self._redis.exists(key):
            raise SessionNotFound(session_id)
        count = self._redis.hincrby(key, "access_count", 1)
        self._redis.hset(key, "last_accessed", repr(now))
        self._redis.pexpire(key, self._ttl_ms)
    return count
'''

INCREMENT_WATCH_RETRY = '''
def increment_access(self, session_id):
    check_session_id(session_id)
    self._check_open()
    now = self._clock()
    key = self._key(session_id)
    with self._talking():
        for _ in range(_WATCH_RETRIES):
            with self._redis.pipeline() as tx:
                try:
                    tx.watch(key)
                    count = tx.hget(key, "access_count")
                    if count is None:
                        raise SessionNotFound(session_id)
                    tx.multi()
                    tx.hset(key, mapping={"access_count": int(count) + 1, "last_accessed": repr(now)})
                    tx.pexpire(key, self._ttl_ms)
                    tx.execute()
                    return int(count) + 1
                except redis.WatchError:
                    continue
        raise StoreError("the count was interrupted too often")
'''

# -- create_session ------------------------------------------------------------------------------

CREATE_ONE_SCRIPT = '''
def create_session(self, user_id, username):
    check_name("user_id", user_id)
    check_name("username", username)
    self._check_open()
    now = self._clock()
    session_id = _new_session_id()
    key = self._key(session_id)
    with self._talking():
        self._redis.eval(
            "redis.call('HSET', KEYS[1], 'user_id', ARGV[1], 'username', ARGV[2], 'created_at', ARGV[3],"
            " 'last_accessed', ARGV[3], 'access_count', 0) redis.call('PEXPIRE', KEYS[1], ARGV[4])"
            " redis.call('HINCRBY', KEYS[2], 'total_sessions', 1)",
            2, key, self._stats_key, user_id, username, repr(now), self._ttl_ms)
    log.info("login: session %s for user %r", session_tag(session_id), user_id)
    return session_id
'''

# Two transactions: each atomic, the pair not.
CREATE_EXPIRY_IN_ITS_OWN_MULTI = '''
def create_session(self, user_id, username):
    check_name("user_id", user_id)
    check_name("username", username)
    self._check_open()
    now = self._clock()
    session_id = _new_session_id()
    key = self._key(session_id)
    record = {"user_id": user_id, "username": username, "created_at": repr(now),
              "last_accessed": repr(now), "access_count": 0}
    with self._talking():
        with self._redis.pipeline(transaction=True) as tx:
            tx.hset(key, mapping=record)
            tx.hincrby(self._stats_key, "total_sessions", 1)
            tx.execute()
        with self._redis.pipeline(transaction=True) as tx:
            tx.pexpire(key, self._ttl_ms)
            tx.execute()
    log.info("login: session %s for user %r", session_tag(session_id), user_id)
    return session_id
'''

# -- delete_session ------------------------------------------------------------------------------

DELETE_COUNTS_WHAT_DEL_DELETED = '''
def delete_session(self, session_id):
    check_session_id(session_id)
    self._check_open()
    key = self._key(session_id)
    with self._talking():
        with self._redis.pipeline(transaction=True) as tx:
            tx.hget(key, "user_id")
            tx.delete(key)
            user_id, deleted = tx.execute()
    if not deleted:
        raise SessionNotFound(session_id)
    log.info("logout: session %s for user %r", session_tag(session_id), user_id)
'''

# WATCH on the pipeline, whose connection runs the MULTI/EXEC, with a bounded retry.
DELETE_WATCH_ON_THE_PIPELINE = '''
def delete_session(self, session_id):
    check_session_id(session_id)
    self._check_open()
    key = self._key(session_id)
    with self._talking():
        for _ in range(_WATCH_RETRIES):
            with self._redis.pipeline() as tx:
                try:
                    tx.watch(key)
                    user_id = tx.hget(key, "user_id")
                    if user_id is None:
                        raise SessionNotFound(session_id)
                    tx.multi()
                    tx.delete(key)
                    tx.execute()
                    break
                except redis.WatchError:
                    continue
        else:
            raise StoreError("the logout was interrupted too often")
    log.info("logout: session %s for user %r", session_tag(session_id), user_id)
'''

# MULTI without WATCH: the read before it is not part of the transaction.
DELETE_MULTI_WITHOUT_WATCH = '''
def delete_session(self, session_id):
    check_session_id(session_id)
    self._check_open()
    key = self._key(session_id)
    with self._talking():
        user_id = self._redis.hget(key, "user_id")
        if user_id is None:
            raise SessionNotFound(session_id)
        with self._redis.pipeline(transaction=True) as tx:
            tx.delete(key)
            tx.execute()
    log.info("logout: session %s for user %r", session_tag(session_id), user_id)
'''

# A lock in this process around the logout.
DELETE_UNDER_A_LOCAL_LOCK = '''
def delete_session(self, session_id):
    check_session_id(session_id)
    self._check_open()
    key = self._key(session_id)
    with self._lock, self._talking():
        user_id = self._redis.hget(key, "user_id")
        if user_id is None:
            raise SessionNotFound(session_id)
        self._redis.delete(key)
    log.info("logout: session %s for user %r", session_tag(session_id), user_id)
'''

RIGHT = {  # (bug, method, source)
    "update with WATCH and a retry on the pipeline": ("session-overwrite", "update_session", UPDATE_WATCH_RETRY),
    "increment with WATCH and a retry on the pipeline": ("counter-get-set", "increment_access", INCREMENT_WATCH_RETRY),
    "HINCRBY after EXISTS (counts right)": ("counter-get-set", "increment_access", INCREMENT_HINCRBY_ALONE),
    "the login in one Lua script": ("ttl-second-step", "create_session", CREATE_ONE_SCRIPT),
    "a logout that counts what DEL deleted": ("watch-shared-connection", "delete_session",
                                              DELETE_COUNTS_WHAT_DEL_DELETED),
    "a logout with WATCH on the pipeline and a retry": ("watch-shared-connection", "delete_session",
                                                        DELETE_WATCH_ON_THE_PIPELINE),
}
WRONG = {  # (bug, method, source)
    "GET-merge-SET": ("session-overwrite", "update_session", UPDATE_GET_MERGE_SET),
    "a lock in one process around the update": ("session-overwrite", "update_session", UPDATE_UNDER_A_LOCAL_LOCK),
    "HINCRBY after EXISTS, beside a logout": ("resurrected-logout", "increment_access", INCREMENT_HINCRBY_ALONE),
    "the expiry in a MULTI of its own": ("ttl-second-step", "create_session", CREATE_EXPIRY_IN_ITS_OWN_MULTI),
    "MULTI without WATCH": ("watch-shared-connection", "delete_session", DELETE_MULTI_WITHOUT_WATCH),
    "a lock in one process around the logout": ("watch-shared-connection", "delete_session",
                                                DELETE_UNDER_A_LOCAL_LOCK),
}


def variant(folder: Path, method: str, source: str) -> implementations.Implementation:
    """A copy of buggy/ whose RedisSessionManager has one method replaced."""
    shutil.copytree(ROOT / "buggy", folder, ignore=shutil.ignore_patterns("__pycache__"))
    body = textwrap.indent(textwrap.dedent(source).strip("\n"), "    ")
    workspace.replace_functions(folder / "redis_store.py", {f"RedisSessionManager.{method}": body})
    return implementations.load(str(folder))
