"""Learner code that fails: an ERROR (or HANGS) verdict with the learner's own file and line, never a traceback.

Each case breaks the working copy the way a learner does mid-edit (a syntax error,
a name that does not exist, a deleted method, an exception inside a call, a
lock taken twice) and runs the commands as the learner would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import lab, needs_frontrun, run  # noqa: F401  (lab is a fixture)

from sessionlab import catalogue
from sessionlab.cli.status import EXIT_ERROR, EXIT_FOR, EXIT_HANGS, EXIT_USAGE, SEVERITY, worst


def mutate(lab: Path, old: str, new: str) -> int:
    """Replace text in the working copy's manager.py; return the line number where the new text starts."""
    path = lab / "workspace" / "manager.py"
    text = path.read_text()
    assert text.count(old) == 1, f"the working copy no longer holds {old!r} exactly once"
    path.write_text(text.replace(old, new))
    return text[: text.index(old)].count("\n") + 1 + old[: len(old) - len(old.lstrip("\n"))].count("\n")


def sessionlab(lab: Path, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """The command as a learner runs it: a process, in the project folder, not on a terminal, 80 columns."""
    env = {**os.environ, "SESSIONLAB_ROOT": str(lab), "COLUMNS": "80"}
    env.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, "-m", "sessionlab", *argv], cwd=lab, env=env, capture_output=True,
                          text=True, timeout=timeout)


BROKEN = {
    # name: (text to replace, its replacement, what the learner must read)
    "syntax error": ("        metadata[key] = value\n", "        metadata[key] = = value\n", "SyntaxError"),
    "name error at import": ("\nclass SessionManager", "\nundefined_helper()\n\nclass SessionManager",
                             "NameError: name 'undefined_helper' is not defined"),
    "deleted method": ("    def get_active_count(self)", "    def active_count(self)",
                       "SessionManager has no method get_active_count"),
    "exception inside a call": ("count = record.access_count + 1", "count = record.access_count + None",
                                "TypeError: unsupported operand"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_code_is_an_error_with_the_learners_file_and_line(capsys, lab, case):
    old, new, message = BROKEN[case]
    run(capsys, "start")
    line = mutate(lab, old, new)
    where = "manager.py" if case == "deleted method" else f"manager.py:{line}"

    code, out, err = run(capsys, "check", "lost-increments")
    assert code == EXIT_ERROR == 3, out + err
    assert "2. lost-increments in workspace: ERROR" in out and message in out and where in out
    assert "Traceback" not in out + err

    code, out, err = run(capsys, "check", "lost-increments", "--json")
    result = json.loads(out)
    assert code == 3 and result["status"] == "ERROR" and result["exit"] == 3
    (verdict,) = result["verdicts"]
    assert verdict["status"] == "ERROR" and verdict["fixed"] is False and message in verdict["evidence"]
    if case == "exception inside a call":  # it loaded, then raised: the check that ran says where
        assert verdict["checks"][-1]["outcome"] == "error" and where in verdict["checks"][-1]["detail"]
    else:  # it did not load: no check ran, and the error says where
        assert verdict["checks"] == [] and message in verdict["error"]["message"]
        assert verdict["error"]["file"].endswith("manager.py")

    if case in ("syntax error", "name error at import"):
        return  # manager.py did not load, persistent.py did: list and check --all judge track 2 (see below)
    # list shows the state of each exercise instead of crashing
    code, out, err = run(capsys, "list")
    assert code == 0 and "Traceback" not in out + err
    kind = message.split(":")[0].split()[0] if case != "deleted method" else "SessionManager"
    assert f"error: {kind}" in out and where in out
    code, out, _ = run(capsys, "list", "--json")
    track_one = {bug.slug for bug in catalogue.track(1)}
    assert {e["status"] for e in json.loads(out)["exercises"] if e["bug"] in track_one} == {"error"}

    # check --all: the worst verdict counts, and the summary line ends it
    code, out, _ = run(capsys, "check", "--all")
    assert code == 3 and f"0 of {len(catalogue.BUGS)} fixed." in out


def test_the_learner_reads_their_own_path_and_line_and_never_a_traceback(lab):
    assert sessionlab(lab, "start").returncode == 0
    line = mutate(lab, *BROKEN["syntax error"][:2])
    result = sessionlab(lab, "check")
    assert result.returncode == 3
    assert f"(workspace/manager.py:{line})" in result.stdout or f"workspace/manager.py:{line}:" in result.stdout
    assert "metadata[key] = = value" in result.stdout  # the learner's own line, quoted
    assert "Traceback" not in result.stdout + result.stderr
    listing = sessionlab(lab, "list")
    assert listing.returncode == 0 and f"error: SyntaxError (workspace/manager.py:{line})" in listing.stdout
    assert all(len(text) <= 80 for text in listing.stdout.splitlines())
    # Each track loads on its own: persistent.py loaded, so track 2 is judged as before.
    for bug in catalogue.track(2):
        assert re.search(rf"^ +{bug.number} +{bug.slug} +still buggy$", listing.stdout, re.M), listing.stdout
    assert "workspace/manager.py did not load, so exercises 1, 2, 3, 4, 5, 6 could not be" in listing.stdout
    assert "Traceback" not in listing.stdout + listing.stderr


def break_persistent(lab: Path) -> int:
    """A missing colon in the working copy's persistent.py (track 2); return its line."""
    path = lab / "workspace" / "persistent.py"
    lines = path.read_text().splitlines(keepends=True)
    number = next(n for n, text in enumerate(lines) if text.lstrip().startswith("def increment_access("))
    lines[number] = lines[number].replace("):", ")", 1) if "):" in lines[number] else lines[number].replace(":", "", 1)
    path.write_text("".join(lines))
    return number + 1


@needs_frontrun
@pytest.mark.parametrize("broken", ["manager.py", "persistent.py"])
def test_a_file_that_does_not_load_is_an_error_for_its_own_exercises_only(capsys, lab, broken):
    run(capsys, "start")
    if broken == "manager.py":
        line, mine, other = mutate(lab, *BROKEN["syntax error"][:2]), "lost-increments", "stale-cache"
    else:
        line, mine, other = break_persistent(lab), "cross-process-increment", "lost-increments"
    code, out, _ = run(capsys, "check", mine, "--no-stress", "--json")
    (verdict,) = json.loads(out)["verdicts"]
    assert code == 3 and verdict["status"] == "ERROR" and verdict["error"]["line"] == line
    assert verdict["error"]["file"] == f"workspace/{broken}" and "SyntaxError" in verdict["error"]["message"]
    # The other track's exercise is judged as it was before the typo: still buggy, by its figure.
    code, out, _ = run(capsys, "check", other, "--no-stress", "--json")
    (verdict,) = json.loads(out)["verdicts"]
    assert code == 1 and verdict["status"] == "STILL BUGGY" and "error" not in verdict
    assert [c["outcome"] for c in verdict["checks"]][-1] in ("broke", "hang")
    assert verdict["checks"][0]["outcome"] == "held"  # the contract ran on the file that loaded


def test_observe_and_race_on_broken_code_say_error_in_one_place(capsys, lab):
    run(capsys, "start")
    line = mutate(lab, *BROKEN["name error at import"][:2])
    code, out, err = run(capsys, "observe", "lost-increments")
    assert code == 3 and out == "" and "ERROR" in err and f"manager.py:{line}" in err
    code, out, _ = run(capsys, "observe", "lost-increments", "--json")
    error = json.loads(out)["error"]
    assert code == 3 and error["kind"] == "code" and error["code"]["line"] == line
    code, out, _ = run(capsys, "race", "lost-increments", "--json")
    assert code == 3 and json.loads(out)["error"]["code"]["line"] == line
    code, out, _ = run(capsys, "demo", "--impl", str(lab / "workspace"), "--json")
    assert code == 3 and json.loads(out)["error"]["kind"] == "code"


def test_a_call_that_raises_while_observed_is_an_error_too(capsys, lab):
    run(capsys, "start")
    line = mutate(lab, *BROKEN["exception inside a call"][:2])
    code, out, err = run(capsys, "observe", "lost-increments", "--impl", str(lab / "workspace"))
    assert code == 3 and f"manager.py:{line}" in err and "TypeError" in err and "Traceback" not in err


@needs_frontrun
def test_code_that_deadlocks_hangs_and_says_where_each_thread_waits(lab):
    assert sessionlab(lab, "start").returncode == 0
    line = mutate(lab, "        with self._lock:\n            record.metadata = metadata",
                  "        with self._lock, self._lock:\n            record.metadata = metadata")
    result = sessionlab(lab, "check", "--all", "--json")
    data = json.loads(result.stdout)
    assert result.returncode == EXIT_HANGS == 4 and data["status"] == "HANGS"
    first, *rest = data["verdicts"]
    assert first["bug"] == "lost-updates" and first["status"] == "HANGS"
    assert first["checks"][-1]["outcome"] == "hang" and f"manager.py:{line}" in first["checks"][-1]["detail"]
    # Its stuck threads are still there: the rest are left unchecked, and say so.
    assert all(v["status"] == "UNPROVEN" and "not checked" in v["evidence"] for v in rest)
    listing = sessionlab(lab, "list")
    assert "hangs: did not finish" in listing.stdout and "not checked" in listing.stdout
    assert "Traceback" not in result.stderr + listing.stderr


def test_usage_errors_are_json_under_json(capsys, lab):
    code, out, err = run(capsys, "check", "lost-increments", "--json")  # no working copy yet
    assert code == EXIT_USAGE and json.loads(out)["error"]["exit"] == 2 and err == ""
    run(capsys, "start")
    code, out, err = run(capsys, "check", "lost-incremnts", "--json")
    error = json.loads(out)["error"]
    assert code == 2 and error["kind"] == "unknown-bug" and error["suggestion"] == "lost-increments" and err == ""
    code, out, err = run(capsys, "observe", "2", "--rounds", "0", "--json")  # refused by the parser
    assert code == 2 and "at least 1" in json.loads(out)["error"]["message"] and err == ""
    code, out, _ = run(capsys, "list", "--impl", "no/such/folder", "--json")
    assert code == 2 and "no implementation" in json.loads(out)["error"]["message"]


def test_the_readme_has_one_table_of_exit_statuses_and_it_is_the_commands():
    from sessionlab.cli import status

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    rows = {code: word.strip() for code, word in re.findall(r"^\| (\d+) \|([A-Z ]*)\|", readme, re.M)}
    assert rows == {"0": "FIXED", "1": "STILL BUGGY", "2": "", "3": "ERROR", "4": "HANGS", "5": "UNPROVEN",
                    "70": "", "130": ""}
    assert {int(code): word for code, word in rows.items() if word} == {v: k for k, v in EXIT_FOR.items()}
    assert (status.EXIT_USAGE, status.EXIT_INTERNAL, status.EXIT_INTERRUPTED) == (2, 70, 130)
    for code in rows:  # the help's table, printed by --help of check and race, has the same rows
        assert re.search(rf"^  {code} +", status.EXIT_STATUSES, re.M), code


def test_the_worst_verdict_counts_and_each_has_its_exit_status():
    assert SEVERITY == ("ERROR", "HANGS", "STILL BUGGY", "UNPROVEN", "FIXED")
    assert EXIT_FOR == {"FIXED": 0, "STILL BUGGY": 1, "ERROR": 3, "HANGS": 4, "UNPROVEN": 5}
    assert worst(["FIXED", "UNPROVEN", "STILL BUGGY"]) == "STILL BUGGY"
    assert worst(["HANGS", "STILL BUGGY", "ERROR"]) == "ERROR"
    assert worst(["FIXED", "UNPROVEN"]) == "UNPROVEN"
    assert worst(["FIXED", "FIXED"]) == "FIXED"


def test_observe_reports_a_round_that_hangs_as_hangs_on_stdout(capsys, lab, monkeypatch):
    from sessionlab.engines import bounded

    def stuck(run, seconds, label, files):
        raise bounded.Hang(seconds, label, [bounded.Wait("thread worker-0", str(lab / "workspace" / "manager.py"),
                                                         103, "update_session", "with self._lock:", "self._lock")])

    run(capsys, "start")
    monkeypatch.setattr(bounded, "run_bounded", stuck)
    code, out, err = run(capsys, "observe", "lost-updates", "--impl", "workspace")
    assert code == EXIT_HANGS == 4 and "workspace: HANGS" in out and "Traceback" not in out + err
    assert "did not finish within" in out and "waits for self._lock at manager.py:103" in " ".join(out.split())
    code, out, _ = run(capsys, "observe", "lost-updates", "--impl", "workspace", "--json")
    (observation,) = json.loads(out)
    assert code == 4 and observation["detected"] and observation["figure"]["got"] == "did not finish"
