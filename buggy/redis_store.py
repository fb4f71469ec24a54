"""Sessions kept in Redis, shared by every app server of a site.

Each manager is one node: it opens a connection pool of its own to the server
named by ``url`` and shares nothing with the other nodes but what the server
holds. A session is one hash, ``<namespace>session:<id>``, with the fields
user_id, username, created_at, last_accessed and access_count, and one field
``m:<key>`` per metadata key, its value as JSON. A session expires ``ttl``
seconds after it was last used: every read and write sets Redis's own expiry
again. The counters every node adds to live in one hash, ``<namespace>stats``;
the active count is counted on the server, so every node reports the same.

Redis runs one command at a time, so each command is atomic. A logout reads
the session and deletes it in a transaction under WATCH, as optimistic locking
is done in Redis.
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
    InvalidInput,
    MetadataValue,
    Session,
    SessionError,
    SessionNotFound,
    Stats,
    StoreError,
    check_key,
    check_metadata_size,
    check_name,
    check_session_id,
    check_value,
    session_tag,
)

log = logging.getLogger(__name__)

_FIELDS = ("user_id", "username", "created_at", "last_accessed", "access_count")
_META = "m:"  # the prefix of a metadata key's field
# How often a logout retries a transaction another node's write aborted.
_WATCH_RETRIES = 16


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
            self._redis.hset(key, mapping=record)
            # the expiry, as django-redis and rate limiters set it: once the value is stored
            self._redis.pexpire(key, self._ttl_ms)
            self._redis.hincrby(self._stats_key, "total_sessions", 1)
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
        stored_key = self._key(session_id)
        with self._talking():
            fields = self._redis.hgetall(stored_key)
            session = _snapshot(session_id, fields)
            metadata = dict(session.metadata)
            metadata[key] = value
            check_metadata_size(metadata)
            # the session is saved whole, as a session interface saves it at the end of a request
            # (Flask-Session's save_session, Spring Session's RedisSessionRepository)
            record = {name: fields[name] for name in _FIELDS}
            record["last_accessed"] = repr(now)
            record.update({_META + item: json.dumps(stored) for item, stored in metadata.items()})
            self._redis.hset(stored_key, mapping=record)
            self._redis.pexpire(stored_key, self._ttl_ms)

    def increment_access(self, session_id: str) -> int:
        check_session_id(session_id)
        self._check_open()
        now = self._clock()
        key = self._key(session_id)
        with self._talking():
            count = self._redis.hget(key, "access_count")
            if count is None:
                raise SessionNotFound(session_id)
            count = int(count) + 1
            self._redis.hset(key, mapping={"access_count": count, "last_accessed": repr(now)})
            self._redis.pexpire(key, self._ttl_ms)
        return count

    def delete_session(self, session_id: str) -> None:
        check_session_id(session_id)
        self._check_open()
        key = self._key(session_id)
        with self._talking():
            for _ in range(_WATCH_RETRIES):
                with self._redis.pipeline() as tx:
                    try:
                        # optimistic locking: EXEC fails if the session changes after the WATCH
                        self._redis.watch(key)
                        user_id = self._redis.hget(key, "user_id")
                        if user_id is None:
                            raise SessionNotFound(session_id)
                        tx.multi()
                        tx.delete(key)
                        tx.execute()
                        break
                    except redis.WatchError:
                        continue
            else:
                raise StoreError(f"the logout of session {session_tag(session_id)} was interrupted "
                                 f"{_WATCH_RETRIES} times by writes of other nodes")
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
