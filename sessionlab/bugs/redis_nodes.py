"""What the bugs of the Redis track share: two nodes on one server, and a look at what the server holds.

A node is one app server: a ``RedisSessionManager`` with its own connection
pool. Every scenario makes two nodes of one site (one namespace on the lab's
throwaway redis-server, ``sessionlab.servers.redis_server``), a session made on
node 0, and asks the server itself, with a client of its own, what it holds
afterwards: no node's answer is trusted alone. When a scenario breaks, its
figure lists every command the nodes sent, in the order the server ran them
(the throwaway server keeps each in its slow log, with the node's name).
"""

from __future__ import annotations

import secrets
import textwrap
from dataclasses import replace
from typing import Any

import redis

from sessionlab.api import SessionNotFound
from sessionlab.engines.exploration.threads import State, Worker

from sessionlab.implementations import Implementation
from sessionlab.servers import redis_server

MANAGER = "RedisSessionManager"
# What a search of two nodes sees besides the store's code: every command each node sent (frontrun's
# Redis key-level detection), not redis-py's own code (each node's connection pool is its own).
SEEN = "every Redis command of both nodes seen as the server ran it (redis-py's own code not traced)"
NODES = 2
START = 1_700_000_000.0  # every node's clock stands here


def new_state(implementation: Implementation, metadata: tuple[tuple[str, str], ...] = ()) -> State:
    """Two nodes of one site, and a session node 0 made (with metadata stored in it)."""
    options = redis_server.node_options()
    names = [f"node-{number}-{secrets.token_hex(4)}" for number in range(NODES)]
    nodes = [implementation.new(MANAGER, clock=lambda: START, name=name, **options) for name in names]
    session_id = nodes[0].create_session("user-1", "Ada")
    for key, value in metadata:
        nodes[0].update_session(session_id, key, value)
    return State(nodes[0], session_id, {"nodes": nodes, "namespace": options["namespace"], "url": options["url"],
                                        "answers": [[] for _ in range(NODES)],
                                        "names": names, "since": _last_command(str(options["url"]))})


def node(state: State, number: int) -> Any:
    return state.seen["nodes"][number]


def answer(state: State, number: int) -> Any:
    """What node number's call returned ("SessionNotFound" when it raised that; None: nothing yet)."""
    answers = state.seen["answers"][number]
    return answers[0] if answers else None


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
        answer = state.seen["answers"][number]  # each node's own list: no write the nodes share
        try:
            answer.append(call(node(state, number), state.session_id))
        except Exception as exc:
            if not (gone_is_an_answer and isinstance(exc, SessionNotFound)):
                raise
            answer.append("SessionNotFound")

    return Worker(f"node {number}: {label}", run)


def checked(check: Any) -> Any:
    """A scenario's check that closes the nodes and cleans the server whatever it found; a figure that
    broke gets the nodes' commands, in the order the server ran them."""

    def run(state: State) -> Any:
        try:
            figure = check(state)
            if not figure.held:
                shown = commands(state)
                if shown:
                    figure = replace(figure, history="The nodes' Redis commands, in the order the server ran "
                                                     "them (s is the session):\n" + shown)
            return figure
        finally:
            finish(state)

    return run


def _last_command(url: str) -> int:
    """The id of the last command in the server's slow log (-1: none)."""
    client = redis.Redis.from_url(url)
    try:
        last = client.slowlog_get(1)
        return int(last[0]["id"]) if last else -1
    finally:
        client.close()


def commands(state: State, most: int = 40) -> str:
    """The scenario's nodes' commands since its setup, as the server ran them: "node 0 │ HGETALL s"."""
    client = redis.Redis.from_url(state.seen["url"])
    try:
        entries = client.slowlog_get(redis_server.COMMANDS_KEPT)
    finally:
        client.close()
    names = {name: number for number, name in enumerate(state.seen["names"])}
    mine = [entry for entry in reversed(entries) if entry["id"] > state.seen["since"]
            and _text(entry.get("client_name", b"")) in names
            and _text(entry["command"]).split(" ")[0].upper() not in _CONNECTING]
    lines = []
    for entry in mine:
        lines += textwrap.wrap(_command(state, entry["command"]), WIDTH - 11, break_on_hyphens=False,
                               initial_indent=f"  node {names[_text(entry['client_name'])]} │ ",
                               subsequent_indent="         │     ")
    return "\n".join(lines[:most] + ([f"  ... {len(lines) - most} more"] if len(lines) > most else []))


# What a connection sends before its first command: not the scenario's.
_CONNECTING = ("CLIENT", "HELLO", "AUTH", "SELECT", "PING")
WIDTH = 80


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _command(state: State, command: Any) -> str:
    """One logged command, its keys named as the scenario names them (the session id is a secret)."""
    namespace, session_id = state.seen["namespace"], state.session_id
    words = _text(command).split(" ")
    shown = []
    for word in words:
        word = word.replace(f"{namespace}session:{session_id}", "s").replace(f"{namespace}stats", "stats")
        shown.append(word if len(word) <= 24 else word[:21] + "...")
    if shown and shown[0].upper() in ("EVALSHA", "EVAL") and len(shown) > 1:
        shown[1] = "<script>"
    return " ".join(shown)
