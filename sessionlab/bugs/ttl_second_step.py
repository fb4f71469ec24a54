"""Bug 15, a TTL set in a second step: HSET the session, then PEXPIRE it, as two commands."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from redis.connection import AbstractConnection

from sessionlab.api import SessionError
from sessionlab.bug import ATOMICITY_VIOLATION, Bug
from sessionlab.bugs.redis_nodes import MANAGER, START
from sessionlab.figure import Figure, plural
from sessionlab.implementations import Implementation
from sessionlab.servers import redis_server

BUG = Bug(
    number=17,
    slug="ttl-second-step",
    title="A session's expiry set in a second command",
    bug_class=ATOMICITY_VIOLATION,
    track=4,
    mistake=(
        "create_session stores the session with HSET and sets its expiry with a second command, PEXPIRE: "
        "a node that dies, or loses its connection, between the two leaves a session that never expires"
    ),
    symptom="sessions that never expire pile up in Redis until it is full; a stolen cookie works for ever",
    scenario=(
        "a node logs a user in and dies after each of its packets to Redis in turn; after every one, "
        "no session the server holds may be without an expiry"
    ),
    functions=("RedisSessionManager.create_session",),
    module="redis_store.py",
    manager=MANAGER,
)

# More packets than any login sends: a login still sending past this many is reported, not cut.
MOST_PACKETS = 24
# Guards _dying: one node dies at a time in this process.
_dying_lock = threading.Lock()
_dying = {"left": -1}


class NodeDied(redis.ConnectionError):
    """What a node's connection raises once the node is dead: nothing more reaches the server."""


@contextmanager
def _dies_after(packets: int) -> Iterator[None]:
    """For the block, every connection sends packets packets to Redis, then fails as a dead node's would."""
    original = AbstractConnection.send_packed_command

    def send(self: AbstractConnection, command: object, check_health: bool = True) -> None:
        if _dying["left"] == 0:
            raise NodeDied("the node died")
        _dying["left"] -= 1
        return original(self, command, check_health)

    with _dying_lock:
        _dying["left"] = packets
        AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
        try:
            yield
        finally:
            AbstractConnection.send_packed_command = original  # type: ignore[method-assign]
            _dying["left"] = -1


def _without_expiry(url: str, namespace: str) -> list[str]:
    """The fields of every session the server holds with no expiry."""
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        keys = list(client.scan_iter(match=namespace + "session:*", count=1000))
        found = [", ".join(sorted(client.hgetall(key))) for key in keys if client.pttl(key) == -1]
        every = list(client.scan_iter(match=namespace + "*", count=1000))
        if every:
            client.delete(*every)
        return found
    finally:
        client.close()


def a_node_that_dies_leaves_no_session_without_expiry(implementation: Implementation) -> Figure:
    """ttl-second-step: wherever between its commands a node dies during a login, no session outlives its TTL."""
    for packets in range(MOST_PACKETS + 1):
        options = redis_server.node_options()
        node = implementation.new(MANAGER, clock=lambda: START, **options)
        try:
            with _dies_after(packets):
                try:
                    node.create_session("user-1", "Ada")
                    finished = True
                except SessionError:  # what the node's caller sees of its death: a StoreError
                    finished = False
        finally:
            node.close()
        eternal = _without_expiry(str(options["url"]), str(options["namespace"]))
        if eternal:
            return Figure(False, "every session expires", "a session with no expiry",
                          f"a node that died after its {_ordinal(packets)} packet to Redis during a login left "
                          f"a session that never expires (fields {eternal[0]}; PTTL -1): its expiry was to be "
                          f"set by a later command")
        if finished:
            return Figure(True, "every session expires", "every session expires",
                          f"a node that dies after any of the {plural(packets, 'packet')} of a login leaves no "
                          f"session without an expiry")
    return Figure(False, f"a login in at most {MOST_PACKETS} packets", "more",
                  f"a login still sent packets after {MOST_PACKETS}: too many to try each")


def _ordinal(number: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(number, f"{number}th")


CHECKS = (("a node that dies between any two of its commands", a_node_that_dies_leaves_no_session_without_expiry),)
EXPLORE = a_node_that_dies_leaves_no_session_without_expiry  # what `sessionlab race` shows
RACE = None
