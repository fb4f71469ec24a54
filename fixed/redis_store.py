"""Sessions kept in Redis, shared by every app server of a site.

Each manager is one node: it opens a connection pool of its own to the server
named by ``url`` and shares nothing with the other nodes but what the server
holds. A session is one hash, ``<namespace>session:<id>``, with the fields
user_id, username, created_at, last_accessed and access_count, and one field
``m:<key>`` per metadata key, its value as JSON. A session expires ``ttl``
seconds after it was last used: every read and write sets Redis's own expiry
again. The counters every node adds to live in one hash, ``<namespace>stats``;
the active count is counted on the server, so every node reports the same.

Redis runs one command at a time, so one command is atomic; two are not. Every
change that depends on what the session holds is one command: a Lua script, or
a MULTI/EXEC transaction whose own results say what it did.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import MappingProxyType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sessionlab.api import (
    MAX_METADATA_KEYS,
    InvalidInput,
    MetadataValue,
    Session,
    SessionError,
    SessionNotFound,
    Stats,
    StoreError,
    check_key,
    check_name,
    check_session_id,
    check_value,
    session_tag,
)

log = logging.getLogger(__name__)

_FIELDS = ("user_id", "username", "created_at", "last_accessed", "access_count")
_META = "m:"  # the prefix of a metadata key's field

# Sets one field of a live session, and refreshes its expiry; -1: no such session, -2: too many keys.
# KEYS[1] the session; ARGV: the field, its value, the time, the ttl in ms, the key limit, len(_FIELDS).
_SET_FIELD = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
   and redis.call('HLEN', KEYS[1]) - tonumber(ARGV[6]) >= tonumber(ARGV[5]) then return -2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'last_accessed', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 0
"""
# Counts one access to a live session, and refreshes its expiry; -1: no such session.
# KEYS[1] the session; ARGV: the time, the ttl in ms.
_COUNT_ACCESS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local count = redis.call('HINCRBY', KEYS[1], 'access_count', 1)
redis.call('HSET', KEYS[1], 'last_accessed', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return count
"""


class RedisSessionManager:
    """Creates, reads, updates and deletes sessions kept in one Redis, for any number of nodes."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, namespace: str = "sessionlab:",
                 ttl: float = 1800.0, clock: Callable[[], float] = time.time, timeout: float = 5.0,
                 name: str = ""):
        if type(url) is not str or not url.startswith(("redis://", "rediss://", "unix://")):
            raise InvalidInput("url must be a redis://, rediss:// or unix:// URL")
        if type(namespace) is not str or not namespace or not all(c.isalnum() or c in "-_:" for c in namespace):
            raise InvalidInput("namespace must be letters, digits, '-', '_' and ':' (no pattern characters)")
        if type(name) is not str or not all(c.isalnum() or c in "-_" for c in name):
            raise InvalidInput("name must be letters, digits, '-' and '_' (what CLIENT LIST shows of this node)")
        if not ttl > 0 or not timeout > 0:
            raise InvalidInput("ttl and timeout must be positive numbers of seconds")
        self._clock = clock
        self._ttl_ms = max(1, round(ttl * 1000))
        self._namespace = namespace
        self._stats_key = namespace + "stats"
        # No command is ever sent twice: a retry after a timeout could count an access twice.
        self._pool = redis.ConnectionPool.from_url(
            url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), client_name=name or None)
        self._redis = redis.Redis(connection_pool=self._pool)
        self._set_field = self._redis.register_script(_SET_FIELD)
        self._count_access = self._redis.register_script(_COUNT_ACCESS)
        # Guards self._closed and self._final.
        self._lock = threading.Lock()
        self._closed = False
        self._final: tuple[Stats, int] | None = None  # the stats and the active count at close

    def create_session(self, user_id: str, username: str) -> str:
        check_name("user_id", user_id)
        check_name("username", username)
        self._check_open()
        now = self._clock()
        session_id = _new_session_id()
        key = self._key(session_id)
        record = {"user_id": user_id, "username": username, "created_at": repr(now),
                  "last_accessed": repr(now), "access_count": 0}
        with self._talking():
            # FIX(ttl-second-step): the session, its expiry and the count in one MULTI/EXEC: a node
            # that dies after the HSET of two separate commands leaves a session that never expires
            with self._redis.pipeline(transaction=True) as tx:
                tx.hset(key, mapping=record)
                tx.pexpire(key, self._ttl_ms)
                tx.hincrby(self._stats_key, "total_sessions", 1)
                tx.execute()
        log.info("login: session %s for user %r", session_tag(session_id), user_id)
        return session_id

    def get_session(self, session_id: str) -> Session:
        check_session_id(session_id)
        self._check_open()
        key = self._key(session_id)
        with self._talking():
            with self._redis.pipeline(transaction=True) as tx:
                tx.hgetall(key)
                tx.pexpire(key, self._ttl_ms)
                fields, _ = tx.execute()
            self._redis.hincrby(self._stats_key, "cache_hits" if fields else "cache_misses", 1)
        return _snapshot(session_id, fields)

    def update_session(self, session_id: str, key: str, value: MetadataValue) -> None:
        check_session_id(session_id)
        check_key(key)
        check_value(value)
        self._check_open()
        now = self._clock()
        with self._talking():
            # FIX(session-overwrite): write the one field that changed, not the whole session read
            # before: a whole-session save puts back what another node changed in between
            # FIX(resurrected-logout): check that the session exists in the same script that writes
            # it: a write after another node's logout would bring the session back
            done = self._set_field(keys=[self._key(session_id)],
                                   args=[_META + key, json.dumps(value), repr(now), self._ttl_ms,
                                         MAX_METADATA_KEYS, len(_FIELDS)])
        if done == -1:
            raise SessionNotFound(session_id)
        if done == -2:
            raise InvalidInput(f"a session holds at most {MAX_METADATA_KEYS} metadata keys")

    def increment_access(self, session_id: str) -> int:
        check_session_id(session_id)
        self._check_open()
        now = self._clock()
        with self._talking():
            # FIX(counter-get-set): the server adds one (HINCRBY); a count read with HGET and
            # written back with HSET loses the accesses other nodes counted in between
            # FIX(resurrected-logout): only if the session exists, in the same script
            count = self._count_access(keys=[self._key(session_id)], args=[repr(now), self._ttl_ms])
        if count == -1:
            raise SessionNotFound(session_id)
        return int(count)

    def delete_session(self, session_id: str) -> None:
        check_session_id(session_id)
        self._check_open()
        key = self._key(session_id)
        with self._talking():
            # FIX(watch-shared-connection): the read and the delete in one MULTI/EXEC, and DEL's count
            # says whether this logout deleted the session: no WATCH is needed. A WATCH sent on
            # another connection of the pool than the one that runs the EXEC watches nothing, and
            # two nodes both log the session out (the other right fix: tx.watch, on the pipeline)
            with self._redis.pipeline(transaction=True) as tx:
                tx.hget(key, "user_id")
                tx.delete(key)
                user_id, deleted = tx.execute()
            if not deleted:
                raise SessionNotFound(session_id)
        log.info("logout: session %s for user %r", session_tag(session_id), user_id)

    def get_stats(self) -> Stats:
        return self._counts()[0]

    def get_active_count(self) -> int:
        return self._counts()[1]

    def get_cleanup_queue_size(self) -> int:
        return 0  # a logout frees the session on the server at once: nothing waits

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
        try:
            final: tuple[Stats, int] | None = self._counts()
        except StoreError:  # the server is down: what the counts were is not known
            final = None
        with self._lock:
            self._closed, self._final = True, final
        self._redis.close()
        self._pool.disconnect()

    def __enter__(self) -> RedisSessionManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _key(self, session_id: str) -> str:
        return f"{self._namespace}session:{session_id}"

    def _check_open(self) -> None:
        with self._lock:
            if self._closed:
                raise SessionError("the session manager is closed")

    def _counts(self) -> tuple[Stats, int]:
        """The stats and the live sessions, as the server holds them; once closed, as they were."""
        with self._lock:
            if self._closed and self._final is not None:
                return self._final
            if self._closed:
                raise StoreError("the node was closed while Redis could not be reached: its counts are unknown")
        with self._talking():
            counters = self._redis.hgetall(self._stats_key)
            active = sum(1 for _ in self._redis.scan_iter(match=self._key("*"), count=1000))
        stats = Stats(total_sessions=int(counters.get("total_sessions", 0)), active_sessions=active,
                      cache_hits=int(counters.get("cache_hits", 0)),
                      cache_misses=int(counters.get("cache_misses", 0)), failed_cleanups=0)
        return stats, active

    @contextmanager
    def _talking(self) -> Iterator[None]:
        """Turn a failure of the server or of the network into a StoreError that says why."""
        try:
            yield
        except redis.RedisError as exc:
            raise StoreError(f"the session store failed: {_reason(exc)}") from None


def _new_session_id() -> str:
    return secrets.token_urlsafe(24)  # 192 random bits from the operating system


def _snapshot(session_id: str, fields: dict[str, str]) -> Session:
    """The session a hash holds; SessionNotFound when it holds none (no user: what a write after
    a logout leaves behind)."""
    if "user_id" not in fields:
        raise SessionNotFound(session_id)
    metadata = {name[len(_META):]: json.loads(value) for name, value in fields.items() if name.startswith(_META)}
    return Session(session_id=session_id, user_id=fields["user_id"], username=fields["username"],
                   is_authenticated=True, access_count=int(fields.get("access_count", 0)),
                   metadata=MappingProxyType(metadata), created_at=float(fields["created_at"]),
                   last_accessed=float(fields["last_accessed"]))


def _reason(exc: redis.RedisError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, redis.ConnectionError):
        return f"cannot reach Redis ({text})"
    if isinstance(exc, redis.TimeoutError):
        return f"Redis did not answer in time ({text})"
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or text.startswith("OOM"):
        return f"Redis is full ({text})"
    return text
