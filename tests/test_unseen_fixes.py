"""The judge on fixes its other tests never saw.

tests/test_fixes.py shows the judge one correct and a few wrong fixes per
exercise. Here it meets the fixes a demanding learner writes next, each a copy
of the pristine buggy/ with a few functions rewritten:

* wrong fixes of every class the lab promises to catch: ids that are unique but
  predictable (a hex counter, a sha256 of a counter, uuid1, time_ns, Python's
  random, 32-bit tokens); a deadlock the fix itself introduces (a lock taken
  twice, two locks taken in opposite orders on two paths); a leak moved out of
  the queue; a snapshot that some other writer still changes, or that is copied
  after the lock is released; a fix that breaks the contract (a rejected key
  kept, a bare KeyError); a narrowed window (a sleep, a double-checked lock, a
  lock per key, per-session locks created check-then-act). Each must be
  rejected with the verdict its class deserves and evidence that names the
  class in the learner's terms.
* correct fixes unlike the reference (a re-entrant lock, per-session locks
  created safely, a condition variable, an optimistic version check, a drained
  or swapped queue, copy under the lock, ids from the OS's randomness with or
  without a counter beside them), each judged FIXED, some with stress too.
* a manager built on an installed third-party package whose race lies inside
  the package: the search finds it only because the package is traced.

Two cases the judge gets wrong today stay here as strict expected failures, each
with the reason (``judge_gap``): they turn into failures the day the judge is
fixed, so that the marker is removed then. Every verdict here is deterministic:
the deciding checks are explorations and single-thread checks; stress, where it
runs, can only confirm.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import sysconfig
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from unseen_cases import Right, Wrong  # noqa: F401
from unseen_right import RIGHT
from unseen_wrong_bugs_1_to_3 import CONDITION_FIX
from unseen_wrong_bugs_4_to_6 import WRONG
from variants import variant

from sessionlab import catalogue, implementations
from sessionlab.engines import exploration
from sessionlab.engines.exploration import search, threads
from sessionlab.judge import checks
from sessionlab.learner import workspace

ROOT = Path(__file__).resolve().parent.parent
AVAILABLE, WHY = exploration.frontrun_available()

pytestmark = pytest.mark.skipif(not AVAILABLE, reason=WHY)

# A hang is decided within the judge's own bounds (1 s for the contract, a lock cycle at once
# under exploration); the whole verdict must come well within this.
HANG_VERDICT_SECONDS = 25.0


def _id(case: Wrong | Right) -> str:
    return f"{case.slug}: {case.name}"


def _params(cases: list) -> list:
    return [pytest.param(case, id=_id(case), marks=[pytest.mark.xfail(strict=True, reason=case.judge_gap)]
                         if case.judge_gap else []) for case in cases]


def test_every_exercise_has_three_new_wrong_and_two_new_correct_fixes():
    from sessionlab import catalogue

    slugs = [bug.slug for bug in catalogue.BUGS if bug.track == 1]
    for slug in slugs:  # counting only the cases the judge gets right today
        assert sum(case.slug == slug and not case.judge_gap for case in WRONG) >= 3, slug
        assert sum(case.slug == slug and not case.judge_gap for case in RIGHT) >= 2, slug
        assert any(case.slug == slug and case.stress and not case.judge_gap for case in RIGHT), slug
    # New: none of them is a variant tests/test_fixes.py already shows the judge.
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        seen = importlib.import_module("test_fixes")
    finally:
        sys.path.remove(str(Path(__file__).parent))
    known = [dict(seen.CORRECT[slug]) for slug in seen.CORRECT] + [
        dict(replacements) for wrong in seen.WRONG.values() for replacements in wrong.values()]
    normal = [{name: textwrap.dedent(text).strip() for name, text in known_one.items()} for known_one in known]
    for case in WRONG + RIGHT:
        mine = {name: textwrap.dedent(text).strip() for name, text in case.replacements.items()}
        assert mine not in normal, f"{_id(case)} is already in tests/test_fixes.py"


@pytest.mark.parametrize("case", _params(WRONG))
def test_a_new_wrong_fix_is_rejected_for_its_class(tmp_path, case):
    started = time.perf_counter()
    verdict = checks.judge(catalogue.find(case.slug), variant(tmp_path, "wrong", case.replacements), stress_too=False)
    elapsed = time.perf_counter() - started
    assert verdict.status != checks.FIXED, f"{_id(case)} was accepted: {verdict.evidence}"
    assert verdict.status == case.status, f"{_id(case)}: {verdict.status}: {verdict.evidence}"
    assert verdict.evidence.startswith(f"{case.slug}: ")
    missing = [words for words in case.says if words.lower() not in verdict.evidence.lower()]
    assert not missing, f"{_id(case)}: the evidence does not say {missing}: {verdict.evidence}"
    if case.status == checks.HANGS:
        assert elapsed < HANG_VERDICT_SECONDS, f"{_id(case)}: HANGS took {elapsed:.1f} s to decide"
        # which check hung, and where each thread waits
        hung = [result for result in verdict.results if result.outcome == checks.HUNG]
        assert hung and hung[0].detail.startswith("HANGS"), hung


@pytest.mark.parametrize("case", _params(RIGHT))
def test_a_new_correct_fix_is_accepted(tmp_path, case):
    verdict = checks.judge(catalogue.find(case.slug), variant(tmp_path, "right", case.replacements),
                           stress_too=case.stress)
    assert verdict.status == checks.FIXED, f"{_id(case)}: a correct fix was judged {verdict.status}: " \
                                           f"{verdict.evidence}"
    ran = [result.check.kind for result in verdict.results]
    assert (checks.STRESS in ran) == case.stress


# == A race inside an installed third-party package ======================================
#
# A manager that keeps its access counts in a small cache library, the way a team would use
# cachelib's SimpleCache: the manager's own code has no race; the library's inc() reads, makes
# a call, and writes. frontrun traces only code outside site-packages unless told otherwise, so
# only because the lab traces the implementation's dependencies does the search see inside it.

TINYCACHE = '''"""tinycache: a tiny in-memory cache. Safe to share between threads."""

import threading
import time

__version__ = "{version}"


class SimpleCache:
    """Keys to values, in memory."""

    def __init__(self):
        self._store = {{}}
        self._written = {{}}  # key -> when it was last written
{lock}
    def get(self, key, default=None):
        return self._store.get(key, default)

    def set(self, key, value):
        self._store[key] = value
        self._touch(key)

    def inc(self, key, delta=1):
        """Add delta to the number stored at key (0 when missing); return the new number."""
{inc}
    def _touch(self, key):
        self._written[key] = time.monotonic()
'''

RACY_RELEASE = TINYCACHE.format(version="1.0", lock="", inc='''\
        value = self.get(key, 0)
        self._touch(key)
        self.set(key, value + delta)
        return value + delta
''')

PATCHED_RELEASE = TINYCACHE.format(version="1.0.1", lock='''\
        # Guards inc: a read and a write of the same key, as one step.
        self._lock = threading.Lock()
''', inc='''\
        with self._lock:
            value = self.get(key, 0)
            self._touch(key)
            self.set(key, value + delta)
            return value + delta
''')


class InstalledPackage:
    """A throwaway package installed into this virtualenv's site-packages, under a name of its own."""

    def __init__(self) -> None:
        self.name = f"tinycache_{uuid.uuid4().hex[:12]}"
        self.site = Path(sysconfig.get_paths()["purelib"])
        self.folder = self.site / self.name
        self.dist_info = self.site / f"{self.name}-1.0.dist-info"

    def install(self, release: str) -> None:
        """Install (or upgrade to) a release: the package's source text."""
        version = release.split('__version__ = "', 1)[1].split('"', 1)[0]
        self.forget()
        shutil.rmtree(self.folder / "__pycache__", ignore_errors=True)
        self.folder.mkdir(exist_ok=True)
        (self.folder / "__init__.py").write_text(release, encoding="utf-8")
        self.dist_info.mkdir(exist_ok=True)
        (self.dist_info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {self.name}\nVersion: {version}\n", encoding="utf-8")
        (self.dist_info / "INSTALLER").write_text("sessionlab-tests\n", encoding="utf-8")
        importlib.invalidate_caches()

    def forget(self) -> None:
        for key in [key for key in sys.modules if key == self.name or key.startswith(self.name + ".")]:
            del sys.modules[key]

    def remove(self) -> None:
        self.forget()
        shutil.rmtree(self.folder, ignore_errors=True)
        shutil.rmtree(self.dist_info, ignore_errors=True)
        importlib.invalidate_caches()


@pytest.fixture
def tinycache():
    package = InstalledPackage()
    try:
        yield package
    finally:
        package.remove()


def cache_manager(folder: Path, package: str) -> implementations.Implementation:
    """The reference manager, with access counts kept in the package's SimpleCache."""
    shutil.copytree(ROOT / "fixed", folder, ignore=shutil.ignore_patterns("__pycache__"))
    module = folder / workspace.MODULE
    text = module.read_text(encoding="utf-8")
    for old, new in (("import logging\n", "import dataclasses\nimport logging\n"),
                     ("from sessionlab.api import (",
                      f"from {package} import SimpleCache\n\nfrom sessionlab.api import ("),
                     ("        self._failed_cleanups = 0\n", "        self._failed_cleanups = 0\n"
                      "        # Access counts by session id; the cache is thread-safe, says its README.\n"
                      "        self._accesses = SimpleCache()\n")):
        assert old in text, f"fixed/{workspace.MODULE} no longer has {old!r}"
        text = text.replace(old, new, 1)
    module.write_text(text, encoding="utf-8")
    workspace.replace_functions(module, {name: textwrap.indent(textwrap.dedent(source), "    ") for name, source in {
        "SessionManager.get_session": '''
        def get_session(self, session_id):
            check_session_id(session_id)
            with self._lock:
                self._check_open()
                record = self._sessions.get(session_id)
                if record is None:
                    self._cache_misses += 1
                    raise SessionNotFound(session_id)
                self._cache_hits += 1
                snapshot = record.snapshot()
            return dataclasses.replace(snapshot, access_count=self._accesses.get(session_id, 0))
        ''',
        "SessionManager.increment_access": '''
        def increment_access(self, session_id):
            check_session_id(session_id)
            now = self._clock()
            with self._lock:
                record = self._require(session_id)
                record.last_accessed = now
            return self._accesses.inc(session_id)
        ''',
    }.items()})
    return implementations.load(str(folder))


def test_a_race_inside_an_installed_package_is_found(tmp_path, tinycache):
    tinycache.install(RACY_RELEASE)
    implementation = cache_manager(tmp_path / "racy", tinycache.name)
    assert implementation.module.manager.SimpleCache.__module__ == tinycache.name
    assert sys.modules[tinycache.name].__file__.startswith(str(tinycache.site))  # really installed

    report = threads.explore(catalogue.home("lost-increments").race, implementation)

    assert report.held is False, report.text()
    assert "2 increments, counted 1" in report.message, report.message
    assert tinycache.name in report.scope, report.scope
    # The interleaving shows the package's own lines where the race really is, and names the file.
    text = " ".join(report.text(width=200).split())
    assert "self._store.get(key, default)" in text and "self._store[key] = value" in text, text
    assert f"__init__.py is {tinycache.name}/__init__.py" in text, text


def test_without_tracing_dependencies_the_search_cannot_see_that_race(tmp_path, tinycache):
    tinycache.install(RACY_RELEASE)
    implementation = cache_manager(tmp_path / "racy", tinycache.name)
    previous = search.TRACING
    search.configure(search.Tracing(dependencies=False))
    try:
        blind = threads.explore(catalogue.home("lost-increments").race, implementation)
    finally:
        search.configure(previous)
    assert search.TRACING == previous
    # Blind to the package, the search "holds", and says what it could not see.
    assert blind.held and blind.complete, blind.text()
    assert f"not traced: {tinycache.name}" in blind.scope, blind.scope
    # Tracing restored, the same code breaks again: the tracing is what made the search honest.
    assert threads.explore(catalogue.home("lost-increments").race, implementation).held is False


def test_with_the_package_fixed_the_search_holds_and_names_it_as_traced(tmp_path, tinycache):
    tinycache.install(RACY_RELEASE)
    racy = cache_manager(tmp_path / "racy", tinycache.name)
    assert threads.explore(catalogue.home("lost-increments").race, racy).held is False

    tinycache.install(PATCHED_RELEASE)  # the package's bug-fix release
    implementation = cache_manager(tmp_path / "patched", tinycache.name)
    assert sys.modules[tinycache.name].__version__ == "1.0.1"
    report = threads.explore(catalogue.home("lost-increments").race, implementation)

    assert report.held and report.complete, report.text()
    text = " ".join(report.text().split())  # as read, whatever the line wrapping
    assert "HOLDS" in text and "the search was complete" in text, text
    traced = f"complete over the code of {implementation.name}, {tinycache.name}"
    unbroken = "".join(report.text().split())  # a path longer than a line breaks after a slash
    assert "".join(traced.split()) in unbroken and traced in report.message, text
    assert "not traced" not in text, text


def test_the_command_line_narrows_and_widens_what_is_traced(tmp_path, tinycache, capsys):
    from sessionlab.cli import main

    tinycache.install(RACY_RELEASE)
    implementation = cache_manager(tmp_path / "racy", tinycache.name)
    race_of = ["race", "lost-increments", "--impl", implementation.name, "--json"]

    def explored(*options: str) -> dict:
        main([*race_of, *options])
        return json.loads(capsys.readouterr().out)[0]

    assert explored()["held"] is False
    narrowed = explored("--no-trace-deps")
    assert narrowed["held"] is True and f"not traced: {tinycache.name}" in narrowed["scope"], narrowed
    widened = explored("--no-trace-deps", "--trace", tinycache.name[:4] + "*")
    assert widened["held"] is False, widened
    assert search.TRACING == search.Tracing()  # each command's choice ends with it


def test_a_result_the_contract_does_not_allow_is_an_error_that_says_so(tmp_path):
    implementation = variant(tmp_path, "none", {"SessionManager.get_stats": '''
    def get_stats(self):
        return None
    '''})
    verdict = checks.judge(catalogue.find("stats-drift"), implementation, stress_too=False)
    assert verdict.status == checks.ERROR, verdict.evidence
    assert "could not use what your code returned" in verdict.evidence, verdict.evidence
    assert "'NoneType' object has no attribute" in verdict.evidence, verdict.evidence


def test_a_correct_fix_the_search_cannot_finish_is_unproven_never_fixed(tmp_path):
    verdict = checks.judge(catalogue.find("lost-increments"), variant(tmp_path, "condition", CONDITION_FIX),
                           stress_too=False)
    assert verdict.status == checks.UNPROVEN, verdict.evidence
    assert "the search could not finish: a run stalled" in verdict.evidence, verdict.evidence
    assert "self._counted.wait()" in verdict.evidence, verdict.evidence
    assert "200 schedules drawn at random held" in verdict.evidence, verdict.evidence
    assert "nothing is proven" in verdict.evidence, verdict.evidence


def test_a_correct_fix_with_a_lock_made_at_import_is_fixed_not_a_hang(tmp_path):
    # A lock at module level is made when the module is imported, before the search patches
    # locks: the search gives it a lock of its own while it runs, so a correct fix is FIXED.
    folder = tmp_path / "module-lock"
    shutil.copytree(ROOT / "buggy", folder, ignore=shutil.ignore_patterns("__pycache__"))
    manager = folder / "manager.py"
    source = manager.read_text()
    anchor = "log = logging.getLogger(__name__)\n"
    assert anchor in source
    manager.write_text(source.replace(anchor, anchor + "\n# Guards every access count, in every manager.\n"
                                      "_COUNTS = threading.Lock()\n", 1))
    workspace.replace_functions(manager, {"SessionManager.increment_access": textwrap.indent(textwrap.dedent('''
        def increment_access(self, session_id):
            check_session_id(session_id)
            with _COUNTS:
                with self._lock:
                    record = self._require(session_id)
                count = record.access_count + 1
                record.last_accessed = self._clock()
                record.access_count = count
                return count
        '''), "    ")})
    implementation = implementations.load(str(folder))
    verdict = checks.judge(catalogue.find("lost-increments"), implementation, stress_too=False)
    assert verdict.status == checks.FIXED, verdict.evidence
    assert type(implementation.module.manager._COUNTS) is type(threading.Lock())  # the original is back
