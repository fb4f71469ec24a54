"""The ``sessionlab`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from sessionlab import catalogue, checks, exercises, impls, race, stress, workspace
from sessionlab.catalogue import Bug, UnknownBug
from sessionlab.stress import Observation
from sessionlab.workspace import Workspace, WorkspaceError

EXIT_OK, EXIT_LAB_BROKEN, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3
EXIT_STILL_BUGGY = 1


def _workspace() -> Workspace:
    return Workspace(workspace.project_root())


def _default_spec() -> str:
    """The learner's working copy once it exists, else the pristine buggy/."""
    space = _workspace()
    return str(space.path) if space.exists else "buggy"


def _load(spec: str) -> impls.Implementation:
    implementation = impls.load(spec)
    space = _workspace()
    if space.exists and Path(spec).resolve() == space.path.resolve():
        return impls.Implementation(workspace.WORKSPACE, implementation.module)
    return implementation


class Progress:
    """One self-erasing status line on stderr, shown only on a terminal."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.enabled = stream.isatty()
        self.width = 0

    def show(self, text: str) -> None:
        if self.enabled:
            self.stream.write("\r" + text.ljust(self.width))
            self.stream.flush()
            self.width = len(text)

    def rounds(self, label: str) -> Callable[[int, int], None]:
        return lambda done, total: self.show(f"  {label}: round {done} of at most {total}")

    def clear(self) -> None:
        if self.enabled and self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


def _observation_json(observation: Observation) -> dict:
    return {
        "bug": observation.bug.slug,
        "implementation": observation.implementation,
        "detected": observation.detected,
        "rounds": observation.rounds,
        "max_rounds": observation.max_rounds,
        "figure": asdict(observation.figure),
        "message": observation.message,
    }


def _observe(bug: Bug, implementation: impls.Implementation, progress: Progress, rounds: int | None = None) -> Observation:
    try:
        return stress.observe(
            bug.slug, implementation.new_manager, implementation=implementation.name,
            max_rounds=rounds, progress=progress.rounds(f"{bug.slug} on {implementation.name}"),
        )
    finally:
        progress.clear()


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


def _outcome(observation: Observation) -> str:
    figure = observation.figure
    if observation.detected:
        return f"{figure.got} (round {observation.rounds})"
    return f"held ({stress.plural(observation.rounds, 'round')})"


# -- commands -----------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    buggy, fixed = impls.load("buggy"), impls.load("fixed")
    bugs = catalogue.track(1)
    progress = Progress()
    started = time.perf_counter()
    results = [(bug, _observe(bug, buggy, progress), _observe(bug, fixed, progress)) for bug in bugs]
    elapsed = time.perf_counter() - started
    broken = [o for _, b, f in results for o in (b, f) if o.detected == (o is f)]

    if args.json:
        print(json.dumps({
            "seconds": round(elapsed, 2),
            "bugs": [{"bug": bug.slug, "buggy": _observation_json(b), "fixed": _observation_json(f)}
                     for bug, b, f in results],
        }, indent=2))
        return EXIT_LAB_BROKEN if broken else EXIT_OK

    print("sessionlab demo: every bug's scenario on buggy/ and on fixed/, real threads,")
    print(f"switch interval {stress.SWITCH_INTERVAL * 1e6:g} microsecond; buggy/ stops at the first round that breaks.\n")
    rows = [("#", "bug", "class", "expected", "buggy/", "fixed/")]
    for bug, b, f in results:
        rows.append((str(bug.number), bug.slug, bug.bug_class, b.figure.expected, _outcome(b), _outcome(f)))
    for line in _table(rows):
        print(line)
    print("\nWhat went wrong on buggy/:")
    for bug, b, _ in results:
        print(f"  {bug.number}. {b.message}")
    print(f"\n{len(results)} bugs observed in {elapsed:.1f} s.")
    if broken:
        for observation in broken:
            print(f"LAB BROKEN: {observation.message}", file=sys.stderr)
        return EXIT_LAB_BROKEN
    print("Next: pick a bug and watch it alone (sessionlab observe lost-increments),")
    print("      run its checks against buggy/ (pytest --impl buggy -m lost_increments),")
    print("      then read its exercise: " + bugs[0].exercise.rsplit("/", 1)[0] + "/")
    return EXIT_OK


def cmd_observe(args: argparse.Namespace) -> int:
    bug = catalogue.find(args.bug)
    if bug.slug not in stress.SCENARIOS:
        print(f"{bug.slug} has no stress scenario yet", file=sys.stderr)
        return EXIT_USAGE
    implementations = [_load(spec) for spec in (args.impl or [_default_spec(), "fixed"])]
    progress = Progress()
    if args.rate:
        return _measure_rate(args, bug, implementations, progress)
    observations = [_observe(bug, implementation, progress, args.rounds) for implementation in implementations]
    if args.json:
        print(json.dumps([_observation_json(o) for o in observations], indent=2))
        return EXIT_OK
    print(f"{bug.number}. {bug.title} ({bug.slug}, {bug.bug_class})")
    print(f"   symptom:  {bug.symptom}")
    print(f"   scenario: {bug.scenario}\n")
    for observation in observations:
        verdict = "BROKE" if observation.detected else "held"
        print(f"  {observation.implementation}: {verdict}")
        print(f"    {observation.message}")
        if observation.figure.history:
            print("\n    The recorded history, checked for linearizability:\n")
            print("\n".join("      " + line for line in observation.figure.history.splitlines()))
            print()
    return EXIT_OK


def _measure_rate(args: argparse.Namespace, bug: Bug, implementations, progress: Progress) -> int:
    scenario = stress.SCENARIOS[bug.slug]
    results = []
    for implementation in implementations:
        try:
            broke, example = stress.round_rate(
                bug.slug, implementation.new_manager, args.rate,
                progress=progress.rounds(f"{bug.slug} on {implementation.name}, single rounds"),
            )
        finally:
            progress.clear()
        results.append((implementation, broke, example))
    if args.json:
        print(json.dumps([{
            "bug": bug.slug, "implementation": implementation.name, "runs": args.rate, "broke": broke,
            "assumed_round_rate": scenario.round_rate, "max_rounds": scenario.max_rounds,
        } for implementation, broke, _ in results], indent=2))
        return EXIT_OK
    print(f"{bug.slug}: {args.rate} single rounds per implementation")
    for implementation, broke, example in results:
        print(f"  {implementation.name}: broke in {broke} of {args.rate} rounds ({broke / args.rate:.0%})")
        if example is not None:
            print(f"    e.g. {example.summary}")
    print(f"  the checks count on at least {scenario.round_rate:.0%} per round and run up to "
          f"{stress.plural(scenario.max_rounds, 'round')}, so a bug broken at that rate is missed less "
          f"than once in a million")
    return EXIT_OK


def cmd_race(args: argparse.Namespace) -> int:
    bug = catalogue.find(args.bug)
    if bug.slug not in race.SCENARIOS:
        print(f"sessionlab: {bug.slug} is not a race ({bug.bug_class}): no interleaving causes it. "
              f"Watch it with: sessionlab observe {bug.slug}", file=sys.stderr)
        return EXIT_USAGE
    available, why = race.frontrun_available()
    if not available:
        print(f"sessionlab: {why}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    reports = [race.explore(bug.slug, _load(spec)) for spec in (args.impl or [_default_spec()])]
    if args.json:
        print(json.dumps([report.as_json() for report in reports], indent=2))
        return EXIT_OK
    print("\n\n".join(report.text() for report in reports))
    return EXIT_OK


def cmd_start(args: argparse.Namespace) -> int:
    space = _workspace()
    created = space.start()
    where = space.path
    if created:
        print(f"Made your working copy of buggy/ in {where}/")
        print("Fix the bugs there; buggy/ stays as it was, and git ignores your copy.")
    else:
        print(f"Your working copy already exists: {where}/  (nothing was changed)")
    first = exercises.load(space.root)[0]
    print()
    print(f"First exercise: {first.bug.number}. {first.bug.title}  ({first.readme.relative_to(space.root)})")
    print(f"  sessionlab check {first.bug.slug}    is it fixed yet? (it is not)")
    print("  sessionlab list                       every exercise and what to do next")
    return EXIT_OK


def _status(space: Workspace) -> tuple[impls.Implementation, list[tuple[exercises.Exercise, checks.Verdict]]]:
    implementation = _load(str(space.path))
    found = exercises.load(space.root)
    return implementation, [(exercise, checks.judge(exercise.bug.slug, implementation, stress_too=False))
                            for exercise in found]


def cmd_list(args: argparse.Namespace) -> int:
    space = _workspace()
    if not space.exists:
        if args.json:
            print(json.dumps({"workspace": None, "exercises": [], "next": None,
                              "message": "no working copy yet: sessionlab start"}, indent=2))
            return EXIT_OK
        rows = [("#", "bug", "class", "symptom")]
        rows += [(str(bug.number), bug.slug, bug.bug_class, bug.symptom) for bug in catalogue.BUGS]
        for line in _table(rows):
            print(line)
        print("\nNo working copy yet. Start the exercises with: sessionlab start")
        return EXIT_OK
    _, statuses = _status(space)
    upcoming = next((exercise for exercise, verdict in statuses if not verdict.fixed), None)
    if args.json:
        print(json.dumps({
            "workspace": str(space.path),
            "exercises": [{
                "number": exercise.bug.number, "bug": exercise.bug.slug, "title": exercise.bug.title,
                "folder": str(exercise.folder.relative_to(space.root)),
                "status": "fixed" if verdict.fixed else "buggy", "evidence": verdict.evidence,
                "hints_seen": exercises.HintProgress(space.state / "hints.json").seen(exercise.bug.slug),
                "hints": len(exercise.hints),
            } for exercise, verdict in statuses],
            "next": upcoming.bug.slug if upcoming else None,
        }, indent=2))
        return EXIT_OK
    rows = [("", "#", "exercise", "status", "folder")]
    for exercise, verdict in statuses:
        marker = "->" if exercise is upcoming else ""
        rows.append((marker, str(exercise.bug.number), exercise.bug.slug,
                     "fixed" if verdict.fixed else "still buggy",
                     str(exercise.folder.relative_to(space.root)) + "/"))
    print(f"Exercises, checked against {space.path}/ (deterministic checks; `check` adds stress):\n")
    for line in _table(rows):
        print(line)
    fixed = sum(1 for _, verdict in statuses if verdict.fixed)
    print(f"\n{fixed} of {len(statuses)} fixed.")
    if upcoming is None:
        print("Every bug is fixed. Compare your fixes with the reference: sessionlab diff BUG")
    else:
        slug = upcoming.bug.slug
        print(f"Next: read {upcoming.readme.relative_to(space.root)}, then")
        print(f"      sessionlab race {slug}      see the bad interleaving" if slug in race.SCENARIOS
              else f"      sessionlab observe {slug}   watch it happen")
        print(f"      sessionlab check {slug}     is it fixed yet?")
        print(f"      sessionlab hint {slug}      when you are stuck")
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    space = _workspace()
    if args.impl is None:
        space.require()
    implementation = _load(args.impl or str(space.path))
    if args.all:
        bugs = [exercise.bug for exercise in exercises.load(space.root)]
    elif args.bug:
        bugs = [catalogue.find(args.bug)]
    else:
        bugs = [_current_exercise(space, implementation).bug]
    progress = Progress()
    verdicts = []
    for bug in bugs:
        try:
            verdicts.append(checks.judge(bug.slug, implementation, progress=lambda check, bug=bug: progress.show(
                f"  {bug.slug}: {check.name} ...")))
        finally:
            progress.clear()
    if args.json:
        print(json.dumps({"implementation": implementation.name,
                          "verdicts": [verdict.as_json() for verdict in verdicts]}, indent=2))
    else:
        for verdict in verdicts:
            _print_verdict(verdict)
    return EXIT_OK if all(verdict.fixed for verdict in verdicts) else EXIT_STILL_BUGGY


def _current_exercise(space: Workspace, implementation: impls.Implementation) -> exercises.Exercise:
    """The first exercise whose bug the deterministic checks still find, else the last one."""
    found = exercises.load(space.root)
    for exercise in found:
        if not checks.judge(exercise.bug.slug, implementation, stress_too=False).fixed:
            return exercise
    return found[-1]


def _print_verdict(verdict: checks.Verdict) -> None:
    bug = verdict.bug
    state = "FIXED" if verdict.fixed else "STILL BUGGY"
    print(f"{bug.number}. {bug.slug} in {verdict.implementation}: {state}")
    for result in verdict.results:
        mark = {None: "skip", True: " ok ", False: "FAIL"}[result.held]
        print(f"  [{mark}] {result.check.name} ({result.seconds:.2f} s)")
        print(f"         {result.message}")
    ran = {result.check.name for result in verdict.results}
    for check in checks.checks_for(bug):
        if check.name not in ran:
            print(f"  [    ] {check.name}: not run, an earlier check already broke")
    if verdict.fixed:
        print(f"  Compare with the reference: sessionlab diff {bug.slug}")
    else:
        if bug.slug in race.SCENARIOS:
            print(f"  See the bad interleaving: sessionlab race {bug.slug}")
        print(f"  Stuck? sessionlab hint {bug.slug}")
    print()


def cmd_hint(args: argparse.Namespace) -> int:
    space = _workspace()
    exercise = exercises.find(exercises.load(space.root), args.bug)
    number, text = exercises.HintProgress(space.state / "hints.json").next_hint(exercise)
    total = len(exercise.hints)
    print(f"Hint {number} of {total} for {exercise.bug.slug}:\n")
    print("  " + text.replace("\n", "\n  "))
    print()
    if number < total:
        print(f"Run it again for the next hint ({total - number} left).")
    else:
        print(f"That is the last hint. Once it passes, compare: sessionlab diff {exercise.bug.slug}")
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    space = _workspace()
    bug = catalogue.find(args.bug)
    if args.impl:
        implementation = impls.load(args.impl)
        mine, label = Path(implementation.origin).parent / workspace.MODULE, args.impl
    else:
        space.require()
        mine, label = space.path / workspace.MODULE, f"{workspace.WORKSPACE}/{workspace.MODULE}"
    parts = workspace.diff(bug, mine, space.root / "fixed" / workspace.MODULE, label, f"fixed/{workspace.MODULE}")
    print(f"{bug.number}. {bug.slug}: your code against the reference, in {', '.join(bug.functions)}\n")
    for name, text in parts:
        print(text if text else f"{name}: identical to the reference.\n")
    print("The reference's FIX comments say what each change restores. A different fix is fine")
    print(f"if it passes: sessionlab check {bug.slug}")
    return EXIT_OK


def cmd_reset(args: argparse.Namespace) -> int:
    space = _workspace()
    bug = catalogue.find(args.bug)
    saved = workspace.reset(bug, space)
    print(f"Put the original {bug.slug} code back in {space.path / workspace.MODULE}")
    print(f"  ({', '.join(bug.functions)}); your version was saved as {saved.relative_to(space.root)}")
    print(f"Check that the bug is back: sessionlab check {bug.slug}")
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    space = _workspace()
    space.require()
    print(f"Watching {space.path}/ ; the check reruns on every save. Stop with Ctrl-C.\n")
    for changed in workspace.changes(space.files, interval=args.interval):
        implementation = _load(str(space.path))  # imported afresh when its files changed
        bug = catalogue.find(args.bug) if args.bug else _current_exercise(space, implementation).bug
        stamp = time.strftime("%H:%M:%S")
        names = ", ".join(path.name for path in changed)
        print(f"--- {stamp}  {names}")
        try:
            _print_verdict(checks.judge(bug.slug, implementation))
        except Exception as exc:  # a learner's half-written code must not end the watch
            print(f"  your code raised {type(exc).__name__}: {exc}\n")
        if args.once:
            return EXIT_OK
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sessionlab",
        description="A lab for learning why threaded session code loses data, and how to prove it doesn't.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="observe every bug on buggy/ and fixed/ side by side")
    demo.add_argument("--json", action="store_true", help="print the results as JSON")
    demo.set_defaults(run=cmd_demo)

    observe = commands.add_parser("observe", help="observe one bug's scenario")
    observe.add_argument("bug", metavar="BUG", help="a bug's name or number, e.g. lost-increments or 2")
    observe.add_argument("--impl", action="append", metavar="NAME_OR_PATH",
                         help="the implementation to observe (repeatable; default: buggy and fixed)")
    observe.add_argument("--rounds", type=int, metavar="N",
                         help="run at most N rounds (default: enough to miss a present bug less than once in a million)")
    observe.add_argument("--rate", type=int, metavar="N",
                         help="instead, run N single rounds and report how many broke")
    observe.add_argument("--json", action="store_true", help="print the results as JSON")
    observe.set_defaults(run=cmd_observe)

    racing = commands.add_parser("race", help="explore every interleaving of a race bug; print the bad one")
    racing.add_argument("bug", metavar="BUG", help="a race bug's name or number, e.g. lost-increments or 2")
    racing.add_argument("--impl", action="append", metavar="NAME_OR_PATH",
                        help="the implementation to explore (repeatable; default: buggy)")
    racing.add_argument("--json", action="store_true", help="print the reports as JSON")
    racing.set_defaults(run=cmd_race)

    start = commands.add_parser("start", help="make your working copy of buggy/ (once)")
    start.set_defaults(run=cmd_start)

    listing = commands.add_parser("list", help="every exercise, its status in your working copy, and what is next")
    listing.add_argument("--json", action="store_true", help="print the status as JSON")
    listing.set_defaults(run=cmd_list)

    check = commands.add_parser("check", help="is the bug fixed in your working copy? (exit status 0 when fixed)")
    check.add_argument("bug", metavar="BUG", nargs="?", help="a bug's name or number (default: the current exercise)")
    check.add_argument("--all", action="store_true", help="check every exercise")
    check.add_argument("--impl", metavar="NAME_OR_PATH", help="check this implementation instead of your working copy")
    check.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    check.set_defaults(run=cmd_check)

    hint = commands.add_parser("hint", help="the next hint for an exercise")
    hint.add_argument("bug", metavar="BUG")
    hint.set_defaults(run=cmd_hint)

    differ = commands.add_parser("diff", help="your code for one bug against the reference fixed/")
    differ.add_argument("bug", metavar="BUG")
    differ.add_argument("--impl", metavar="PATH", help="compare this package folder instead of your working copy")
    differ.set_defaults(run=cmd_diff)

    resetting = commands.add_parser("reset", help="put one bug's original code back in your working copy")
    resetting.add_argument("bug", metavar="BUG")
    resetting.set_defaults(run=cmd_reset)

    watch = commands.add_parser("watch", help="rerun the current exercise's check whenever you save")
    watch.add_argument("bug", metavar="BUG", nargs="?", help="watch this exercise (default: the current one)")
    watch.add_argument("--interval", type=float, default=0.5, help="seconds between looks at the files")
    watch.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    watch.set_defaults(run=cmd_watch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("rounds", "rate"):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    try:
        return args.run(args)
    except (UnknownBug, impls.ImplementationError, WorkspaceError, exercises.ManifestError) as exc:
        print(f"sessionlab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nsessionlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (sessionlab list | head): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
