"""Start the slow commands some test modules read, once the tests are collected; leave the tests marked
slow (the judge on every held-out fix of the persistent track: minutes) to ``pytest --slow``."""

import os

import pytest


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (minutes more)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes, not seconds: run with pytest --slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with pytest --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # each worker is one core's share already: a module's commands start when a test first waits
    started = set()
    for item in session.items:
        module = getattr(item, "module", None)
        start = getattr(module, "start_in_background", None)
        if start is not None and module not in started:
            started.add(module)
            start()


@pytest.fixture(scope="session")
def redis_url():
    """A throwaway redis-server on a free loopback port for this test process, stopped at the end (or the
    server SESSIONLAB_REDIS_URL names); every node made without a URL uses it. Without redis-server the
    test skips, saying how to install it."""
    from sessionlab.servers import redis_server

    why = redis_server.missing()
    if why:
        pytest.skip(why)
    if os.environ.get(redis_server.URL_VARIABLE):  # an existing server, named by the environment
        yield os.environ[redis_server.URL_VARIABLE]
        return
    with redis_server.RedisServer() as server:
        redis_server.use(server.url)
        try:
            yield server.url
        finally:
            redis_server.use("")
