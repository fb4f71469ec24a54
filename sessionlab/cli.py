"""The ``sessionlab`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict

from sessionlab import catalogue, impls, race, stress
from sessionlab.catalogue import Bug, UnknownBug
from sessionlab.stress import Observation

EXIT_OK, EXIT_LAB_BROKEN, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


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
    implementations = [impls.load(spec) for spec in (args.impl or ["buggy", "fixed"])]
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
          f"{scenario.max_rounds} rounds, so a bug broken at that rate is missed less than once in a million")
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
    reports = [race.explore(bug.slug, impls.load(spec)) for spec in (args.impl or ["buggy"])]
    if args.json:
        print(json.dumps([report.as_json() for report in reports], indent=2))
        return EXIT_OK
    print("\n\n".join(report.text() for report in reports))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([{
            "number": bug.number, "slug": bug.slug, "title": bug.title, "class": bug.bug_class,
            "track": bug.track, "symptom": bug.symptom, "scenario": bug.scenario,
            "marker": bug.marker, "exercise": bug.exercise,
        } for bug in catalogue.BUGS], indent=2))
        return EXIT_OK
    rows = [("#", "bug", "class", "symptom")]
    rows += [(str(bug.number), bug.slug, bug.bug_class, bug.symptom) for bug in catalogue.BUGS]
    for line in _table(rows):
        print(line)
    print("\nWatch one: sessionlab observe BUG    Its checks: pytest --impl buggy -m MARKER (e.g. -m lost_updates)")
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

    listing = commands.add_parser("list", help="list the bugs in the catalogue")
    listing.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    listing.set_defaults(run=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("rounds", "rate"):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    try:
        return args.run(args)
    except (UnknownBug, impls.ImplementationError) as exc:
        print(f"sessionlab: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nsessionlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
