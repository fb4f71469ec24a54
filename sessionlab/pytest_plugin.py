"""The lab's pytest plugin: choosing the implementation under test.

It is registered as a pytest plugin by the package's entry point, so that
``--impl`` is known before pytest reads the command line's paths, from any
folder: in ``pytest --impl buggy``, ``buggy`` is the option's value, not a
folder to test.

``pytest`` alone is the lab's self-test: every check runs against ``fixed`` and
must pass, and every check that belongs to a bug also runs against the pristine
``buggy`` and must detect that bug (a strict expected failure; if a check stops
detecting its bug, the self-test fails).

``pytest --impl buggy`` (or ``fixed``, a module name, or the path of a package
folder such as a learner's copy) runs every check plainly against that one
implementation: a check fails until its bug is fixed. In that learner mode a
failure reads as the lab's own figure (not pytest's expansion of the
assertion), the run ends with a verdict per bug, and a check that hangs fails
with "hangs" within a short bound instead of waiting on a thread forever.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

from sessionlab import catalogue, implementations

# Hypothesis profiles (choose with --hypothesis-profile=NAME). The default is small and
# derandomized, so the self-test gives the same verdict on every run. The explain phase
# is left out: it traces execution, and the bursts' exploration traces threads itself.
_QUIET = [HealthCheck.too_slow, HealthCheck.filter_too_much]
_PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]
settings.register_profile("fast", max_examples=15, stateful_step_count=8, derandomize=True,
                          report_multiple_bugs=False, database=None, deadline=None,
                          suppress_health_check=_QUIET, phases=_PHASES)
settings.register_profile("ci", settings.get_profile("fast"), max_examples=40)
settings.register_profile("thorough", max_examples=300, stateful_step_count=25, derandomize=False,
                          report_multiple_bugs=False, deadline=None, suppress_health_check=_QUIET,
                          phases=_PHASES)
settings.load_profile("fast")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--impl",
        metavar="NAME_OR_PATH",
        default=None,
        help="run every check against this implementation only: buggy, fixed, an importable "
        "module, or a package folder. Without it, pytest runs the lab's self-test.",
    )
    parser.addoption(
        "--check-timeout",
        metavar="SECONDS",
        type=float,
        default=None,
        help=f"with --impl: the bound on each check (default {LEARNER_TIMEOUT:g}); once one has hung, the rest "
        f"get at most {AFTER_A_HANG_TIMEOUT:g} s, and the run stops after {MAX_HANGS} hung checks",
    )


# In learner mode no test may run longer than this; once one has hung, the rest get the short bound.
LEARNER_TIMEOUT = 30
AFTER_A_HANG_TIMEOUT = 5
# After this many checks have hung, the run stops: the code deadlocks, and every later check
# that calls the same code would only wait out its own bound.
MAX_HANGS = 3


def pytest_configure(config: pytest.Config) -> None:
    for bug in catalogue.BUGS:
        config.addinivalue_line(
            "markers", f"{bug.marker}: checks that expose bug {bug.number}, {bug.slug} ({bug.title})"
        )
    config._sessionlab_detected = []  # type: ignore[attr-defined]
    config._sessionlab_outcomes = {}  # type: ignore[attr-defined]  # bug slug -> [(nodeid, passed, message)]
    config._sessionlab_hung = False  # type: ignore[attr-defined]
    config._sessionlab_hangs = 0  # type: ignore[attr-defined]
    if _learner_mode(config) and hasattr(config.option, "force_short_summary"):
        # Each failure's report is printed once, above; on CI pytest would repeat it whole in
        # the short summary. One line per failure there, as on a terminal.
        config.option.force_short_summary = True
    if _learner_mode(config) and getattr(config.option, "showcapture", None) == "all":
        # The managers log every login and logout: under a failure, the lab's figure is the
        # message, not the log (--show-capture=log brings it back).
        config.option.showcapture = "stdout"


def _learner_mode(config: pytest.Config) -> bool:
    return config.getoption("--impl") is not None


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    # A wrapper, and the outermost one: pytest-timeout reads an item's bound in its own
    # wrapper, before any plain hook runs, so the bound must be on the item by then.
    if _learner_mode(item.config) and item.get_closest_marker("timeout") is None:
        bound = item.config.getoption("--check-timeout") or LEARNER_TIMEOUT
        if item.config._sessionlab_hung:  # type: ignore[attr-defined]
            bound = min(bound, AFTER_A_HANG_TIMEOUT)
        item.add_marker(pytest.mark.timeout(bound))
    yield


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In learner mode only the checks run: the tests of the lab itself judge nobody's code."""
    if not _learner_mode(config):
        return
    lab_only = [item for item in items if "impl" not in getattr(item, "fixturenames", ())]
    if lab_only:
        config.hook.pytest_deselected(items=lab_only)
        items[:] = [item for item in items if "impl" in getattr(item, "fixturenames", ())]


def bug_of(node: pytest.Item | pytest.Function) -> catalogue.Bug | None:
    """The bug a check belongs to, from its marker."""
    for bug in catalogue.BUGS:
        if node.get_closest_marker(bug.marker) is not None:
            return bug
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "impl" not in metafunc.fixturenames:
        return
    spec = metafunc.config.getoption("--impl")
    if spec is not None:
        metafunc.parametrize("impl", [spec], ids=[_param_id(spec)], indirect=True)
        return
    bug = bug_of(metafunc.definition)
    params = [pytest.param("fixed", id="fixed")]
    if bug is not None:
        params.append(pytest.param(
            "buggy", id="buggy",
            marks=pytest.mark.xfail(
                strict=True, raises=AssertionError,
                reason=f"the pristine buggy/ has bug {bug.number}, {bug.slug}: this check must detect it",
            ),
        ))
    else:
        params.append(pytest.param("buggy", id="buggy"))
    metafunc.parametrize("impl", params, indirect=True)


def _param_id(spec: str) -> str:
    return spec.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or spec


@pytest.fixture(scope="session")
def _implementations() -> dict[str, implementations.Implementation]:
    return {}


@pytest.fixture
def impl(request: pytest.FixtureRequest,
         _implementations: dict[str, implementations.Implementation]) -> implementations.Implementation:
    spec = request.param
    if spec not in _implementations:
        try:
            _implementations[spec] = implementations.load(spec)
        except implementations.ImplementationError as exc:
            pytest.exit(f"--impl: {exc}", returncode=4)
        except implementations.CodeError as exc:
            pytest.exit(f"ERROR: the code of {spec} does not load: {exc}", returncode=3)
    return _implementations[spec]


def lab_message(excinfo: pytest.ExceptionInfo[BaseException], files: frozenset[str] = frozenset()) -> str:
    """The lab's own message of a failure: an assertion's text without pytest's expansion of it."""
    text = str(excinfo.value).strip()
    if isinstance(excinfo.value, AssertionError):
        text = text.split("\nassert ", 1)[0].strip()
    if not text:
        text = excinfo.typename
    from sessionlab.engines.bounded import Hang

    if isinstance(excinfo.value, Hang):
        text = f"HANGS: {text}"
    elif excinfo.typename == "Failed" and "Timeout" in text:
        text = f"HANGS: {text}" + _where_it_waited(excinfo, files)
    return text


def _where_it_waited(excinfo: pytest.ExceptionInfo[BaseException], files: frozenset[str]) -> str:
    """Where the timed-out test was waiting: its innermost line in the code under test."""
    import linecache
    import traceback

    found = [(frame.f_code.co_filename, line, frame.f_code.co_name)
             for frame, line in traceback.walk_tb(excinfo.tb) if frame.f_code.co_filename in files]
    if not found:
        return ""
    filename, line, function = found[-1]
    source = linecache.getline(filename, line).strip()
    return f" The test's thread waits at {Path(filename).name}:{line} `{source}` in {function}."


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    config = item.config
    bug = bug_of(item)
    if report.when == "call" and getattr(report, "wasxfail", None) and call.excinfo is not None:
        message = str(call.excinfo.value).strip().splitlines()
        config._sessionlab_detected.append(  # type: ignore[attr-defined]
            (bug.number if bug else 0, item.nodeid, message[0] if message else "")
        )
    if _learner_mode(config) and (report.when == "call" or report.failed):
        message = ""
        if call.excinfo is not None and report.failed:
            implementation = getattr(item, "callspec", None) and item.funcargs.get("impl")
            message = lab_message(call.excinfo, getattr(implementation, "files", frozenset()))
            if message.startswith("HANGS") or "Timeout" in message:
                config._sessionlab_hung = True  # type: ignore[attr-defined]
                config._sessionlab_hangs += 1  # type: ignore[attr-defined]
                if config._sessionlab_hangs >= MAX_HANGS:  # type: ignore[attr-defined]
                    item.session.shouldstop = (
                        f"{MAX_HANGS} checks hung: the code under test deadlocks or never returns "
                        f"(see where each waits above); the checks after them were not run")
            if config.getoption("tbstyle") in ("auto", "short"):
                report.longrepr = message  # the figure is the deliverable, not pytest's expansion
        if bug is not None:
            config._sessionlab_outcomes.setdefault(bug.slug, []).append(  # type: ignore[attr-defined]
                (item.nodeid, not report.failed, message))
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _learner_mode(config):
        _learner_summary(terminalreporter, config)
    detected = config._sessionlab_detected  # type: ignore[attr-defined]
    if not detected:
        return
    terminalreporter.section("bugs detected on the pristine buggy/ (expected)")
    for _, nodeid, message in sorted(detected):
        terminalreporter.write_line(f"{nodeid.split('::', 1)[-1]}")
        terminalreporter.write_line(f"    {message}")


def _learner_summary(terminalreporter, config: pytest.Config) -> None:
    """One line per bug: fixed, or still failing with its first figure."""
    outcomes = config._sessionlab_outcomes  # type: ignore[attr-defined]
    if not outcomes:
        return
    terminalreporter.section(f"verdict per bug on {config.getoption('--impl')}")
    fixed = 0
    for bug in catalogue.BUGS:
        results = outcomes.get(bug.slug)
        if not results:
            continue
        failed = [(nodeid, message) for nodeid, passed, message in results if not passed]
        if not failed:
            fixed += 1
            terminalreporter.write_line(f"{bug.number}. {bug.slug}: passes all {len(results)} checks")
            continue
        hung = any(message.startswith("HANGS") for _, message in failed)
        state = "HANGS" if hung else "STILL BUGGY"
        first = failed[0][1].splitlines()[0] if failed[0][1] else failed[0][0]
        terminalreporter.write_line(
            f"{bug.number}. {bug.slug}: {state}, {len(failed)} of {len(results)} checks fail")
        terminalreporter.write_line(f"    {first}")
    total = sum(1 for bug in catalogue.BUGS if bug.slug in outcomes)
    terminalreporter.write_line(f"{fixed} of {total} bugs pass every check")
