"""sessionlab grade: judge a class's working copies, a table over the class.

Each copy is judged by ``sessionlab check --all --json --impl COPY`` in a child
process of its own, as many at once as there are cores, each bounded in time
and with lab state of its own (so grading writes nothing into a learner's
clone, nor into the grader's). A copy that is missing, does not load, hangs or
crashes its check is one row that says so, never the end of the grading.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sessionlab import catalogue
from sessionlab.cli import output
from sessionlab.cli.common import EXIT_OK
from sessionlab.cli.output import Progress, print_json, table, wrap
from sessionlab.implementations import STATE
from sessionlab.learner import exercises, workspace

# One copy's check --all may take this long (a fixed copy takes 30-60 s on a loaded 2-core machine).
COPY_SECONDS = 300.0
# The table's cells when the verdict words do not fit the width.
MARKS = {"FIXED": "ok", "STILL BUGGY": "x", "ERROR": "E", "HANGS": "H", "UNPROVEN": "?"}


@dataclass
class Graded:
    """One copy: its verdict per exercise, or why it has none."""

    copy: str  # as the grader named it
    implementation: str  # the folder judged
    verdicts: dict[str, str] = field(default_factory=dict)  # slug -> verdict word
    hints_seen: dict[str, int] = field(default_factory=dict)
    problem: str = ""  # no verdicts: why
    seconds: float = 0.0

    @property
    def fixed(self) -> int:
        return sum(1 for word in self.verdicts.values() if word == "FIXED")

    def as_json(self) -> dict:
        return {"copy": self.copy, "implementation": self.implementation, "verdicts": self.verdicts,
                "fixed": self.fixed, "hints_seen": self.hints_seen, "problem": self.problem or None,
                "seconds": round(self.seconds, 1)}


def copy_of(name: str) -> tuple[Path, Path | None]:
    """A copy as a grader names it: a learner's clone (its workspace/ is judged, its .sessionlab/ holds the
    hints seen) or a working copy itself; returns the folder to judge and the hints file, if any."""
    path = Path(name).resolve()
    if (path / workspace.WORKSPACE / "__init__.py").exists():
        return path / workspace.WORKSPACE, path / STATE / "hints.json"
    hints = path.parent / STATE / "hints.json" if path.name == workspace.WORKSPACE else path / STATE / "hints.json"
    return path, hints if hints.exists() else None


def grade_one(name: str, slugs: list[str], *, seconds: float, stress: bool) -> Graded:
    folder, hints = copy_of(name)
    graded = Graded(name, str(folder))
    if hints is not None:
        seen = exercises.HintProgress(hints)
        graded.hints_seen = {slug: seen.seen(slug) for slug in slugs if seen.seen(slug)}
    if not folder.is_dir():
        graded.problem = "no such folder"
        return graded
    command = [sys.executable, "-m", "sessionlab", "check", "--all", "--json", "--impl", str(folder)]
    command += [] if stress else ["--no-stress"]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sessionlab-grade-") as state:
        env = {**os.environ, "SESSIONLAB_STATE": state, "SESSIONLAB_CHILD": "1"}
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            out, _ = child.communicate(timeout=seconds)
        except subprocess.TimeoutExpired:
            graded.problem = f"its check did not end within {seconds:g} s"
            out = b""
        finally:
            if child.poll() is None:  # the check and anything it started: its own process group
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except OSError:
                    child.kill()
                child.wait()
    graded.seconds = time.monotonic() - started
    if graded.problem:
        return graded
    try:
        data = json.loads(out.decode("utf-8", "replace"))
    except ValueError:
        graded.problem = f"its check ended without a verdict (exit status {child.returncode})"
        return graded
    if "error" in data and not data.get("verdicts"):
        graded.problem = str(data["error"].get("message", "its check failed"))
        return graded
    graded.verdicts = {verdict["bug"]: verdict.get("status", "") for verdict in data.get("verdicts", [])}
    return graded


def cmd_grade(args: argparse.Namespace) -> int:
    slugs = [bug.slug for bug in catalogue.BUGS]
    jobs = args.jobs or os.cpu_count() or 1
    progress = Progress()
    done: list[Graded] = []

    def one(name: str) -> Graded:
        graded = grade_one(name, slugs, seconds=args.seconds, stress=not args.no_stress)
        done.append(graded)
        progress.show(f"  grading: {len(done)} of {len(args.copies)} copies judged")
        return graded

    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    progress.phase(f"grading {len(args.copies)} copies, {jobs} at a time")
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            graded = list(pool.map(one, args.copies))
    finally:
        progress.end()
    from sessionlab.cli import version

    if args.json:
        print_json({"version": version(), "time": started, "exercises": slugs,
                    "copies": [g.as_json() for g in graded]})
    elif args.csv:
        print(as_csv(graded, slugs), end="")
    else:
        print("\n".join(as_table(graded, slugs, output.width())))
    return EXIT_OK


def as_csv(graded: list[Graded], slugs: list[str]) -> str:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["copy", "fixed", *slugs, *(f"{slug} hints seen" for slug in slugs), "problem"])
    for g in graded:
        writer.writerow([g.copy, g.fixed, *(g.verdicts.get(slug, "") for slug in slugs),
                         *(g.hints_seen.get(slug, 0) for slug in slugs), g.problem])
    return text.getvalue()


def as_table(graded: list[Graded], slugs: list[str], columns: int) -> list[str]:
    """One row per copy, one column per exercise: the verdict words, or their marks when those do not fit."""
    numbers = [str(catalogue.find(slug).number) for slug in slugs]
    names = [Path(g.copy.rstrip("/\\")).name or g.copy for g in graded]
    if len(set(names)) < len(names):  # two copies of one name: their paths tell them apart
        names = [g.copy for g in graded]
    for words in (True, False):
        rows = [("copy", *numbers, "fixed")]
        for name, g in zip(names, graded):
            cells = [g.verdicts.get(slug, "-") if words else MARKS.get(g.verdicts.get(slug, ""), "-")
                     for slug in slugs]
            rows.append((name, *(cell.replace(" ", output.GLUE) for cell in cells), f"{g.fixed}/{len(slugs)}"))
        lines = table(rows, columns)
        if all(len(line) <= columns for line in lines):
            break
    if not words:
        lines += ["", "  " + ", ".join(f"{mark} {word}" for word, mark in MARKS.items()) + ", - not judged"]
    for name, g in zip(names, graded):
        if g.problem:
            lines += wrap(f"{name}: {g.problem}", columns, "    ", "  ")
    hinted = [(name, g) for name, g in zip(names, graded) if g.hints_seen]
    if hinted:
        lines += ["", "Hints seen, by exercise:"]
        for name, g in hinted:
            seen = ", ".join(f"{catalogue.find(slug).number}: {count}" for slug, count in g.hints_seen.items())
            lines += wrap(f"{name}: {seen}", columns, "    ", "  ")
    return lines

