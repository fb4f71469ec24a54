"""Start the slow commands some test modules read, once the tests are collected; leave the tests marked
slow (the judge on every held-out fix of the persistent track: minutes) to ``pytest --slow``.

The self-test keeps the lab's state (hints seen, where the learner is, measured rates) in a folder of
its own, and fails if the learner's working copy or state in this clone changed while it ran."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LEARNERS = ("workspace", ".sessionlab")  # the learner's, in this clone: the self-test never writes there
_before: dict[str, tuple[int, int]] = {}


def _learners_files() -> dict[str, tuple[int, int]]:
    found = {}
    for folder in LEARNERS:
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                stat = path.stat()
                found[str(path.relative_to(ROOT))] = (stat.st_size, stat.st_mtime_ns)
    return found


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="also run the tests marked slow (minutes more)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes, not seconds: run with pytest --slow")
    config._sessionlab_state = tempfile.mkdtemp(prefix="sessionlab-self-test-")
    os.environ["SESSIONLAB_STATE"] = config._sessionlab_state  # the commands the tests start inherit it
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        _before.update(_learners_files())


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "_sessionlab_state", ""), ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    after = _learners_files()
    changed = sorted(name for name in set(after) | set(_before) if after.get(name) != _before.get(name))
    if changed:
        session.config.get_terminal_writer().line(
            "the self-test changed the learner's files in this clone: " + ", ".join(changed), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
