"""What the code under test logs is summed up in one line per logger, never printed as a traceback."""

from __future__ import annotations

import logging

from sessionlab.cli import framework_logs


def test_a_warning_with_a_traceback_is_counted_not_printed(capsys):
    root = logging.getLogger()
    handlers = list(root.handlers)
    with framework_logs.collected() as logs:
        for _ in range(3):
            try:
                raise FileNotFoundError("/tmp/sessions/3f2a")
            except FileNotFoundError:
                logging.warning("Exception raised while handling cache file '/tmp/sessions/%s'", "3f2a" * 30,
                                exc_info=True)
        logging.getLogger("flask_session").error("could not save")
    assert capsys.readouterr().err == ""
    assert root.handlers == handlers  # and logging.warning() left no handler of its own behind
    assert logs.summary() == [
        "sessionlab: the code under test logged 3 warnings while it ran, the first: Exception raised while "
        "handling cache file '/tmp/sessions/3f2a3f2a3... (FileNotFoundError)",
        "sessionlab: logger 'flask_session' logged 1 error while it ran, the first: could not save",
    ]
