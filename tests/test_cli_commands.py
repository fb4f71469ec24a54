"""Command-line conventions and the learner loop: names, help, --impl from anywhere, hints, saves, watch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from test_cli import apply_reference_fix, lab, needs_frontrun, run  # noqa: F401  (lab is a fixture)

from sessionlab import catalogue
from sessionlab.cli import build_parser, common, verdicts

# -- Help, version, names ------------------------------------------------------------------------


def test_bare_sessionlab_prints_help_not_an_error(capsys):
    code, out, err = run(capsys)
    assert code == 0 and "usage: sessionlab" in out and "COMMAND" in out and err == ""


def test_version_and_help_state_the_exit_statuses_and_true_defaults(capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out.startswith("sessionlab ")
    code, out, _ = run(capsys, "check", "--help")
    assert code == 0
    for status in ("0    FIXED", "1    STILL BUGGY", "2    usage error", "3    ERROR", "4    HANGS", "5    UNPROVEN",
                   "130  interrupted"):
        assert status in out
    code, out, _ = run(capsys, "watch", "--help")
    assert "default: 0.5" in out and build_parser().parse_args(["watch"]).interval == 0.5
    code, out, _ = run(capsys, "observe", "--help")
    assert "default: your working copy once made, else buggy; and fixed" in " ".join(out.split())


@pytest.mark.parametrize("name", ["lost-increments", "2", "02-lost-increments", "exercises/02-lost-increments/",
                                  "lost_increments", "lost-increment"])
def test_a_bug_may_be_named_any_way_the_catalogue_knows(capsys, lab, name):
    code, out, _ = run(capsys, "hint", name)
    assert code == 0 and out.startswith("Hint 1 of 4 for lost-increments:")


def test_an_unknown_bug_gets_a_did_you_mean(capsys, lab):
    code, _, err = run(capsys, "hint", "stats-drfit")
    assert code == 2 and "did you mean stats-drift?" in err and err.count("\n") == 1


# -- Hints ----------------------------------------------------------------------------------------


def test_hint_defaults_to_the_current_exercise_and_seen_hints_can_be_read_again(capsys, lab):
    code, out, _ = run(capsys, "hint")
    assert code == 0 and out.startswith("Hint 1 of 4 for lost-updates (the current exercise):")
    run(capsys, "hint")
    run(capsys, "hint", "id-collision")
    code, out, _ = run(capsys, "hint", "--all")
    assert code == 0
    assert "1. lost-updates: 2 of 4 hints seen" in out and "5. id-collision: 1 of 4 hints seen" in out
    assert "lost-increments" not in out  # no hint of it seen yet
    code, again, _ = run(capsys, "hint", "lost-updates", "--all")
    assert "  1.  " in again and "  2.  " in again and "  3.  " not in again
    progress = json.loads((lab / ".sessionlab" / "hints.json").read_text())
    assert progress == {"lost-updates": 2, "id-collision": 1}  # reading again shows no new hint


@needs_frontrun
def test_hint_follows_the_exercise_check_is_on(capsys, lab):
    run(capsys, "start")
    run(capsys, "check", "stats-drift")
    code, out, _ = run(capsys, "hint")
    assert out.startswith("Hint 1 of 4 for stats-drift (the current exercise):")


# -- Work is never lost ---------------------------------------------------------------------------


def test_reset_never_overwrites_an_earlier_save_and_saves_nothing_when_untouched(capsys, lab):
    run(capsys, "start")
    code, out, _ = run(capsys, "reset", "lost-increments")
    assert code == 0 and "already has the original lost-increments code" in out and "nothing" in out
    assert not (lab / ".sessionlab" / "saved").exists()
    versions = []
    for attempt in range(3):  # three saves within the same second
        apply_reference_fix(lab, "lost-increments")
        mine = (lab / "workspace" / "manager.py").read_text() + f"# attempt {attempt}\n"
        (lab / "workspace" / "manager.py").write_text(mine)
        versions.append(mine)
        code, out, _ = run(capsys, "reset", "lost-increments")
        assert code == 0 and "your version was saved as .sessionlab/saved/lost-increments-" in out
    saved = sorted((lab / ".sessionlab" / "saved").iterdir())
    assert len(saved) == 3 and sorted(path.read_text() for path in saved) == sorted(versions)


def test_start_fresh_keeps_the_old_copy(capsys, lab):
    run(capsys, "start")
    code, out, _ = run(capsys, "start", "--fresh")
    assert "nothing to keep" in out and not (lab / ".sessionlab" / "saved").exists()
    apply_reference_fix(lab, "lost-updates")
    mine = (lab / "workspace" / "manager.py").read_text()
    for _ in range(2):
        code, out, _ = run(capsys, "start", "--fresh")
        assert code == 0 and "Your old copy is kept in .sessionlab/saved/workspace-" in out
        (lab / "workspace" / "manager.py").write_text(mine)
    kept = sorted((lab / ".sessionlab" / "saved").iterdir())
    assert len(kept) == 2 and all((folder / "manager.py").read_text() == mine for folder in kept)
    run(capsys, "start", "--fresh")
    assert (lab / "workspace" / "manager.py").read_text() == (lab / "buggy" / "manager.py").read_text()


def test_reset_refuses_to_touch_buggy_or_fixed(capsys, lab):
    before = {path: path.read_bytes() for path in (lab / "fixed").glob("*.py")}
    for target in ("fixed", str(lab / "fixed"), str(lab / "fixed" / "manager.py"), str(lab / "buggy")):
        code, _, err = run(capsys, "reset", "lost-increments", "--impl", target)
        assert code == 2, target
    assert {path: path.read_bytes() for path in (lab / "fixed").glob("*.py")} == before


# -- --impl works from anywhere, and follow-ups keep it -------------------------------------------------


def test_diff_takes_a_single_file_from_anywhere(capsys, lab, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copy2(lab / "buggy" / "manager.py", elsewhere / "mine.py")
    monkeypatch.chdir(elsewhere)
    code, out, err = run(capsys, "diff", "lost-increments", "--impl", "mine.py", "--yes")
    assert code == 0, err
    assert "--- mine.py  (SessionManager.increment_access" in out
    assert "sessionlab check lost-increments --impl mine.py" in out
    code, out, _ = run(capsys, "diff", "lost-increments", "--impl", str(lab / "fixed"))
    assert "SessionManager.increment_access: identical to the reference." in out
    code, _, err = run(capsys, "diff", "lost-increments", "--impl", "nothing/here.py")
    assert code == 2 and "no implementation" in err


@needs_frontrun
def test_check_from_another_folder_keeps_impl_in_what_it_suggests(capsys, lab, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copytree(lab / "buggy", elsewhere / "my-copy")
    monkeypatch.chdir(elsewhere)
    code, out, _ = run(capsys, "check", "lost-increments", "--impl", "my-copy")
    assert code == 1 and "2. lost-increments in my-copy: STILL BUGGY" in out
    assert "See the bad interleaving: sessionlab race lost-increments --impl my-copy" in out
    code, out, _ = run(capsys, "list", "--impl", "my-copy")
    assert "sessionlab check lost-updates --impl my-copy" in out
    run(capsys, "start")
    code, out, _ = run(capsys, "check", "lost-updates", "--impl", "workspace", "--json")  # no ./workspace here
    assert json.loads(out)["implementation"] == "workspace"


# -- The loop: check remembers the exercise, check --all counts, watch moves on -------------------------


@needs_frontrun
def test_check_stays_on_the_current_exercise_until_it_is_fixed(capsys, lab):
    run(capsys, "start")
    code, out, _ = run(capsys, "check", "lost-increments")
    assert code == 1
    code, out, _ = run(capsys, "check", "--json")  # the exercise last checked, though 1 comes first
    assert json.loads(out)["verdicts"][0]["bug"] == "lost-increments"
    apply_reference_fix(lab, "lost-increments")
    code, out, _ = run(capsys, "check", "--no-stress")  # stress only confirms: FIXED without it
    assert code == 0 and "2. lost-increments in workspace: FIXED" in out and "Next exercise: sessionlab check" in out
    code, out, _ = run(capsys, "check", "--json")  # on to the first exercise not fixed
    assert code == 1 and json.loads(out)["verdicts"][0]["bug"] == "lost-updates"


@needs_frontrun
def test_check_all_ends_with_how_many_are_fixed(capsys, lab):
    run(capsys, "start")
    apply_reference_fix(lab, "cleanup-leak")
    code, out, _ = run(capsys, "check", "--all")
    assert code == 1 and out.rstrip().endswith(f"1 of {len(catalogue.BUGS)} fixed. Overall: STILL BUGGY.")
    assert "3. cleanup-leak in workspace: FIXED" in out
    code, out, _ = run(capsys, "check", "--all", "--json")
    result = json.loads(out)
    assert result["summary"] == f"1 of {len(catalogue.BUGS)} fixed" and result["status"] == "STILL BUGGY"


@needs_frontrun
def test_watch_announces_fixed_moves_on_and_sums_up(capsys, lab):
    run(capsys, "start")
    for name in ("manager.py", "persistent.py", "redis_store.py"):
        shutil.copy2(lab / "fixed" / name, lab / "workspace" / name)
    # Every other exercise was already confirmed by a full check of this code; close-order has just been fixed.
    (lab / ".sessionlab").mkdir(exist_ok=True)
    slugs = [bug.slug for bug in catalogue.BUGS if bug.slug != "close-order"]
    proof = verdicts.fingerprint(common.load(str(lab / "workspace")))
    (lab / ".sessionlab" / "place.json").write_text(json.dumps(
        {"workspace": {"current": slugs[-1], "fixed": slugs, "proofs": {slug: proof for slug in slugs}}}))
    code, out, _ = run(capsys, "watch", "--once", "--no-stress")
    assert code == 0, out
    assert "11. close-order in workspace: FIXED" in out
    assert "*** FIXED: 11. close-order: " in out and "pairs of operations in two threads" in out, out
    assert f"All {len(catalogue.BUGS)} exercises are fixed" in out and "Fixed while watching: close-order." in out
    assert out.count("in workspace: FIXED") == 1, out  # the ten proven on this very code are not judged again


@needs_frontrun
def test_an_exercise_proven_on_other_code_is_judged_again(capsys, lab):
    run(capsys, "start")
    apply_reference_fix(lab, "lost-updates")
    code, out, _ = run(capsys, "check", "lost-updates", "--no-stress")
    assert code == 0 and "FIXED" in out, out
    place = json.loads((lab / ".sessionlab" / "place.json").read_text())["workspace"]
    assert place["fixed"] == ["lost-updates"] and place["proofs"]["lost-updates"] == verdicts.fingerprint(
        common.load(str(lab / "workspace")))
    shutil.copy2(lab / "buggy" / "manager.py", lab / "workspace" / "manager.py")  # the fix undone
    assert verdicts.place(str(lab / "workspace")).proof("lost-updates") != verdicts.fingerprint(
        common.load(str(lab / "workspace")))
    code, out, _ = run(capsys, "check", "--json")  # confirmed, but on other code: judged again
    assert [(v["bug"], v["status"]) for v in json.loads(out)["verdicts"]] == [("lost-updates", "STILL BUGGY")], out


@needs_frontrun
def test_watch_shows_an_error_and_keeps_watching(capsys, lab):
    run(capsys, "start")
    manager = lab / "workspace" / "manager.py"
    manager.write_text(manager.read_text() + "\nundefined_helper()\n")
    code, out, _ = run(capsys, "watch", "--once")
    assert code == 3 and "1. lost-updates in workspace: ERROR" in out and "NameError" in out
    assert "Traceback" not in out


@needs_frontrun
def test_watch_keeps_watching_through_an_error_until_ctrl_c(lab):
    shutil.copytree(lab / "buggy", lab / "workspace", ignore=shutil.ignore_patterns("__pycache__"))
    manager = lab / "workspace" / "manager.py"
    original = manager.read_text()
    manager.write_text(original + "\nundefined_helper()\n")
    env = {**os.environ, "SESSIONLAB_ROOT": str(lab), "COLUMNS": "80"}
    child = subprocess.Popen([sys.executable, "-m", "sessionlab", "watch", "--interval", "0.2"], cwd=lab, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)
    reader.start()

    def wait_for(text: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not any(text in line for line in lines):
            assert child.poll() is None and time.monotonic() < deadline, f"no {text!r} in:\n{''.join(lines)}"
            time.sleep(0.05)

    try:
        wait_for("1. lost-updates in workspace: ERROR")
        time.sleep(0.3)  # a save in the same instant as the last look might share its timestamp
        manager.write_text(original)
        wait_for("1. lost-updates in workspace: STILL BUGGY")
        child.send_signal(signal.SIGINT)
        child.wait(timeout=5)
        reader.join(timeout=5)
        err = child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130 and "Traceback" not in err + "".join(lines)
    assert "NameError: name 'undefined_helper' is not defined" in "".join(lines)
