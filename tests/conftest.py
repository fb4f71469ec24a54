"""Start the slow commands some test modules read, once the tests are collected."""


def pytest_collection_finish(session):
    started = set()
    for item in session.items:
        module = getattr(item, "module", None)
        start = getattr(module, "start_in_background", None)
        if start is not None and module not in started:
            started.add(module)
            start()
