"""sessionlab grade: a class's copies judged at once, one row each, whatever state a copy is in."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

from test_cli import needs_frontrun, run

from sessionlab import catalogue
from sessionlab.cli import grading

ROOT = Path(__file__).resolve().parent.parent


def clone(folder: Path, hints: dict[str, int] | None = None) -> Path:
    """A learner's clone: its working copy of buggy/, and the hints it has seen."""
    shutil.copytree(ROOT / "buggy", folder / "workspace", ignore=shutil.ignore_patterns("__pycache__", "wild"))
    if hints:
        (folder / ".sessionlab").mkdir()
        (folder / ".sessionlab" / "hints.json").write_text(json.dumps(hints))
    return folder


@needs_frontrun
def test_grade_judges_every_copy_and_a_broken_one_is_one_row(capsys, tmp_path):
    alice = clone(tmp_path / "alice", {"lost-updates": 2})
    broken = clone(tmp_path / "broken")
    for name in ("manager.py", "persistent.py", "redis_store.py"):  # no file loads
        path = broken / "workspace" / name
        path.write_text(path.read_text().replace("\nclass ", "\nclass (", 1))
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    code, out, _ = run(capsys, "grade", str(alice), str(broken), str(tmp_path / "nobody"), "--no-stress", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["version"] and data["time"] and data["exercises"] == [bug.slug for bug in catalogue.BUGS]
    by_copy = {copy["copy"]: copy for copy in data["copies"]}
    mine = by_copy[str(alice)]
    assert set(mine["verdicts"].values()) == {"STILL BUGGY"} and len(mine["verdicts"]) == len(catalogue.BUGS)
    assert mine["hints_seen"] == {"lost-updates": 2} and mine["problem"] is None and mine["fixed"] == 0
    assert set(by_copy[str(broken)]["verdicts"].values()) == {"ERROR"}
    missing = by_copy[str(tmp_path / "nobody")]
    assert missing["verdicts"] == {} and missing["problem"] == "no such folder"
    # Grading writes nothing into a learner's clone.
    assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()
            and "__pycache__" not in path.parts} == {p: b for p, b in before.items() if "__pycache__" not in p.parts}

    graded = [grading.Graded(c["copy"], c["implementation"], c["verdicts"], c["hints_seen"], c["problem"] or "")
              for c in data["copies"]]
    slugs = data["exercises"]
    lines = grading.as_table(graded, slugs, 80)
    assert all(len(line) <= 80 for line in lines)
    assert any(line.split() and line.split()[0] == "alice" and line.split()[-1] == f"0/{len(slugs)}" and line.count(" x ")
               for line in lines), lines
    assert "  nobody: no such folder" in lines and "  alice: 1: 2" in lines
    rows = list(csv.reader(io.StringIO(grading.as_csv(graded, slugs))))
    assert rows[0][:3] == ["copy", "fixed", "lost-updates"] and len(rows) == 4
    assert rows[1][2] == "STILL BUGGY" and rows[1][rows[0].index("lost-updates hints seen")] == "2"
