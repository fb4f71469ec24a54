"""The sessionlab command, as a learner uses it, in a scratch copy of the project."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sessionlab import catalogue
from sessionlab.cli import main
from sessionlab.engines import exploration
from sessionlab.learner import workspace
from sessionlab.servers import redis_server

ROOT = Path(__file__).resolve().parent.parent
AVAILABLE, WHY = exploration.frontrun_available()
needs_frontrun = pytest.mark.skipif(not AVAILABLE, reason=WHY)


def fresh(bug) -> str:
    """What list says of an exercise of a fresh copy: still buggy, or unproven where its track cannot
    run here (track 4 without redis-server)."""
    return "unproven" if bug.track == 4 and redis_server.missing() else "buggy"


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A copy of the project's buggy/, fixed/ and exercises/, used as the project root."""
    for folder in ("buggy", "fixed", "exercises"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("SESSIONLAB_ROOT", str(tmp_path))
    monkeypatch.setenv("SESSIONLAB_STATE", str(tmp_path / ".sessionlab"))  # its own, not the self-test's
    return tmp_path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def apply_reference_fix(lab: Path, slug: str) -> None:
    """Copy the reference's version of a bug's functions into the working copy."""
    mine = lab / workspace.WORKSPACE / workspace.MODULE
    reference = workspace.functions(lab / "fixed" / workspace.MODULE)
    workspace.replace_functions(mine, {name: reference[name].text for name in catalogue.find(slug).functions})
    text = mine.read_text()
    if "secrets." in text and "import secrets" not in text:
        mine.write_text(text.replace("import logging\n", "import logging\nimport secrets\n"))


def test_demo_shows_every_bug_on_buggy_and_none_on_fixed(capsys):
    # Track 2 only: every track-1 scenario runs in tests/test_stress.py as well, and the demo of
    # both tracks takes 15 s.
    code, out, _ = run(capsys, "demo", "--track", "2", "--json")
    assert code == 0
    result = json.loads(out)
    assert [row["bug"] for row in result["bugs"]] == [bug.slug for bug in catalogue.track(2)]
    for row in result["bugs"]:
        assert row["buggy"]["detected"], row["buggy"]["message"]
        assert not row["fixed"]["detected"], row["fixed"]["message"]
        assert row["fixed"]["rounds"] == row["fixed"]["max_rounds"]


def test_observe_reports_the_figure(capsys):
    code, out, _ = run(capsys, "observe", "cleanup-leak", "--impl", "buggy", "--impl", "fixed", "--json")
    buggy, fixed = json.loads(out)
    assert code == 0
    assert buggy["detected"] and buggy["figure"]["expected"] == "0" and int(buggy["figure"]["got"]) > 0
    assert not fixed["detected"] and fixed["figure"]["got"] == "0"


def test_observe_rate_counts_single_rounds(capsys, lab):
    code, out, _ = run(capsys, "observe", "3", "--impl", "buggy", "--rate", "3")
    assert code == 0
    assert "buggy: broke in 3 of 3 rounds (100%)" in out
    assert not (lab / ".sessionlab" / "rates.json").exists()  # three rounds calibrate nothing


def test_observe_changes_what_check_does_only_when_asked_to_calibrate(capsys, lab, monkeypatch):
    from sessionlab.cli import observing
    from sessionlab.engines import stress

    monkeypatch.setattr(observing, "CALIBRATION_RUNS", 3)  # the rounds it takes (50) cost seconds here
    code, out, _ = run(capsys, "observe", "3", "--impl", "buggy", "--rate", "3")
    assert code == 0 and "not kept for this machine's bounds: that takes --calibrate" in " ".join(out.split())
    assert not (lab / ".sessionlab" / "rates.json").exists() and stress.calibration("cleanup-leak") is None
    code, out, _ = run(capsys, "observe", "3", "--impl", "buggy", "--rate", "3", "--calibrate")
    assert code == 0 and "kept for this machine" in out
    assert stress.calibration("cleanup-leak") == stress.Rate(3, 3)


def test_unknown_names_get_one_clear_line(capsys):
    code, _, err = run(capsys, "observe", "lost-updats")
    assert code == 2 and "no bug named 'lost-updats'" in err and "did you mean lost-updates?" in err
    code, _, err = run(capsys, "observe", "lost-updates", "--impl", "no/such/folder")
    assert code == 2 and "no implementation" in err


@needs_frontrun
def test_race_prints_the_interleaving_and_the_figure(capsys, lab):
    # The report's own layout is tested with the report (tests/test_race.py); here, that race prints it.
    code, out, _ = run(capsys, "race", "lost-increments")
    assert code == 1  # an interleaving broke it
    assert "lost-increments (bug 2, atomicity violation) on buggy" in out
    assert "2 increments, counted 1" in out
    assert out.count("count = record.access_count + 1") >= 2
    assert "sessionlab race lost-increments --impl buggy" in out
    code, out, _ = run(capsys, "race", "lost-increments", "--impl", "fixed", "--json")
    (report,) = json.loads(out)
    assert code == 0 and report["held"] and report["complete"] and report["explored"] >= 2
    assert report["status"] == "FIXED"
    code, out, _ = run(capsys, "race", "lost-increments", "--impl", "fixed", "--impl", "buggy", "--json")
    assert code == 1 and [r["status"] for r in json.loads(out)] == ["FIXED", "STILL BUGGY"]


@needs_frontrun
def test_race_reports_the_deadlock_on_stdout_as_its_finding(capsys, lab):
    code, out, err = run(capsys, "race", "lock-order-deadlock")
    assert code == 1 and "lock-order-deadlock (bug 9, deadlock) on buggy: BROKEN" in out and err == ""
    assert "Your code deadlocks" in out and out.count("holds self.") == 2 and out.count("waits for self.") == 2
    code, out, _ = run(capsys, "race", "lock-order-deadlock", "--json")
    (report,) = json.loads(out)
    assert code == 1 and report["status"] == "STILL BUGGY" and report["held"] is False
    assert report["hang"]["deadlock"] and len(report["hang"]["waits"]) == 2
    code, out, _ = run(capsys, "race", "lock-order-deadlock", "--impl", "fixed", "--json")
    assert code == 0 and json.loads(out)[0]["status"] == "FIXED"


@needs_frontrun
def test_race_refuses_a_bug_that_is_not_a_race(capsys, lab):
    code, _, err = run(capsys, "race", "cleanup-leak")
    assert code == 2 and "not a race" in err and "sessionlab observe cleanup-leak" in err


def test_check_needs_a_working_copy(capsys, lab):
    code, _, err = run(capsys, "check", "lost-increments")
    assert code == 2 and "sessionlab start" in err


@needs_frontrun
def test_the_learner_loop_from_start_to_a_fixed_bug_and_back(capsys, lab):
    code, out, _ = run(capsys, "start")
    assert code == 0 and (lab / "workspace" / "manager.py").exists()
    assert (lab / "workspace" / "manager.py").read_text() == (lab / "buggy" / "manager.py").read_text()
    code, out, _ = run(capsys, "start")
    assert "already exists" in out

    code, out, _ = run(capsys, "list", "--json")
    listing = json.loads(out)
    assert [e["status"] for e in listing["exercises"]] == [fresh(bug) for bug in catalogue.BUGS]
    assert listing["next"] == "lost-updates"

    code, out, _ = run(capsys, "check", "lost-increments")
    assert code == 1 and "STILL BUGGY" in out and "2 increments, counted 1" in out

    apply_reference_fix(lab, "lost-increments")
    code, out, _ = run(capsys, "check", "lost-increments", "--json")
    (verdict,) = json.loads(out)["verdicts"]
    assert code == 0 and verdict["fixed"]
    kinds = [c["kind"] for c in verdict["checks"]]
    assert kinds[-1] == "stress" and set(kinds[:-1]) == {"deterministic"}
    assert all(c["outcome"] == "held" for c in verdict["checks"])

    code, out, _ = run(capsys, "list", "--json")
    statuses = {e["bug"]: e["status"] for e in json.loads(out)["exercises"]}
    assert statuses["lost-increments"] == "fixed" and statuses["lost-updates"] == "buggy"

    code, out, _ = run(capsys, "diff", "lost-increments")
    assert "SessionManager.increment_access: identical to the reference." in out

    code, out, _ = run(capsys, "reset", "lost-increments")
    assert code == 0
    saved = list((lab / ".sessionlab" / "saved").glob("lost-increments-*-manager.py"))
    assert len(saved) == 1 and "# FIX(lost-increments)" in saved[0].read_text()
    code, out, _ = run(capsys, "reset", "lost-increments")
    assert code == 0 and "nothing was changed or saved" in out
    assert len(list((lab / ".sessionlab" / "saved").iterdir())) == 1
    code, out, _ = run(capsys, "check", "lost-increments")
    assert code == 1 and "STILL BUGGY" in out

    # Before any attempt the diff would be the whole fix: the hints come first, the fix when asked for.
    code, out, _ = run(capsys, "diff", "lost-increments")
    assert code == 0 and "You have not changed SessionManager.increment_access yet" in out
    assert "sessionlab hint lost-increments" in out and "FIX(" not in out
    assert "To see it anyway: sessionlab diff lost-increments --yes" in out
    code, out, _ = run(capsys, "diff", "lost-increments", "--yes")
    assert "-        count = record.access_count + 1" in out and "+            # FIX(lost-increments)" in out


def test_hints_come_one_at_a_time_and_stop_at_the_last(capsys, lab):
    seen = []
    for _ in range(6):
        code, out, _ = run(capsys, "hint", "id-collision")
        seen.append(out.splitlines()[0])
    assert seen[:4] == [f"Hint {n} of 4 for id-collision:" for n in range(1, 5)]
    assert seen[4:] == ["Hint 4 of 4 for id-collision:"] * 2
    progress = json.loads((lab / ".sessionlab" / "hints.json").read_text())
    assert progress == {"id-collision": 4}


@needs_frontrun
def test_check_without_a_bug_checks_the_current_exercise(capsys, lab):
    run(capsys, "start")
    apply_reference_fix(lab, "lost-updates")
    code, out, _ = run(capsys, "check", "--json")
    (verdict,) = json.loads(out)["verdicts"]
    assert code == 1 and verdict["bug"] == "lost-increments" and not verdict["fixed"]


@needs_frontrun
def test_watch_runs_the_current_check(capsys, lab):
    run(capsys, "start")
    code, out, _ = run(capsys, "watch", "--once")
    assert code == 1 and "1. lost-updates in workspace: STILL BUGGY" in out


def test_git_ignores_the_working_copy_and_the_lab_state():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["workspace/manager.py", ".sessionlab/hints.json", ".sessionlab/saved/x-manager.py"]
    result = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.split() == paths


def test_without_frontrun_race_says_why_and_check_falls_back_on_stress(capsys, monkeypatch):
    from sessionlab import implementations
    from sessionlab.engines import exploration
    from sessionlab.judge import checks

    monkeypatch.setattr(exploration, "frontrun_available", lambda: (False, "frontrun has no build for this platform"))
    code, out, _ = run(capsys, "race", "lost-increments")
    assert code == 5 and "frontrun has no build for this platform" in " ".join(out.split())  # 5: undecided
    assert "lost-increments (bug 2, atomicity violation) on buggy: UNPROVEN" in out
    code, out, _ = run(capsys, "race", "lost-increments", "--json")
    (report,) = json.loads(out)
    assert code == 5 and report["status"] == "UNPROVEN" and report["held"] is None
    verdict = checks.judge(catalogue.find("lost-increments"), implementations.load("buggy"))
    skipped = [result for result in verdict.results if result.held is None]
    stressed = verdict.results[-1]
    assert skipped and all("frontrun has no build" in result.message for result in skipped)
    assert stressed.check.kind == "stress" and stressed.held is False and not verdict.fixed


@needs_frontrun
def test_the_json_schemas_graders_rely_on(capsys, lab):
    run(capsys, "start")
    code, out, _ = run(capsys, "check", "stats-drift", "--json")
    result = json.loads(out)
    # The fields graders rely on are all there (new ones may be added, none taken away).
    assert set(result) >= {"implementation", "verdicts"}
    assert result["status"] == "STILL BUGGY" and result["exit"] == code == 1
    (verdict,) = result["verdicts"]
    assert set(verdict) >= {"bug", "number", "implementation", "fixed", "evidence", "checks", "status"}
    assert verdict["status"] == "STILL BUGGY" and verdict["fixed"] is False
    for check in verdict["checks"]:
        assert set(check) >= {"check", "kind", "message", "outcome", "seconds", "detail"}
        assert check["outcome"] in {"held", "broke", "skipped", "error", "hang"}
    code, out, _ = run(capsys, "list", "--json")
    listing = json.loads(out)
    assert set(listing) >= {"workspace", "exercises", "next"}
    for exercise in listing["exercises"]:
        assert set(exercise) >= {"bug", "evidence", "folder", "hints", "hints_seen", "number", "status", "title"}
        bug = catalogue.find(exercise["bug"])
        assert exercise["status"] == fresh(bug)
        assert exercise["verdict"] == ("STILL BUGGY" if fresh(bug) == "buggy" else "UNPROVEN")
