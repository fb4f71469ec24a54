"""What the bugs of the Redis track share: two nodes on one server, and a look at what the server holds.

A node is one app server: a ``RedisSessionManager`` with its own connection
pool. Every scenario makes two nodes of one site (one namespace on the lab's
throwaway redis-server, ``sessionlab.servers.redis_server``), a session made on
node 0, and asks the server itself, with a client of its own, what it holds
afterwards: no node's answer is trusted alone.
"""

from __future__ import annotations

from typing import Any

import redis

from sessionlab.api import SessionNotFound
from sessionlab.engines.exploration.threads import State, Worker
from sessionlab.implementations import Implementation
from sessionlab.servers import redis_server

MANAGER = "RedisSessionManager"
NODES = 2
START = 1_700_000_000.0  # every node's clock stands here


def new_state(implementation: Implementation, metadata: tuple[tuple[str, str], ...] = ()) -> State:
    """Two nodes of one site, and a session node 0 made (with metadata stored in it)."""
    options = redis_server.node_options()
    nodes = [implementation.new(MANAGER, clock=lambda: START, **options) for _ in range(NODES)]
    session_id = nodes[0].create_session("user-1", "Ada")
    for key, value in metadata:
        nodes[0].update_session(session_id, key, value)
    return State(nodes[0], session_id, {"nodes": nodes, "namespace": options["namespace"], "url": options["url"]})


def node(state: State, number: int) -> Any:
    return state.seen["nodes"][number]


def stored(state: State) -> dict[str, str] | None:
    """The session's hash as the server holds it (None: no such key), read by a client of the lab's."""
    client = redis.Redis.from_url(state.seen["url"], decode_responses=True)
    try:
        key = f"{state.seen['namespace']}session:{state.session_id}"
        return client.hgetall(key) if client.exists(key) else None
    finally:
        client.close()


def finish(state: State) -> None:
    """Close the nodes and remove what their site left on the server."""
    for each in state.seen["nodes"]:
        try:
            each.close()
        except Exception:  # a node the scenario broke: its keys go all the same
            pass
    client = redis.Redis.from_url(state.seen["url"])
    try:
        keys = list(client.scan_iter(match=state.seen["namespace"] + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def on_node(number: int, label: str, call: Any, *, gone_is_an_answer: bool = False) -> Worker:
    """A worker: node number makes one call on the session; what it returned goes in state.seen."""

    def run(state: State) -> None:
        try:
            state.seen[number] = call(node(state, number), state.session_id)
        except Exception as exc:
            if not (gone_is_an_answer and isinstance(exc, SessionNotFound)):
                raise
            state.seen[number] = "SessionNotFound"

    return Worker(f"node {number}: {label}", run)


def checked(check: Any) -> Any:
    """A scenario's check that closes the nodes and cleans the server whatever it found."""

    def run(state: State) -> Any:
        try:
            return check(state)
        finally:
            finish(state)

    return run
