"""What the command prints: tables within 80 columns, colour only on a terminal, progress, honest rates."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time

from test_cli import lab, needs_frontrun, run  # noqa: F401  (lab is a fixture)

from sessionlab import catalogue
from sessionlab.cli import output, verdicts
from sessionlab.judge import checks
from sessionlab.cli.output import Progress, table

ESCAPE = re.compile(r"\033\[")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_table_wraps_cells_at_spaces_to_fit_80_columns():
    rows = [("#", "bug", "class", "symptom")]
    rows += [(str(bug.number), bug.slug, bug.bug_class, bug.symptom) for bug in catalogue.BUGS]
    lines = table(rows, columns=80)
    assert all(len(line) <= 80 for line in lines)
    words = " ".join(lines).split()
    for row in rows:
        for cell in row:
            for word in cell.split():
                assert word in words, f"{word!r} was broken across lines"
    # a cell wraps onto a continuation line, never the next row's
    assert sum(1 for line in lines if re.match(r"  \d+ ", line)) == len(catalogue.BUGS)


def test_a_word_longer_than_its_column_stays_whole():
    lines = table([("a", "b"), ("x", "a-very-long-path/that/cannot/break.py and more words here")], columns=40)
    assert any("a-very-long-path/that/cannot/break.py" in line for line in lines)


def test_a_column_with_nothing_in_it_takes_no_room():
    lines = table([("", "#", "exercise"), ("", "1", "lost-updates"), ("", "2", "lost-increments")], columns=80)
    assert lines == ["  #  exercise", "  1  lost-updates", "  2  lost-increments"]


def held_everywhere(bugs, loaded, progress, *, stress_too=True):
    """Every check of every bug held: the verdicts list prints once a learner has fixed everything."""
    return [checks.Verdict(bug, loaded.name, tuple(checks.Result(check, checks.HELD, f"{bug.slug}: holds", 0.01)
                                                   for check in checks.checks_for(catalogue.home(bug))))
            for bug in bugs]


def test_list_once_every_exercise_is_fixed_prints_the_table_and_points_at_track_3(capsys, lab, monkeypatch):
    run(capsys, "start")
    monkeypatch.setattr(verdicts, "judge_all", held_everywhere)
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run(capsys, "list")
    assert code == 0, err
    assert f"{len(catalogue.BUGS)} of {len(catalogue.BUGS)} fixed." in out and "->" not in out
    assert all(re.search(rf"^  {bug.number} +{bug.slug} +fixed$", out, re.M) for bug in catalogue.BUGS)
    assert "track 3" in out and "workspace/wild/" in out
    # Track 3 in the same table: its stores, as their last check left them (none yet).
    assert re.search(r"^  12 +wild/django_cache +not checked yet$", out, re.M), out
    assert re.search(r"^  13 +wild/flask_cachelib +not checked yet$", out, re.M), out
    assert "Track 3: 0 of 2 stores fixed." in out
    assert max(len(line) for line in out.splitlines()) <= 80
    code, out, err = run(capsys, "list", "--impl", "fixed")
    assert code == 0 and f"{len(catalogue.BUGS)} of {len(catalogue.BUGS)} fixed." in out, err


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert output.paint("FIXED", "green", Terminal()) == "\033[32mFIXED\033[0m"
    assert output.paint("FIXED", "green", io.StringIO()) == "FIXED"
    monkeypatch.setenv("NO_COLOR", "1")
    assert output.paint("FIXED", "green", Terminal()) == "FIXED"


def test_off_a_terminal_a_slow_phase_gets_one_line_and_a_quick_one_none():
    stream = io.StringIO()
    progress = Progress(stream, quiet_seconds=0.2)
    progress.phase("quick work")
    progress.end()
    progress.phase("slow work")
    for n in range(5):
        progress.show(f"round {n}")
        time.sleep(0.1)
    time.sleep(0.2)
    progress.end()
    assert stream.getvalue() == "sessionlab: slow work ...\n"


def test_on_a_terminal_the_progress_line_erases_itself():
    stream = Terminal()
    progress = Progress(stream)
    shown = progress.rounds("lost-updates on buggy")
    shown(1, 12)
    progress.end()
    text = stream.getvalue()
    assert "round 1 of at most 12" in text and text.endswith("\r") and "\n" not in text


def sessionlab(lab, *argv, env=None):
    environment = {**os.environ, "SESSIONLAB_ROOT": str(lab), "COLUMNS": "80", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sessionlab", *argv], cwd=lab, env=environment,
                          capture_output=True, text=True, timeout=120)


@needs_frontrun
def test_plain_output_fits_80_columns_has_no_colour_and_shows_progress(lab):
    result = sessionlab(lab, "list")  # no working copy: the catalogue's table
    assert result.returncode == 0 and all(len(line) <= 80 for line in result.stdout.splitlines())
    assert sessionlab(lab, "start").returncode == 0
    result = sessionlab(lab, "list")
    table_lines = [line for line in result.stdout.splitlines() if re.match(r"\s+(->)?\s+\d+  ", line)]
    # the catalogue's exercises and track 3's two
    assert len(table_lines) == len(catalogue.BUGS) + 2 and all(len(line) <= 80 for line in result.stdout.splitlines())
    result = sessionlab(lab, "observe", "lost-increments", "--impl", "fixed")  # 1.5-4 s of rounds
    assert not ESCAPE.search(result.stdout + result.stderr)
    # At most one plain line for the phase, and only if it ran over two seconds (test_progress_* time it).
    assert result.stderr in ("", "sessionlab: lost-increments on fixed ...\n"), result.stderr
    assert all(len(line) <= 80 for line in result.stdout.splitlines())


@needs_frontrun
def test_check_prints_the_interleaving_under_the_check_that_broke(capsys, lab, monkeypatch):
    run(capsys, "start")
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "check", "lost-increments")
    assert code == 1 and max(len(line) for line in out.splitlines()) <= 80
    broke = out.index("[FAIL] every interleaving (frontrun)")
    report = out.index("lost-increments (bug 2, atomicity violation) on workspace", broke)
    assert report < out.index("[    ] every pair of operations", broke)
    assert out[report:].count("count = record.access_count + 1") >= 2


def test_observe_rate_gives_an_interval_and_says_whether_the_assumed_rate_lies_in_it(capsys, lab):
    code, out, _ = run(capsys, "observe", "lost-increments", "--impl", "buggy", "--rate", "4")
    assert code == 0
    assert re.search(r"buggy: broke in \d of 4 rounds \(\d+%\); 95% interval \d+\.\d% to \d+\.\d% \(Wilson\)", out)
    rate = catalogue.home("lost-increments").stress.round_rate
    assert f"the lab assumes buggy/ breaks at least {rate:.0%} of rounds, which lies" in " ".join(out.split())
    assert "once in a million" not in out.split("The checks run")[0]  # no miss probability of its own
    code, out, _ = run(capsys, "observe", "lost-increments", "--impl", "fixed", "--rate", "4", "--json")
    (result,) = json.loads(out)
    assert result["broke"] == 0 and result["interval"][0] == 0 and 0 < result["interval"][1] < 1
    assert result["assumed_rate_is"] is None  # fixed/ never breaks: nothing to compare
    assert result["confidence"] == "95%"


def test_help_fits_80_columns():
    env = dict(os.environ, COLUMNS="80")
    done = subprocess.run([sys.executable, "-m", "sessionlab", "--help"], env=env, text=True,
                          capture_output=True, timeout=60)
    wide = [line for line in done.stdout.splitlines() if len(line) > 80]
    assert done.returncode == 0 and "exit status:" in done.stdout and not wide, wide


def wider_than(columns: int, out: str) -> list[str]:
    return [line for line in out.splitlines() if len(ESCAPE.sub("", line)) > columns]


@needs_frontrun
def test_every_command_fits_80_columns(capsys, lab, monkeypatch):
    """The quick commands run here; check, list, watch, observe and race are measured where they are
    tested (this module, tests/test_watch.py, tests/test_cli_errors.py)."""
    from sessionlab.cli import build_parser, inthewild
    from sessionlab.judge import wild

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.chdir(lab)
    names = [name for action in build_parser()._subparsers._group_actions for name in action.choices]
    assert len(names) >= 14
    runs = [(), ("--help",), *((name, "--help") for name in names), ("list",), ("start",), ("hint",),
            ("hint", "--all"), ("diff", "lost-updates"), ("diff", "lost-updates", "--yes"),
            ("diff", "--yes", "--impl", "workspace/wild/django_cache.py"), ("reset", "lost-updates"),
            ("race", "lost-updates"), ("observe", "lost-increments", "--rounds", "1"),
            ("bench", "--operations", "200", "--repeats", "1", "--threads", "1", "4", "--workloads", "get")]
    for argv in runs:
        code, out, err = run(capsys, *argv)
        assert code in (0, 1), (argv, code, err)
        assert out and not wider_than(80, out), (argv, wider_than(80, out))
    monkeypatch.setattr(verdicts, "judge_all", held_everywhere)
    code, out, _ = run(capsys, "check", "--all")  # the verdicts in full, then one screen of summary
    summary = out[out.index("Summary"):].splitlines()
    assert code == 0 and not wider_than(80, out) and len(summary) <= 24
    assert sum(1 for line in summary if re.match(r"  \d+ +\S+ +FIXED ", line)) == len(catalogue.BUGS)
    # wild's table, on findings of every kind: a bug's number stays with its name, on one row.
    found = [wild.Finding(store, variant, bug, has=variant == "buggy", evidence="")
             for variant in ("buggy", "fixed") for store in ("django_cache", "flask_cachelib")
             for bug in catalogue.track(1)]
    lines = inthewild.text_table(found, 80)
    assert not wider_than(80, "\n".join(lines)) and len(lines) == 2 + len(catalogue.track(1))
