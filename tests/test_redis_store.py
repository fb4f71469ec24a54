"""Track 4's store on a real Redis: the contract on every node, and what the nodes share.

Every test runs on a throwaway redis-server (the ``redis_url`` fixture: a free
loopback port, persistence off, stopped at the end); without redis-server the
tests skip with one line saying how to install it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from sessionlab import api
from sessionlab.api import InvalidInput, SessionError, SessionNotFound, StoreError
from sessionlab.judge import contract
from sessionlab.servers import redis_server

MANAGER = "RedisSessionManager"
# buggy's logout calls the client's WATCH, which redis-py warns about: that warning is the bug's, not the test's.
pytestmark = pytest.mark.filterwarnings("ignore:Call WATCH from a Pipeline object")
CHECKS = contract.contract_checks(MANAGER)


@pytest.fixture
def nodes(impl, redis_url):
    """Two nodes of one site: their own connection pools, one namespace on one server."""
    options = redis_server.node_options()
    made = [impl.new(MANAGER, **options) for _ in range(2)]
    yield made
    for node in made:
        node.close()


@pytest.mark.parametrize("name, check", CHECKS, ids=[re.sub(r"\W+", "-", name)[:48] for name, _ in CHECKS])
def test_the_contract_check_holds_on_a_redis_node(impl, redis_url, name, check):
    figure = check(impl)
    assert figure.held, figure.summary


def test_the_whole_contract_holds_on_a_redis_node(impl, redis_url):
    figure = contract.run_contract(impl, MANAGER)
    assert figure.held and figure.summary.startswith(f"the contract holds: {len(CHECKS)} checks"), figure.summary


def test_every_node_sees_the_sessions_and_reports_the_same_truth(nodes):
    first, second = nodes
    session_id = first.create_session("u-1", "Ada")
    second.update_session(session_id, "cart", "3 books")
    assert second.increment_access(session_id) == 1
    assert dict(first.get_session(session_id).metadata) == {"cart": "3 books"}
    assert first.get_session(session_id).access_count == 1
    other = second.create_session("u-2", "Grace")
    first.delete_session(other)
    assert first.get_stats() == second.get_stats()
    assert first.get_stats().total_sessions == 2 and first.get_active_count() == second.get_active_count() == 1
    assert api.health_check(first) == api.health_check(second) and api.health_check(first).healthy


def test_a_session_expires_on_the_server_and_every_access_sets_its_time_again(impl, redis_url):
    options = redis_server.node_options()
    raw = redis.Redis.from_url(redis_url)
    with impl.new(MANAGER, ttl=100.0, **options) as node:
        session_id = node.create_session("u-1", "Ada")
        key = f"{options['namespace']}session:{session_id}"
        assert 0 < raw.pttl(key) <= 100_000
        raw.pexpire(key, 5_000)
        node.get_session(session_id)
        assert raw.pttl(key) > 90_000
        raw.pexpire(key, 5_000)
        node.update_session(session_id, "cart", "1 book")
        assert raw.pttl(key) > 90_000
        raw.pexpire(key, 5_000)
        node.increment_access(session_id)
        assert raw.pttl(key) > 90_000
        raw.delete(key)  # what Redis does when the time is up
        with pytest.raises(SessionNotFound):
            node.get_session(session_id)
    raw.close()


@pytest.mark.parametrize("call", [
    lambda node, sid: node.create_session("u\n1", "Ada"),
    lambda node, sid: node.get_session("not an id!"),
    lambda node, sid: node.update_session(sid, "", "x"),
    lambda node, sid: node.update_session(sid, "cart", object()),
    lambda node, sid: node.increment_access(17),
    lambda node, sid: node.delete_session(sid + "/"),
], ids=["name", "id", "key", "value", "increment", "logout"])
def test_bad_input_is_refused_before_any_command_is_sent(nodes, redis_url, call):
    node = nodes[0]
    session_id = node.create_session("u-1", "Ada")
    raw = redis.Redis.from_url(redis_url)
    before = raw.info("stats")["total_commands_processed"]
    with pytest.raises(InvalidInput):
        call(node, session_id)
    assert raw.info("stats")["total_commands_processed"] == before + 1  # the INFO that read it
    raw.close()


def test_a_redis_that_is_down_gives_a_store_error_with_the_cause_and_no_session_id(impl, redis_url):
    with impl.new(MANAGER, **redis_server.node_options()) as node:
        session_id = node.create_session("u-1", "Ada")
    down = f"redis://127.0.0.1:{redis_server.free_port()}/0"
    with impl.new(MANAGER, url=down, timeout=0.5) as node:
        for call in (lambda: node.create_session("u-1", "Ada"), lambda: node.get_session(session_id),
                     lambda: node.update_session(session_id, "k", 1), lambda: node.increment_access(session_id),
                     lambda: node.delete_session(session_id), node.get_stats):
            with pytest.raises(StoreError) as raised:
                call()
            assert "cannot reach Redis" in str(raised.value) and session_id not in str(raised.value)
            assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_full_redis_gives_a_store_error_and_keeps_the_session_whole(impl, redis_url):
    raw = redis.Redis.from_url(redis_url)
    with impl.new(MANAGER, **redis_server.node_options()) as node:
        session_id = node.create_session("u-1", "Ada")
        raw.config_set("maxmemory", "1")
        raw.config_set("maxmemory-policy", "noeviction")
        try:
            with pytest.raises(StoreError, match="full"):
                node.update_session(session_id, "cart", "x" * 4000)
        finally:
            raw.config_set("maxmemory", "0")
        assert dict(node.get_session(session_id).metadata) == {}
    raw.close()


def test_a_closed_node_refuses_calls_and_still_answers_its_stats(impl, redis_url):
    node = impl.new(MANAGER, **redis_server.node_options())
    session_id = node.create_session("u-1", "Ada")
    node.close()
    with pytest.raises(SessionError):
        node.get_session(session_id)
    assert node.get_stats().total_sessions == 1 and node.get_active_count() == 1
    node.close()


def test_the_throwaway_server_listens_on_loopback_only_and_leaves_nothing_behind():
    if shutil.which("redis-server") is None:
        pytest.skip(f"no redis-server binary on PATH: {redis_server.INSTALL}")
    server = redis_server.RedisServer().start()
    folder, port = server.folder, server.port
    raw = redis.Redis(host="127.0.0.1", port=port)
    assert raw.config_get("bind")["bind"] == "127.0.0.1"
    assert raw.config_get("save")["save"] == "" and raw.config_get("appendonly")["appendonly"] == "no"
    raw.close()
    server.stop()
    assert not folder.exists()
    with pytest.raises(ConnectionRefusedError):  # the server is gone: nothing listens on its port
        socket.create_connection(("127.0.0.1", port), timeout=0.5)


@pytest.mark.slow  # a pytest of its own: several seconds
def test_without_redis_server_the_track_s_tests_skip_saying_how_to_install_it():
    """A machine with no redis-server: the track's tests skip, each with the one line, and pass."""
    root = Path(__file__).resolve().parent.parent
    environment = {key: value for key, value in os.environ.items() if key != redis_server.URL_VARIABLE}
    environment["PATH"] = ""  # no redis-server to be found
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:xdist", "-rs",
                             "tests/test_redis_store.py", "-k", "whole_contract or loopback"],
                            cwd=root, env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "3 skipped" in result.stdout, result.stdout[-2000:]
    assert "apt-get install -y redis-server" in result.stdout, result.stdout[-2000:]


def test_without_redis_server_the_track_is_missing_in_one_line(monkeypatch):
    monkeypatch.setattr(redis_server.shutil, "which", lambda name: None)
    monkeypatch.delenv(redis_server.URL_VARIABLE, raising=False)
    monkeypatch.setitem(redis_server._shared, "url", "")
    why = redis_server.missing()
    assert "redis-server" in why and "apt-get install -y redis-server" in why and "\n" not in why
    with pytest.raises(redis_server.ServerUnavailable, match="apt-get install -y redis-server"):
        redis_server.RedisServer().start()
    monkeypatch.setenv(redis_server.URL_VARIABLE, "redis://127.0.0.1:6399/0")  # an existing server will do
    assert redis_server.missing() == ""


def test_without_redis_server_check_is_unproven_and_says_how_to_install_it(monkeypatch):
    from sessionlab import catalogue, implementations
    from sessionlab.judge import checks

    monkeypatch.setattr(redis_server.shutil, "which", lambda name: None)
    monkeypatch.delenv(redis_server.URL_VARIABLE, raising=False)
    monkeypatch.setitem(redis_server._shared, "url", "")
    verdict = checks.judge(catalogue.find("counter-get-set"), implementations.load("fixed"))
    assert verdict.status == checks.UNPROVEN, verdict.status
    assert "apt-get install -y redis-server" in verdict.evidence and "\n" not in verdict.evidence


@pytest.mark.parametrize("options", [
    {"url": "http://127.0.0.1:6379"}, {"url": 6379}, {"namespace": ""}, {"namespace": "site*"},
    {"name": "node 1"}, {"ttl": 0}, {"ttl": -5.0}, {"timeout": 0},
], ids=["scheme", "not-a-str", "empty-namespace", "pattern-namespace", "name", "zero-ttl", "negative-ttl",
        "timeout"])
def test_a_node_refuses_bad_options_before_connecting(impl, options):
    manager = getattr(impl.module, MANAGER)
    with pytest.raises(InvalidInput):
        manager(**{"url": "redis://127.0.0.1:1/0", **options})


def test_a_process_that_ends_without_stopping_its_server_takes_the_server_with_it(redis_url):
    """Killed, or ended by os._exit, a process runs no atexit: its throwaway server still goes."""
    code = ("import os; from sessionlab.servers import redis_server; "
            "print(redis_server.RedisServer().start().port, flush=True); os._exit(0)")
    port = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              cwd=Path(__file__).resolve().parent.parent).stdout)
    for _ in range(50):
        try:
            socket.create_connection((redis_server.HOST, port), timeout=0.5).close()
        except OSError:
            break  # nothing answers on its port any more
        time.sleep(0.1)
    else:
        raise AssertionError(f"the server on port {port} outlived the process that started it")
