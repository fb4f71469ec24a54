"""Track 3, in the wild: the same bugs in stores on real frameworks, found in the frameworks' own lines.

buggy/wild holds session layers written the way applications use Django's
cache session engine and Flask-Session: one request loads the session,
changes it and saves all of it back. The lab finds the lost update, the lost
increment and the double logout in them, deterministically, and its report
shows the framework's file and line where the race is. fixed/wild holds the
application-level fixes, which hold over every interleaving and under stress.
The table in TECHNICAL.md is what ``sessionlab wild --buggy-only --markdown``
prints, and what these tests assert.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sessionlab import catalogue, race, stress, wild

ok, why = wild.available()
if not ok:
    pytest.skip(why, allow_module_level=True)
ok, why = race.frontrun_available()
if not ok:
    pytest.skip(why, allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent

# Which track-1 bugs each store has, as applications write it: the same three in both.
HAS = {
    "django_cache": {"lost-updates", "lost-increments", "stats-drift"},
    "flask_cachelib": {"lost-updates", "lost-increments", "stats-drift"},
}
# The file of each framework where the session is loaded and saved: the report names it.
FRAMEWORK_FILE = {"django_cache": "django/core/cache/backends/locmem.py", "flask_cachelib": "cachelib/simple.py"}
# What each bug's scenario measures when it breaks.
FIGURE = {"lost-updates": "was lost", "lost-increments": "1 of 2 lost",
          "stats-drift": "2 of the 2 logouts of one session succeeded"}
FOUND = [(store, bug) for store, bugs in HAS.items() for bug in sorted(bugs)]


def lines(report) -> list[tuple[int, str]]:
    """The interleaving's lines in the order they ran: (thread, file:line)."""
    return [(step.thread, line.location) for step in report.steps for line in step.lines]


@pytest.fixture(scope="module")
def buggy_findings():
    return wild.findings(("buggy",))


def test_each_store_has_the_bugs_the_table_says(buggy_findings):
    got = {(f.store, f.bug.slug) for f in buggy_findings if f.has}
    assert got == set(FOUND), f"found {sorted(got)}"
    assert len(buggy_findings) == len(wild.STORES) * len(catalogue.track(1))


def test_technical_md_holds_the_table_the_command_prints(buggy_findings):
    table = wild.markdown(buggy_findings)
    assert table in (ROOT / "TECHNICAL.md").read_text(encoding="utf-8"), (
        "TECHNICAL.md's table of the stores in the wild is out of date; paste in what "
        f"`sessionlab wild --buggy-only --markdown` prints:\n{table}")


@pytest.mark.parametrize(("store", "slug"), FOUND)
def test_the_race_is_found_in_the_frameworks_own_lines(store, slug):
    first = race.explore(slug, wild.store(store))
    again = race.explore(slug, wild.store(store))
    assert not first.held
    assert FIGURE[slug] in first.figure.summary, first.figure.summary
    text = first.text(width=100)
    framework = [line for step in first.steps for line in step.lines if line.path]
    assert framework, "the interleaving shows no line of the framework"
    assert {line.path for line in framework} >= {FRAMEWORK_FILE[store]}, {line.path for line in framework}
    assert f"is {FRAMEWORK_FILE[store]}" in text
    # Deterministic: the same search finds the same interleaving, in as many executions.
    assert again.explored == first.explored
    assert again.figure.summary == first.figure.summary
    assert lines(again) == lines(first)
    assert first.explored <= 20


@pytest.mark.parametrize(("store", "slug"), FOUND)
def test_the_application_fix_holds_over_every_interleaving(store, slug):
    report = race.explore(slug, wild.store(store, "fixed"))
    assert report.held and report.complete, report.message
    assert report.preemptions is None, "the fix must hold over every interleaving, not a bounded search"
    assert report.explored >= 3, report.message


@pytest.mark.parametrize(("store", "slug"), FOUND)
def test_the_application_fix_holds_under_stress(store, slug):
    implementation = wild.store(store, "fixed")
    observation = stress.observe(slug, implementation.factory(catalogue.find(slug)),
                                 implementation=implementation.name, max_rounds=2)
    assert not observation.detected, observation.message
    assert observation.rounds == 2


def test_a_lock_around_the_save_alone_is_still_buggy(tmp_path):
    """A fix that looks right and is not: the load happens before the lock, so two requests still
    save copies loaded at the same time."""
    source = (ROOT / "buggy" / "wild" / "django_cache.py").read_text(encoding="utf-8")
    wrong = source.replace(
        '        session.save()  # the whole session, as SessionMiddleware saves it after the view',
        '        with self._lock:\n            session.save()')
    assert wrong != source
    path = tmp_path / "django_cache.py"
    path.write_text(wrong, encoding="utf-8")
    from sessionlab.impls import load

    report = race.explore("lost-updates", load(str(path)))
    assert not report.held, report.message
    assert "was lost" in report.figure.summary


def test_without_the_frameworks_the_self_test_says_why_in_one_line(tmp_path):
    """No realworld extra: this module is skipped, with one line that says how to install it."""
    hidden = tmp_path / "hidden"
    (hidden / "django").mkdir(parents=True)
    (hidden / "django" / "__init__.py").write_text("raise ImportError('No module named django')\n")
    env = dict(os.environ, PYTHONPATH=str(hidden), PYTEST_ADDOPTS="")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider",
                           str(Path(__file__))], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=60)
    skipped = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert done.returncode in (0, 5), done.stdout[-2000:]  # 5: this module alone, so nothing ran
    assert len(skipped) == 1, done.stdout[-2000:]
    assert "pip install -e '.[realworld]'" in skipped[0]
