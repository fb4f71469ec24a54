"""Stores whose state lives in files: the search sees the files, as it sees a dict.

Flask-Session on cachelib's FileSystemCache and Django's file session engine
keep each session in a file. Two requests race through that file: each loads
the session (an open, a stat), and saves it by replacing the file or removing
it at a logout. The search reports those calls as reads and writes of the
session's file (``engines/exploration/files.py``), so it finds the lost update,
the lost increment and the double logout there, and the application's fixes
(one lock per session around load-change-save) hold over every interleaving.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from wild_stores import ROOT, on_files

from sessionlab import catalogue
from sessionlab.engines import exploration
from sessionlab.engines.exploration import threads
from sessionlab.implementations import load
from sessionlab.judge import wild

ok, why = wild.available()
if not ok:
    pytest.skip(why, allow_module_level=True)
ok, why = exploration.frontrun_available()
if not ok:
    pytest.skip(why, allow_module_level=True)

STORES = ("flask_filesystem", "django_file")  # django_db: below
BUGS = ("lost-updates", "lost-increments", "stats-drift")
# What each bug's scenario measures when it breaks.
FIGURE = {"lost-updates": "was lost", "lost-increments": "1 of 2 lost",
          "stats-drift": "2 of the 2 logouts of one session succeeded"}


def _written(tmp_path: Path, store: str, tree: str = "buggy") -> Path:
    path = tmp_path / f"{store}.py"
    path.write_text(on_files(store, tree), encoding="utf-8")
    return path


@pytest.mark.parametrize("slug", BUGS)
@pytest.mark.parametrize("store", STORES)
def test_a_race_through_the_session_file_is_found(tmp_path, store, slug):
    report = threads.explore(catalogue.home(slug).race, load(str(_written(tmp_path, store))))
    assert not report.held, f"{store}: {report.message}"
    assert FIGURE[slug] in report.figure.summary, report.figure.summary


@pytest.mark.parametrize("slug", BUGS)
@pytest.mark.parametrize("store", STORES)
def test_the_application_fix_holds_over_every_interleaving_of_the_files(tmp_path, store, slug):
    report = threads.explore(catalogue.home(slug).race, load(str(_written(tmp_path, store, "fixed"))))
    assert report.held and report.complete, f"{store}: {report.message}"
    assert report.explored >= 2, report.message


# -- Django's database engine, on a SQLite file ------------------------------------------
# Django's statements go through its own cursor class on a connection opened by
# sqlite3.dbapi2.connect; the search sees them (engines/exploration/databases.py), and a
# thread paused inside a transaction no longer stalls the other in SQLite's busy wait.
# Each search runs through Django's ORM, 5-25 s: pytest --slow. Django's settings are the
# process's, so each store runs in a `sessionlab race` of its own. Not yet judged right
# here: the double logout, and the application's fixes (the searches through the ORM
# outlast their bound on a busy machine).


def _race(slug: str, *paths: Path) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "sessionlab", "race", slug,
                           *(option for path in paths for option in ("--impl", str(path))), "--json"],
                          cwd=ROOT, text=True, capture_output=True, timeout=300)
    found = json.loads(done.stdout)
    assert isinstance(found, list), found
    return found


@pytest.mark.slow
@pytest.mark.parametrize("slug", ["lost-updates", "lost-increments"])
def test_a_race_through_the_session_row_is_found(tmp_path, slug):
    [report] = _race(slug, _written(tmp_path, "django_db"))
    assert not report["held"], report["message"]
    assert FIGURE[slug] in report["message"], report["message"]
