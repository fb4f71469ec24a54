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
assertion), the run ends with a verdict per bug, and each check runs on a thread of
its own within a short bound: one that hangs fails with "HANGS" and where each thread waits.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest
from hypothesis import HealthCheck, Phase, settings

from sessionlab import catalogue, implementations

if TYPE_CHECKING:
    from sessionlab.engines.bounded import Hang

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


# A check's bound, in learner mode: its own timeout marker, or the plugin's bound; and whether it hung.
CHECK_BOUND, HUNG = pytest.StashKey[float](), pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    # A wrapper, and the outermost one: pytest-timeout reads an item's bound in its own
    # wrapper, before any plain hook runs, so the bound must be on the item by then.
    if _learner_mode(item.config):
        own = item.get_closest_marker("timeout")  # a check's own bound, if it has one
        bound = own and (own.args or [own.kwargs.get("timeout")])[0]
        if not bound:
            bound = item.config.getoption("--check-timeout") or LEARNER_TIMEOUT
            if item.config._sessionlab_hung:  # type: ignore[attr-defined]
                bound = min(bound, AFTER_A_HANG_TIMEOUT)
        item.stash[CHECK_BOUND] = bound = float(bound)
        # pytest-timeout's alarm bounds the setup; the call and the teardown get their own (below).
        item.add_marker(pytest.mark.timeout(bound), append=False)
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """In learner mode a check runs on a thread of its own, within its bound: a hang fails it, saying where."""
    if CHECK_BOUND not in pyfuncitem.stash:
        return None
    from sessionlab.engines.bounded import run_bounded

    getattr(pyfuncitem.ihook, "pytest_timeout_cancel_timer", lambda item: None)(item=pyfuncitem)
    test = pyfuncitem.obj
    arguments = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    run_bounded(lambda: test(**arguments), seconds=pyfuncitem.stash[CHECK_BOUND], label=pyfuncitem.name,
                files=getattr(pyfuncitem.funcargs.get("impl"), "files", None))
    return True


class Abandoned(Exception):
    """A teardown that did not finish within its bound, given up."""

    @staticmethod
    def give_up(signum: int, frame: Any) -> None:
        raise Abandoned("the teardown did not finish within its bound")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """A check's teardown gets a short bound: after a check hung, closing its manager may wait for a
    lock the stuck thread holds. When that is all, the check's own failure said it (see makereport)."""
    on_main_thread = threading.current_thread() is threading.main_thread()
    armed = on_main_thread and CHECK_BOUND in item.stash and hasattr(signal, "SIGALRM")
    if armed:
        previous = signal.signal(signal.SIGALRM, Abandoned.give_up)
        signal.setitimer(signal.ITIMER_REAL, min(item.stash[CHECK_BOUND], AFTER_A_HANG_TIMEOUT))
    yield  # an old-style wrapper: the teardown's own error does not surface here
    if armed:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In learner mode only the checks run: the tests of the lab itself judge nobody's code."""
    if not _learner_mode(config):
        for item in items:
            _expect_detection(item)
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
    # On buggy, a check of a bug is a strict expected failure: see _expect_detection.
    metafunc.parametrize("impl", [pytest.param("fixed", id="fixed"), pytest.param("buggy", id="buggy")],
                         indirect=True)


def _expect_detection(item: pytest.Item) -> None:
    """In the self-test, a check of a bug (by its own marker or its parameter's) must fail on buggy."""
    bug = bug_of(item)
    if bug is not None and getattr(item, "callspec", None) and item.callspec.params.get("impl") == "buggy":
        item.add_marker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
            f"the pristine buggy/ has bug {bug.number}, {bug.slug}: this check must detect it")))


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

    if isinstance(excinfo.value, implementations.NotLoaded):
        text = f"ERROR: your code did not load: {text}"
    elif isinstance(excinfo.value, Hang):
        text = f"HANGS: {text}"
    elif isinstance(excinfo.value, Abandoned) or (excinfo.typename == "Failed" and "Timeout" in text):
        text = f"HANGS: {text}" + _where_it_waited(excinfo, files)
    return text


def _where_it_waited(excinfo: pytest.ExceptionInfo[BaseException], files: frozenset[str]) -> str:
    """Where the timed-out test was waiting: its innermost line in the code under test."""
    import linecache
    import traceback

    from sessionlab.engines.bounded import matcher

    mine = matcher(files or None)  # no files known: any outside the standard library, site-packages, the lab
    found = [(frame.f_code.co_filename, line, frame.f_code.co_name)
             for frame, line in traceback.walk_tb(excinfo.tb) if mine(frame.f_code.co_filename)]
    if not found:
        return ""
    filename, line, function = found[-1]
    source = linecache.getline(filename, line).strip()
    return f" The test's thread waits at {Path(filename).name}:{line} `{source}` in {function}."


# -- Hypothesis machines: every call of the code under test bounded ------------------------
# Hypothesis takes any Exception (pytest-timeout's alarm too) for a failure to shrink and replay, into
# the same hang: each call gets a bound of its own, inside the check's, and a hang raises HungCall.
CALL_TIMEOUT = 5  # learner mode: one call gets at most this, and half the check's bound at most
SCENARIO_TIMEOUT = 10  # calls started at once under exploration, or a scenario run whole


class HungCall(BaseException):
    """A call of the code under test hung. Not an Exception, which Hypothesis would replay."""


class BoundedCalls:
    """Calls of the code under test, each within a bound; after one has hung, no more calls
    (its stuck thread still holds what it held: not even close is called again)."""

    def __init__(self, files: frozenset[str] = frozenset(), seconds: float = LEARNER_TIMEOUT,
                 scenario_seconds: float = SCENARIO_TIMEOUT) -> None:
        self.files, self.seconds, self.scenario_seconds = files, seconds, scenario_seconds
        self.hung = ""  # what the call that hung said

    def bound(self, scenario: bool = False) -> float:  # with scenario: for calls started at once
        if self.hung:
            raise HungCall(self.hung)
        return self.scenario_seconds if scenario else self.seconds

    def run(self, function: Callable[[], Any], label: str, *, scenario: bool = False) -> Any:
        from sessionlab.engines.bounded import Hang, run_bounded

        try:
            return run_bounded(function, seconds=self.bound(scenario), label=label, files=self.files,
                               cycles=not scenario)  # a single call: nothing inside schedules its threads
        except Hang as hang:
            self.stop(hang)

    def stop(self, hang: Hang, label: str = "") -> NoReturn:  # a call's Hang, or an exploration's
        self.hung = f"HANGS: {label or hang.label}: {hang.summary}"
        raise HungCall(self.hung) from None

    @contextmanager
    def failing_on_a_hang(self) -> Iterator[None]:
        """A call that hung fails the check as every check fails: with an AssertionError (HANGS: where)."""
        try:
            yield
        except HungCall as hung:
            raise AssertionError(str(hung)) from None


class BoundedManager:
    """A manager, made and then called with every method within its BoundedCalls' bound."""

    def __init__(self, calls: BoundedCalls, make: Callable[[], Any], label: str = "making a manager") -> None:
        self._calls, self._manager = calls, calls.run(make, label)

    def within_bound(self, function: Callable[[Any], Any], label: str) -> Any:
        """function(manager), its calls bounded as one: for a check that makes many."""
        return self._calls.run(lambda: function(self._manager), label)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._manager, name)
        if not callable(attribute):
            return attribute
        return lambda *args, **kwargs: self._calls.run(lambda: attribute(*args, **kwargs), f"a call of {name}")


@pytest.fixture
def bounded_calls(request: pytest.FixtureRequest, impl: implementations.Implementation) -> BoundedCalls:
    """Bounds for a Hypothesis machine's calls of the code under test (see HungCall)."""
    whole = request.node.stash.get(CHECK_BOUND, None)
    if whole is None:  # the self-test: nothing should hang, and a bound must never be what fails
        return BoundedCalls(impl.files)
    return BoundedCalls(impl.files, min(CALL_TIMEOUT, whole / 2), min(SCENARIO_TIMEOUT, whole / 2))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    config = item.config
    bug = bug_of(item)
    if call.excinfo is not None and call.excinfo.errisinstance(Abandoned) and item.stash.get(HUNG, False):
        report.outcome, report.longrepr = "passed", None  # it waited for the thread the check left stuck
        return report
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
                item.stash[HUNG] = True  # its teardown may wait for its stuck thread
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
        words = {message.split(":", 1)[0] for _, message in failed}  # the worst first: ERROR, HANGS
        state = "ERROR" if "ERROR" in words else "HANGS" if "HANGS" in words else "STILL BUGGY"
        first = failed[0][1].splitlines()[0] if failed[0][1] else failed[0][0]
        terminalreporter.write_line(f"{bug.number}. {bug.slug}: {state}, {len(failed)} of {len(results)} checks fail")
        terminalreporter.write_line(f"    {first}")
    total = sum(1 for bug in catalogue.BUGS if bug.slug in outcomes)
    terminalreporter.write_line(f"{fixed} of {total} bugs pass every check")
