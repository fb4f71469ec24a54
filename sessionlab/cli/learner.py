"""The learner's commands: start, list, check, hint, diff, reset (watch is in watching.py)."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from sessionlab import catalogue
from sessionlab.bug import Bug
from sessionlab.cli import output, verdicts
from sessionlab.cli.common import (
    ERROR, EXIT_FOR, EXIT_OK, FIXED, HANGS, STILL_BUGGY, UNPROVEN, Loaded, code_error_json, follow,
    is_workspace, load, space, worst)
from sessionlab.cli.output import Progress, print_json, table, verdict_word, wrap
from sessionlab.engines import exploration
from sessionlab.implementations import STATE
from sessionlab.learner import exercises, workspace


def cmd_start(args: argparse.Namespace) -> int:
    here = space()
    columns = output.width()
    made = True
    if args.fresh and here.path.exists():
        kept = here.start_fresh()
        print(f"Made a fresh working copy of buggy/ in {workspace.WORKSPACE}/")
        if kept is None:
            print("Your old copy was the same as buggy/, so there was nothing to keep.")
        else:
            print("\n".join(wrap(f"Your old copy is kept in {kept.relative_to(here.root)}/", columns)))
    elif here.start():
        print(f"Made your working copy of buggy/ in {workspace.WORKSPACE}/")
        print("Fix the bugs there; buggy/ stays as it was, and git ignores your copy.")
    else:
        made = False
        print(f"Your working copy already exists: {workspace.WORKSPACE}/  (nothing was changed)")
        print("To start over from buggy/: sessionlab start --fresh  (your copy is kept first)")
    first = exercises.load(here.root)[0]
    print()
    print("\n".join(wrap(f"First exercise: {first.bug.number}. {first.bug.title}  "
                         f"({first.readme.relative_to(here.root)})", columns)))
    print(f"  sessionlab check {first.bug.slug:<20} is it fixed yet?" + (" (it is not)" if made else ""))
    print(f"  {'sessionlab list':<37} every exercise and what to do next")
    return EXIT_OK


# -- list -----------------------------------------------------------------------------------------

# A verdict's status in list --json ("fixed" and "buggy" as before; the others are new states).
LIST_STATUS = {FIXED: "fixed", STILL_BUGGY: "buggy", ERROR: "error", HANGS: "hangs", UNPROVEN: "unproven"}


def _short_error(evidence: str) -> str:
    """ "KeyError: 'x' (workspace/manager.py:97 in f)" -> "KeyError (workspace/manager.py:97)"."""
    kind = evidence.split(":", 1)[0].split(" (", 1)[0]
    where = re.search(r"\(([^()]*:\d+)(?: in [^()]*)?\)$", evidence)
    return f"{kind} ({where.group(1)})" if where else kind


def _short_state(verdict) -> str:
    """The status cell of list: "fixed", "still buggy", "error: NameError (workspace/manager.py:97)"."""
    status = verdict.status
    if status == FIXED:
        return "fixed"
    if status == STILL_BUGGY:
        return "still buggy"
    evidence = verdict.evidence.removeprefix(f"{verdict.bug.slug}: ")
    if status == ERROR:
        return "error: " + _short_error(evidence.removeprefix("your code raised "))
    if status == HANGS:
        return "hangs: " + evidence.split(":", 1)[0].removeprefix("your code ")
    if verdicts.unchecked(verdict):
        return "not checked (an earlier exercise hung)"
    return "unproven (a deciding check could not run here)"


def cmd_list(args: argparse.Namespace) -> int:
    here = space()
    if not here.exists and not args.impl:
        if args.json:
            print_json({"workspace": None, "exercises": [], "next": None,
                        "message": "no working copy yet: sessionlab start"})
            return EXIT_OK
        rows = [("#", "bug", "class", "symptom")]
        rows += [(str(bug.number), bug.slug, bug.bug_class, bug.symptom) for bug in catalogue.BUGS]
        print("\n".join(table(rows)))
        print("\nNo working copy yet. Start the exercises with: sessionlab start")
        return EXIT_OK
    spec = args.impl or str(here.path)
    loaded = load(spec)
    found = exercises.load(here.root)
    judged = verdicts.judge_all([exercise.bug for exercise in found], loaded, Progress(), stress_too=False)
    statuses = list(zip(found, judged))
    upcoming = next((exercise for exercise, verdict in statuses if not verdict.fixed), None)
    hints = exercises.HintProgress(here.state / "hints.json")
    if args.impl and not is_workspace(args.impl):  # another learner's copy: the hints that learner saw
        from sessionlab.cli.grading import copy_of

        hints = exercises.HintProgress(copy_of(args.impl)[1] or Path(args.impl) / STATE / "hints.json")
    stores = [] if args.impl else _wild_states(here)
    if args.json:
        listing = {
            "workspace": str(here.path) if not args.impl else args.impl,
            "exercises": [{
                "number": exercise.bug.number, "bug": exercise.bug.slug, "title": exercise.bug.title,
                "folder": str(exercise.folder.relative_to(here.root)),
                "status": "unchecked" if verdicts.unchecked(verdict) else LIST_STATUS[verdict.status],
                "verdict": verdict.status, "evidence": verdict.evidence,
                "hints_seen": hints.seen(exercise.bug.slug), "hints": len(exercise.hints),
            } for exercise, verdict in statuses],
            "next": upcoming.bug.slug if upcoming else None,
        }
        if loaded.error is not None:
            listing["error"] = code_error_json(loaded.error)
        if stores:
            listing["wild"] = [{"number": number, "store": wild.store, "folder": str(wild.folder.relative_to(here.root)),
                                "file": file, "bugs": [bug.slug for bug in wild.bugs], "status": state,
                                "fixed": done, "hints_seen": hints.seen(wild.slug), "hints": len(wild.hints)}
                               for number, wild, file, state, done in stores]
        print_json(listing)
        return EXIT_OK
    rows = [("", "#", "exercise", "status")]  # each exercise's folder is exercises/<#>-<exercise>/
    for exercise, verdict in statuses:
        rows.append(("->" if exercise is upcoming else "", str(exercise.bug.number), exercise.bug.slug,
                     _short_state(verdict)))
    rows += [("", str(number), wild.slug, state) for number, wild, _, state, _ in stores]
    print("\n".join(wrap(f"Exercises, checked against {loaded.name}/ (deterministic checks; `check` adds "
                         "stress):", output.width())))
    print()
    print("\n".join(table(rows)))
    fixed = sum(1 for _, verdict in statuses if verdict.fixed)
    if stores:
        print("\n".join(wrap(f"{', '.join(str(number) for number, *_ in stores)}: track 3, the stores in "
                             f"{workspace.WORKSPACE}/{workspace.WILD}/, as their last check left them "
                             "(list does not run their searches: check --impl does)", output.width(), "", "\n")))
    print(f"\n{fixed} of {len(statuses)} fixed." + (f" Track 3: {sum(state == 'fixed' for *_, state, _ in stores)} of "
                                                    f"{len(stores)} stores fixed." if stores else ""))
    if loaded.error is not None:
        print("\nYour code did not load, so no exercise could be checked:")
        print("\n".join(output.indented(loaded.error.text(), "  ")))
        print(f"Fix that line, then: {follow(args, 'list')}")
        return EXIT_OK
    for error in loaded.partly:  # one file did not load; the exercises of the others were checked
        numbers = [str(verdict.bug.number) for verdict in judged if loaded.error_for(verdict.bug.manager)
                   and loaded.error_for(verdict.bug.manager).file == error.file]
        print("\n".join(wrap(f"{error.file} did not load, so exercise{'s' if len(numbers) > 1 else ''} "
                             f"{', '.join(numbers)} could not be checked (the others were):", output.width(),
                             "", "\n")))
        print("\n".join(output.indented(error.text(), "  ", output.width())))
        print(f"Fix that line, then: {follow(args, 'list')}")
    if loaded.partly:
        return EXIT_OK
    if any(verdict.status == UNPROVEN for verdict in judged) and not exploration.frontrun_available()[0]:
        print("\n".join(wrap(f"unproven: {exploration.frontrun_available()[1]}", output.width())))
    if upcoming is None:
        print(f"Every bug is fixed. Compare your fixes with the reference: {follow(args, 'diff', 'BUG')}")
        wild = exercises.load_wild(here.root)
        if wild and not args.impl:
            print("\n".join(wrap("Next, track 3: the same bugs in stores on real frameworks, exercises "
                                 + " and ".join(exercise.folder.name for exercise in wild)
                                 + f" ({len(wild)} stores in workspace/wild/): sessionlab check --impl "
                                 f"workspace/wild/{wild[0].store}.py", output.width())))
        return EXIT_OK
    slug = upcoming.bug.slug
    print(f"Next: read {upcoming.readme.relative_to(here.root)}, then")
    first = ((f"{follow(args, 'race', slug)}", "see the bad interleaving") if catalogue.home(upcoming.bug).explorable
             else (f"{follow(args, 'observe', slug)}", "watch it happen"))
    steps = [first, (follow(args, "check", slug), "is it fixed yet?"),
             (f"sessionlab hint {slug}", "when you are stuck")]
    wide = max(len(command) for command, _ in steps)
    for command, what in steps:
        print(f"      {command:<{wide}}  {what}")
    return EXIT_OK


def _wild_states(here: workspace.Workspace) -> list[tuple[int, exercises.WildExercise, str, str, list[str]]]:
    """Track 3 in the working copy: each store's number, exercise, file, state and bugs found fixed, as the
    checks of that file recorded them (no search is run)."""
    found = []
    for wild in exercises.load_wild(here.root):
        file = f"{workspace.WORKSPACE}/{workspace.WILD}/{wild.store}.py"
        if not (here.root / file).exists():
            continue
        where = verdicts.place(str(here.root / file))
        done = [bug.slug for bug in wild.bugs if bug.slug in where.confirmed]
        state = ("fixed" if len(done) == len(wild.bugs) else f"{len(done)} of {len(wild.bugs)} bugs fixed" if done
                 else "not checked yet" if where.current is None else "still buggy")
        number = int(wild.folder.name.split("-", 1)[0]) if wild.folder.name[:1].isdigit() else 0
        found.append((number, wild, file, state, done))
    return found


# -- check ----------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    here = space()
    if args.impl is None:
        here.require()
    spec = args.impl or str(here.path)
    loaded = load(spec)
    proof = verdicts.fingerprint(loaded)  # of the code as loaded: a save during the check changes it
    found = exercises.load(here.root)
    progress = Progress()
    stress_too = not args.no_stress
    # A store of one track only (the wild ones) is checked on the bugs of the classes it defines.
    runnable = tuple(exercise for exercise in found if _defines(loaded, exercise.bug)) or found
    left_out = [exercise.bug for exercise in found if exercise not in runnable] if args.all else []
    if args.all:
        judged = verdicts.judge_all([exercise.bug for exercise in runnable], loaded, progress, stress_too=stress_too)
    elif args.bug:
        named = list(dict.fromkeys(catalogue.find(name) for name in args.bug))
        judged = [verdicts.judge(bug, loaded, progress, stress_too=stress_too) for bug in named]
    else:
        picked = verdicts.current(loaded, runnable, spec, progress, stress_too=stress_too)
        judged = [picked[1]] if picked else []
    where = verdicts.place(spec)
    for verdict in judged:
        if not verdicts.unchecked(verdict):
            where.record(verdict.bug.slug, verdict.fixed, current=not (args.all or getattr(args, "recheck", False)),
                         proof=proof if verdict.fixed else None)
    status = worst([verdict.status for verdict in judged])
    fixed = sum(1 for verdict in judged if verdict.fixed)
    if args.json:
        from sessionlab.cli import version

        result = {"implementation": loaded.name, "verdicts": [verdicts.as_json(v, loaded) for v in judged],
                  "status": status, "exit": EXIT_FOR[status], "version": version(),
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if args.all:
            result["summary"] = f"{fixed} of {len(judged)} fixed"
            result["not_checked"] = [{"bug": bug.slug, "why": f"no {bug.manager}"} for bug in left_out]
        if loaded.error is not None:
            result["error"] = code_error_json(loaded.error)
        if not judged:
            result["message"] = f"every exercise is fixed in {loaded.name}, each confirmed by its full check"
        print_json(result)
        return EXIT_FOR[status]
    if not judged:
        print(f"Every exercise is fixed in {loaded.name} ({len(found)} of {len(found)}), each confirmed by its "
              "full check.")
        print(f"Check them all again: {follow(args, 'check', '--all')}")
        return EXIT_OK
    said = set()
    for verdict in judged:
        error = loaded.error_for(verdict.bug.manager) if verdict.error else None
        if error is not None and str(error) in said:  # the same error for every bug of a file: say it once
            print(f"{verdict.bug.number}. {verdict.bug.slug} in {loaded.name}: {verdict_word(ERROR)} (the same error)")
            continue
        if error is not None:
            said.add(str(error))
        print("\n".join(verdicts.render(verdicts.as_json(verdict, loaded), args)))
        print()
    if len(judged) > 1 and said:
        print()
    if left_out:
        classes = sorted({bug.manager for bug in left_out})
        print("\n".join(wrap(f"Not checked: {', '.join(bug.slug for bug in left_out)} ({loaded.name} defines no "
                             f"{' or '.join(classes)}, the class those bugs live in).", output.width())))
    if args.all or len(judged) > 1:
        print("\n".join(summary_table(judged, output.width())))
        print(f"\n{fixed} of {len(judged)} fixed." + ("" if status == FIXED else f" Overall: {verdict_word(status)}."))
    elif judged[0].fixed:
        print(f"Next exercise: {follow(args, 'check')}")
    return EXIT_FOR[status]


def summary_table(judged: list, columns: int) -> list[str]:
    """One line per verdict, to read on one screen after the verdicts in full."""
    rows = [("#", "exercise", "verdict", "figure")]
    for verdict in judged:
        figure = re.sub(r" \(found after [^()]*\)$", "", verdict.evidence.removeprefix(f"{verdict.bug.slug}: "))
        rows.append((str(verdict.bug.number), verdict.bug.slug, verdict.status, figure))
    room = columns - 2 - 3 * 2 - sum(max(len(row[i]) for row in rows) for i in range(3))
    room = max(12, room)
    rows = [(*row[:3], (row[3] if len(row[3]) <= room else row[3][: room - 3].rstrip() + "...")
             .replace(" ", output.GLUE)) for row in rows]
    return ["", "Summary (each verdict in full above):", "", *table(rows, columns)]


def _defines(loaded: Loaded, bug: Bug) -> bool:
    """Whether the implementation defines the class a bug lives in (true when it did not load)."""
    return loaded.implementation is None or callable(getattr(loaded.implementation.module, bug.manager, None))


# -- hint -----------------------------------------------------------------------------------------


def current_exercise(found: tuple[exercises.Exercise, ...], spec: str | None = None) -> exercises.Exercise:
    """The exercise check and watch last worked on, else the first one."""
    remembered = verdicts.place(spec or str(space().path)).current
    try:
        return exercises.find(found, remembered) if remembered else found[0]
    except catalogue.UnknownBug:
        return found[0]


def cmd_hint(args: argparse.Namespace) -> int:
    here = space()
    found = exercises.load(here.root)
    progress = exercises.HintProgress(here.state / "hints.json")
    columns = output.width()
    if args.all:
        chosen = [exercises.find(found, args.bug)] if args.bug else list(found)
        shown = 0
        for exercise in chosen:
            seen = progress.seen_hints(exercise)
            if not seen and not args.bug:
                continue
            print(f"{exercise.bug.number}. {exercise.bug.slug}: {len(seen)} of {len(exercise.hints)} hints seen")
            for number, text in seen:
                print("\n".join(wrap(text, columns, "      ", f"  {number}.  ")))
            print()
            shown += 1
        if not shown:
            print("No hints seen yet. The next hint for the current exercise: sessionlab hint")
        return EXIT_OK
    named = args.bug or getattr(args, "impl", None)
    wild = exercises.find_wild(exercises.load_wild(here.root), named) if named else None
    if wild is not None:
        return _wild_hint(wild, progress, columns)
    exercise = exercises.find(found, args.bug) if args.bug else current_exercise(found)
    already = progress.seen(exercise.bug.slug)
    number, text = progress.next_hint(exercise)
    total = len(exercise.hints)
    which = "" if args.bug else " (the current exercise)"
    print(f"Hint {number} of {total} for {exercise.bug.slug}{which}:\n")
    print("\n".join(wrap(text, columns, "  ")))
    print()
    if number < total:
        print(f"Run it again for the next hint ({total - number} left).")
    else:
        print(f"That is the last hint. Once it passes, compare: sessionlab diff {exercise.bug.slug}")
    if already:
        print(f"Read the hints you have seen again: sessionlab hint {exercise.bug.slug} --all")
    return EXIT_OK


def _wild_hint(wild: exercises.WildExercise, progress: exercises.HintProgress, columns: int) -> int:
    """The next hint for a store in the wild (track 3)."""
    seen = progress.seen(wild.slug)
    number = min(seen + 1, len(wild.hints))
    progress.record(wild.slug, number)
    print("\n".join(wrap(f"Hint {number} of {len(wild.hints)} for {wild.slug} "
                         f"({', '.join(bug.slug for bug in wild.bugs)}):", columns)) + "\n")
    print("\n".join(wrap(wild.hints[number - 1], columns, "  ")))
    print()
    if number < len(wild.hints):
        print(f"Run it again for the next hint ({len(wild.hints) - number} left).")
    else:
        print("\n".join(wrap("That is the last hint. Once it passes, compare: sessionlab diff --impl "
                             f"workspace/wild/{wild.store}.py", columns)))
    return EXIT_OK
