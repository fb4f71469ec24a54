"""Judging for the learner's commands, and a verdict as the learner reads it.

``check``, ``list`` and ``watch`` share this: which exercise is current, running
the judge over several bugs (a hang stops the rest: the stuck threads are still
there), and printing a verdict from its JSON form, so that ``watch`` prints what
its checking subprocess found exactly as ``check`` would.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from pathlib import Path

from sessionlab import catalogue
from sessionlab.bug import Bug
from sessionlab.cli import output
from sessionlab.cli.common import (
    ERROR, FIXED, HANGS, STILL_BUGGY, UNPROVEN, Loaded, code_error_json, follow, is_workspace, resolve_spec, space)
from sessionlab.cli.output import Progress, indented, verdict_word, wrap
from sessionlab.judge import checks
from sessionlab.judge.checks import Verdict
from sessionlab.learner import exercises, workspace


def place(spec: str) -> exercises.Place:
    """Where the learner is in the exercises, for this implementation."""
    resolved = resolve_spec(spec)
    key = "workspace" if is_workspace(resolved) else (str(Path(resolved).resolve()) if Path(resolved).exists()
                                                       else spec)
    return exercises.Place(space().state / "place.json", key)


def fingerprint(loaded: Loaded) -> str | None:
    """What a verdict is reached on: the implementation's source files and the lab's own code. A full
    check that found an exercise FIXED on one fingerprint need not run again on the same one."""
    if loaded.implementation is None:
        return None
    lab = Path(checks.__file__).resolve().parent.parent
    digest = hashlib.sha256()
    try:
        for path in [*sorted(loaded.implementation.files), *sorted(str(p) for p in lab.rglob("*.py"))]:
            digest.update(path.encode() + b"\0" + Path(path).read_bytes() + b"\0")
    except OSError:
        return None
    return digest.hexdigest()


def not_checked(bug: Bug, name: str, why: str) -> Verdict:
    """A bug left unchecked: its verdict is UNPROVEN, and says why."""
    first = checks.checks_for(catalogue.home(bug))[0]
    return Verdict(bug, name, (checks.Result(first, checks.SKIPPED, f"not checked: {why}", 0.0),))


AFTER_A_HANG = "an earlier check hung, and its stuck threads are still running; fix that first"


def unchecked(verdict: Verdict) -> bool:
    return not verdict.error and all(r.message.startswith("not checked: ") for r in verdict.results)


def judge(bug: Bug, loaded: Loaded, progress: Progress, *, stress_too: bool = True) -> Verdict:
    error = loaded.error_for(bug.manager)
    if error is not None:
        return checks.unloadable(bug, loaded.name, error)
    try:
        return checks.judge(bug, loaded.implementation, stress_too=stress_too,
                            progress=lambda check: progress.phase(f"{bug.slug}: {check.name}"))
    finally:
        progress.end()


def judge_all(bugs: Sequence[Bug], loaded: Loaded, progress: Progress, *, stress_too: bool = True) -> list[Verdict]:
    """Every bug's verdict, in order; after one hangs the rest are not checked."""
    verdicts: list[Verdict] = []
    hung = False
    for bug in bugs:
        if hung:
            verdicts.append(not_checked(bug, loaded.name, AFTER_A_HANG))
            continue
        verdicts.append(judge(bug, loaded, progress, stress_too=stress_too))
        hung = verdicts[-1].status == HANGS
    return verdicts


def current(loaded: Loaded, found: Sequence[exercises.Exercise], spec: str,
            progress: Progress, *, stress_too: bool = True) -> tuple[exercises.Exercise, Verdict] | None:
    """The exercise to check, with its full verdict; None when every exercise is fixed.

    The current one is the exercise last checked, until a full check finds it
    FIXED; then the first whose deterministic checks do not pass (an exercise a
    full check found FIXED on the same code is not checked again); then the
    first not yet confirmed by a full check.
    """
    where = place(spec)
    by_slug = {exercise.bug.slug: exercise for exercise in found}
    remembered = where.current
    if remembered in by_slug and remembered not in where.confirmed:
        exercise = by_slug[remembered]
        return exercise, judge(exercise.bug, loaded, progress, stress_too=stress_too)
    if loaded.implementation is None:
        exercise = found[0]
        return exercise, judge(exercise.bug, loaded, progress, stress_too=stress_too)
    proof = fingerprint(loaded)
    for exercise in found:
        if proof is not None and where.proof(exercise.bug.slug) == proof:
            continue  # found FIXED by a full check on this very code: the judge would say so again
        quick = judge(exercise.bug, loaded, progress, stress_too=False)
        if quick.status in (STILL_BUGGY, ERROR, HANGS):
            return exercise, quick  # stress, which comes last, would not run after a failure
        if quick.status != FIXED:
            return exercise, judge(exercise.bug, loaded, progress, stress_too=stress_too)
    for exercise in found:
        if exercise.bug.slug not in where.confirmed:
            return exercise, judge(exercise.bug, loaded, progress, stress_too=stress_too)
    return None


def as_json(verdict: Verdict, loaded: Loaded | None = None) -> dict:
    data = verdict.as_json()
    error = loaded.error_for(verdict.bug.manager) if loaded is not None else None
    if error is not None and verdict.error:
        data["error"] = code_error_json(error)
        data["detail"] = error.text()
    return data


# -- A verdict as the learner reads it ------------------------------------------------------------

MARKS = {checks.HELD: " ok ", checks.BROKE: "FAIL", checks.SKIPPED: "skip", checks.RAISED: "ERR ",
         checks.HUNG: "HANG"}
MARK_COLOURS = {checks.HELD: "green", checks.BROKE: "red", checks.RAISED: "magenta", checks.HUNG: "yellow"}


def render(data: dict, args: argparse.Namespace) -> list[str]:
    """The lines of one verdict (its JSON form) under check, watch and check --all."""
    bug = catalogue.find(data["bug"])
    status = data.get("status") or (FIXED if data["fixed"] else STILL_BUGGY)
    columns = output.width()
    lines = [f"{bug.number}. {bug.slug} in {data['implementation']}: {verdict_word(status)}"]
    if data.get("error") or (status == ERROR and not data.get("checks")):
        lines.append("  your code did not load:")
        lines += indented(data.get("detail") or data["evidence"].split(": ", 1)[-1], "    ", columns)
    ran = set()
    for check in data.get("checks", []):
        ran.add(check["check"])
        outcome = check["outcome"]
        mark = output.paint(MARKS.get(outcome, outcome), MARK_COLOURS.get(outcome, ""))
        lines.append(f"  [{mark}] {check['check']} ({check['seconds']:.2f} s)")
        lines += wrap(check["message"], columns, "         ")
        if outcome != checks.HELD and check.get("detail"):
            lines.append("")
            # A report laid out for the full width (an interleaving) is printed flush left.
            prefix, fit = ("", None) if outcome == checks.BROKE else ("         ", columns)
            lines += indented(check["detail"], prefix, fit)
            lines.append("")
    if data.get("checks") and not data.get("error"):
        for check in checks.checks_for(catalogue.home(bug)):
            if check.name not in ran:
                why = "an earlier check failed" if status != FIXED else "not needed"
                lines += wrap(f"[    ] {check.name}: not run, {why}", columns, "         ", "  ")
    lines += next_steps(bug, status, args)
    return lines


def hint_command(bug: Bug, args: argparse.Namespace) -> str:
    """How to ask for a hint: a store in the wild has hints of its own (hint --impl STORE)."""
    impl = getattr(args, "impl", None)
    if isinstance(impl, str) and workspace.wild_store(Path(impl)) is not None:
        return follow(args, "hint")
    return follow(argparse.Namespace(), "hint", bug.slug)


def next_steps(bug: Bug, status: str, args: argparse.Namespace) -> list[str]:
    columns = output.width()
    if status == FIXED:
        steps = [f"Compare with the reference: {follow(args, 'diff', bug.slug)}"]
    elif status == ERROR:
        steps = [f"Fix it and check again: {follow(args, 'check', bug.slug)}"]
    elif status == HANGS:
        steps = ["Read where each thread waits, above: a lock taken twice, two locks taken in opposite orders, "
                 f"a loop that never ends. Stuck? {hint_command(bug, args)}"]
    else:
        steps = []
        if status == UNPROVEN:
            steps.append("Every check that could run here held, but one that decides could not run here.")
        elif catalogue.home(bug).explorable:
            steps.append(f"See the bad interleaving: {follow(args, 'race', bug.slug)}")
        steps.append(f"Stuck? {hint_command(bug, args)}")
    return [line for step in steps for line in wrap(step, columns, "    ", "  ")]
