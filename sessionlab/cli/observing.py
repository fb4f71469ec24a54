"""The commands that show a bug happen: demo, observe, race."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict

from sessionlab import catalogue, implementations
from sessionlab.bug import DEADLOCK, Bug
from sessionlab.cli import output
from sessionlab.cli.common import (
    EXIT_ERROR, EXIT_FOR, EXIT_HANGS, EXIT_OK, EXIT_STILL_BUGGY, EXIT_UNPROVEN, EXIT_USAGE, FIXED, HANGS, STILL_BUGGY,
    UNPROVEN, CommandError, code_error_json, default_spec, follow, load, require, shorten, worst)
from sessionlab.cli.output import Progress, print_json, table, verdict_word, wrap
from sessionlab.engines import bounded, exploration, stress
from sessionlab.engines.bounded import Hang
from sessionlab.engines.exploration import Inconclusive, threads
from sessionlab.engines.stress import Observation, Scenario
from sessionlab.figure import Figure
from sessionlab.servers import redis_server

# The confidence of the interval observe --rate prints.
RATE_Z, RATE_CONFIDENCE = 1.96, "95%"
# observe --rate on buggy keeps the rate for this machine's bounds (stress.calibrate) only from this many
# rounds: fewer give so wide an interval that the checks would run many times the rounds they need.
CALIBRATION_RUNS = 50


def guarded(what: str, implementation: implementations.Implementation, run):
    """run(), with the learner's exceptions turned into one-line command errors (exit 3).

    A hang or a search that could not decide is returned (the Hang, the Inconclusive): it is
    what the command found, to report as such. An exception that never passed through the
    implementation's own files is the lab's, and goes on up to be reported as an internal error.
    """
    try:
        return run()
    except (Hang, Inconclusive) as found:
        return found
    except Exception as exc:
        error = shorten(implementations.CodeError.of(exc, implementation.files))
        if not error.file:  # it passed through none of the implementation's files: the lab's own bug
            raise
        how = "did not load" if isinstance(exc, implementations.NotLoaded) else "raised"
        raise CommandError(f"{what}: ERROR: your code {how}: {error}", EXIT_ERROR, kind="code",
                           code=code_error_json(error), detail=error.text()) from None


# One round that has not returned after this long has hung (stress bounds its threads' joins by
# ROUND_DEADLINE; this also catches a round stuck on its own thread, in its setup).
ROUND_SECONDS = stress.ROUND_DEADLINE + 5.0


# The figure of a round that did not finish, for a bug that is not a deadlock: observe exits HANGS.
DID_NOT_FINISH = "did not finish"


def bounded_round(scenario: Scenario, implementation: implementations.Implementation, label: str) -> Figure:
    """One stress round on implementation, bounded in time; its figure (a hang's too)."""
    bug = scenario.bug

    def one_round() -> Figure:
        try:
            return bounded.run_bounded(lambda: scenario.run(implementation.factory(bug)), seconds=ROUND_SECONDS,
                                       label=label, files=implementation.files)
        except Hang as hang:
            if bug.bug_class == DEADLOCK and hang.deadlock:  # the bug this scenario is about: its figure
                return Figure(False, "every call returns", "deadlock", hang.summary)
            return Figure(False, "every call returns", DID_NOT_FINISH, hang.summary.split(":", 1)[0],
                          history="\n".join(hang.text().splitlines()[1:]))

    return guarded(label, implementation, one_round)


def hung(observations: list[Observation]) -> bool:
    return any(observation.figure.got == DID_NOT_FINISH for observation in observations)


def observe_one(scenario: Scenario, implementation: implementations.Implementation, progress: Progress,
                rounds: int | None = None) -> Observation:
    """Rounds until one breaks or `rounds` have held (as stress.observe), each bounded in time."""
    label = f"{scenario.bug.slug} on {implementation.name}"
    limit = scenario.max_rounds if rounds is None else rounds
    shown = progress.rounds(label)
    try:
        with stress.fast_switching(noise=scenario.noise):
            for number in range(1, limit + 1):
                figure = bounded_round(scenario, implementation, label)
                shown(number, limit)
                if not figure.held:
                    break
        return Observation(scenario.bug, implementation.name, figure, number, limit)
    finally:
        progress.end()


def round_rate(scenario: Scenario, implementation: implementations.Implementation, runs: int,
               progress: Progress) -> tuple[int, Figure | None]:
    """runs single rounds (as stress.round_rate), each bounded: how many broke, and the first that did."""
    label = f"{scenario.bug.slug} on {implementation.name}, single rounds"
    shown = progress.rounds(label)
    broke, example = 0, None
    try:
        with stress.fast_switching(noise=scenario.noise):
            for number in range(1, runs + 1):
                figure = bounded_round(scenario, implementation, label)
                if not figure.held:
                    broke += 1
                    example = example or figure
                shown(number, runs)
    finally:
        progress.end()
    return broke, example


def observation_json(observation: Observation) -> dict:
    return {
        "bug": observation.bug.slug,
        "implementation": observation.implementation,
        "detected": observation.detected,
        "rounds": observation.rounds,
        "max_rounds": observation.max_rounds,
        "figure": asdict(observation.figure),
        "message": observation.message,
    }


def outcome(observation: Observation) -> str:
    """A table cell: "998 (round 3)", "held (12 rounds)"; the parenthesis stays on one line."""
    if observation.detected:
        return f"{observation.figure.got} (round{output.GLUE}{observation.rounds})"
    return f"held ({stress.plural(observation.rounds, 'round').replace(' ', output.GLUE)})"


def cmd_demo(args: argparse.Namespace) -> int:
    mine = require(load(args.impl), args) if args.impl else require(load("buggy"), args)
    fixed = require(load("fixed"), args)
    shown = catalogue.track(args.track) if getattr(args, "track", None) else catalogue.BUGS
    progress = Progress()
    started = time.perf_counter()
    results = [(home.bug, observe_one(home.stress, mine, progress), observe_one(home.stress, fixed, progress))
               for home in catalogue.stressed() if home.bug in shown]
    elapsed = time.perf_counter() - started
    # The lab is broken if buggy/ hid a bug or fixed/ showed one; a learner's copy may do either.
    broken = [o for _, b, f in results for o in ((b, f) if not args.impl else (f,)) if o.detected == (o is f)]
    if args.json:
        print_json({
            "seconds": round(elapsed, 2),
            "bugs": [{"bug": bug.slug, "buggy": observation_json(b), "fixed": observation_json(f)}
                     for bug, b, f in results],
        })
        return EXIT_STILL_BUGGY if broken else EXIT_OK
    left = f"{mine.name}/" if not mine.name.endswith("/") else mine.name
    columns = output.width()
    print("\n".join(wrap(f"sessionlab demo: every bug's scenario on {left} and on fixed/, real threads, switch "
                         f"interval {stress.SWITCH_INTERVAL * 1e6:g} microsecond; {left} stops at the first round "
                         "that breaks.", columns)))
    print()
    # On a narrow screen the bug's class (observe shows it) gives way to the figures.
    wide = columns >= 110
    rows = [("#", "bug", *(("class",) if wide else ()), "expected", left, "fixed/")]
    for bug, b, f in results:
        rows.append((str(bug.number), bug.slug, *((bug.bug_class,) if wide else ()), b.figure.expected,
                     outcome(b), outcome(f)))
    print("\n".join(table(rows, columns)))
    print(f"\nWhat went wrong on {left}:")
    for bug, b, _ in results:
        if b.detected:
            first = f"  {bug.number}. "
            print("\n".join(wrap(b.message, columns, " " * len(first), first)))
    print(f"\n{len(results)} bugs observed in {elapsed:.1f} s.")
    if broken:
        for observation in broken:
            print(f"LAB BROKEN: {observation.message}", file=sys.stderr)
        return EXIT_STILL_BUGGY
    print(f"Next: pick a bug and watch it alone ({follow(args, 'observe', 'lost-increments')}),")
    print(f"      see its bad interleaving ({follow(args, 'race', 'lost-increments')}),")
    print("      then make your copy and start: sessionlab start")
    return EXIT_OK


def cmd_observe(args: argparse.Namespace) -> int:
    home = catalogue.home(args.bug)
    bug, scenario = home.bug, home.stress
    if scenario is None:
        raise CommandError(f"{bug.slug} has no stress scenario yet")
    implementations = [require(load(spec), args) for spec in (args.impl or [default_spec(), "fixed"])]
    progress = Progress()
    if args.rate:
        return measure_rate(args, scenario, implementations, progress)
    observations = [observe_one(scenario, implementation, progress, args.rounds)
                    for implementation in implementations]
    status = EXIT_HANGS if hung(observations) else EXIT_OK
    if args.json:
        print_json([observation_json(o) for o in observations])
        return status
    columns = output.width()
    print(f"{bug.number}. {bug.title} ({bug.slug}, {bug.bug_class})")
    print("\n".join(wrap(f"symptom:  {bug.symptom}", columns, "             ", "   ")))
    print("\n".join(wrap(f"scenario: {bug.scenario}", columns, "             ", "   ")))
    print()
    for observation in observations:
        word = HANGS if observation.figure.got == DID_NOT_FINISH else "BROKE" if observation.detected else "held"
        print(f"  {observation.implementation}: {verdict_word(word)}")
        print("\n".join(wrap(observation.message, columns, "    ")))
        if observation.figure.got == DID_NOT_FINISH:
            print("\n".join(output.indented(observation.figure.history, "    ", columns)))
        elif observation.figure.history:
            print("\n    The recorded history, checked for linearizability:\n")
            print("\n".join("      " + line for line in observation.figure.history.splitlines()))
            print()
    if home.explorable:
        print()
        print("\n".join(wrap(f"The exact bad interleaving, step by step: {follow(args, 'race', bug.slug)}",
                             columns)))
    return status


def measure_rate(args: argparse.Namespace, scenario: Scenario, implementations, progress: Progress) -> int:
    bug = scenario.bug
    results = []
    for implementation in implementations:
        broke, example = round_rate(scenario, implementation, args.rate, progress)
        results.append((implementation, broke, example))
        if _keeps(args, implementation, broke):
            # stress.calibration: the checks' bound counts on the lower end of what this machine showed.
            stress.calibrate(bug.slug, stress.Rate(broke, args.rate))
    rows = []
    for implementation, broke, example in results:
        low, high = stress.wilson(broke, args.rate, z=RATE_Z)
        # The assumed rate is buggy/'s: compare it only with code that broke.
        compared = implementation.name == "buggy" or broke > 0
        rows.append((implementation, broke, example, low, high, compared,
                     "within" if low <= scenario.round_rate <= high else
                     "below" if scenario.round_rate < low else "above"))
    if args.json:
        print_json([{
            "bug": bug.slug, "implementation": implementation.name, "runs": args.rate, "broke": broke,
            "rate": broke / args.rate, "interval": [round(low, 4), round(high, 4)],
            "confidence": RATE_CONFIDENCE, "assumed_round_rate": scenario.round_rate,
            "assumed_rate_is": where if compared else None, "max_rounds": scenario.max_rounds,
        } for implementation, broke, _, low, high, compared, where in rows])
        return EXIT_OK
    columns = output.width()
    print(f"{bug.slug}: {args.rate} single rounds per implementation")
    for implementation, broke, example, low, high, compared, where in rows:
        print(f"  {implementation.name}: broke in {broke} of {args.rate} rounds ({broke / args.rate:.0%}); "
              f"{RATE_CONFIDENCE} interval {low:.1%} to {high:.1%} (Wilson)")
        if example is not None:
            print("\n".join(wrap(f"e.g. {example.summary}", columns, "    ")))
        if compared:
            meaning = {
                "within": "lies within it: the run agrees with the lab's assumption",
                "below": "lies below it: rounds break here more often than the checks count on",
                "above": "lies above it: rounds break here less often than the checks count on, "
                         "so this run does not support the checks' bound on this machine",
            }[where]
            text = f"the lab assumes buggy/ breaks at least {scenario.round_rate:.0%} of rounds, which {meaning}"
            print("\n".join(wrap(text, columns, "    ")))
        if _keeps(args, implementation, broke):
            print("    kept for this machine: the checks' bound counts on the lower end of the measured rate")
        elif implementation.name == "buggy":
            print("\n".join(wrap(f"not kept for this machine's bounds: that takes --calibrate and at least "
                                 f"{CALIBRATION_RUNS} rounds", columns, "      ", "    ")))
    print("\n".join(wrap(
        f"The checks run up to {stress.plural(scenario.max_rounds, 'round')}: enough to miss, less than once in "
        f"a million runs, a bug that breaks at least {scenario.counted_rate:.1%} of rounds. Whether a bug breaks "
        f"that often here is what the interval above says; more rounds (--rate) narrow it.", columns)))
    return EXIT_OK


def _keeps(args: argparse.Namespace, implementation: implementations.Implementation, broke: int) -> bool:
    """Whether observe --rate keeps buggy's rate for the checks' bounds: only when asked (--calibrate)."""
    return (getattr(args, "calibrate", False) and implementation.name == "buggy" and broke > 0
            and args.rate >= CALIBRATION_RUNS)


def cmd_race(args: argparse.Namespace) -> int:
    home = catalogue.home(args.bug)
    bug = home.bug
    if not home.explorable:
        raise CommandError(f"{bug.slug} is not a race ({bug.bug_class}): no interleaving causes it. "
                           f"Watch it with: {follow(args, 'observe', bug.slug)}")
    own = home.explore  # an exploration of its own (processes on one file)
    available, why = exploration.frontrun_available()
    if bug.track == 4:  # a real Redis, started before the search, or why there is none
        why_not = redis_server.ready()
        if why_not:
            raise CommandError(why_not, EXIT_UNPROVEN, kind="unavailable")
    width = max(80, output.width())
    results = []  # (status, its JSON, its text), one per implementation
    for spec in args.impl or [default_spec()]:
        implementation = require(load(spec), args)
        if own is None and not available:
            results.append(_unexplored(bug, implementation.name, why))
            continue
        progress = Progress()
        progress.phase(f"exploring {bug.slug} on {implementation.name}")
        explore = (lambda: own(implementation)) if own else (lambda: threads.explore(home.race, implementation))
        try:
            found = guarded(f"{bug.slug} on {implementation.name}", implementation, explore)
        finally:
            progress.end()
        if isinstance(found, Hang):
            results.append(_hung(bug, implementation.name, found, width))
        elif isinstance(found, Inconclusive):
            results.append(_unexplored(bug, implementation.name, str(found)))
        elif own:
            status = STILL_BUGGY if not found.held else FIXED
            results.append((status, {**_figure_json(bug, implementation.name, found), "status": status},
                            _figure_text(bug, implementation.name, found, width)))
        else:
            status = FIXED if found.held and found.complete else STILL_BUGGY if not found.held else UNPROVEN
            results.append((status, {**found.as_json(), "status": status},
                            found.text(width=width, verbose=args.verbose)))
    status = worst([status for status, _, _ in results])
    if args.json:
        print_json([data for _, data, _ in results])
    else:
        print("\n\n".join(text for _, _, text in results))
    return EXIT_FOR[status]


def _hung(bug: Bug, name: str, hang: Hang, width: int) -> tuple[str, dict, str]:
    """A search that hung: a deadlock is this bug's finding (STILL BUGGY) or a new one's (HANGS)."""
    status = STILL_BUGGY if bug.bug_class == DEADLOCK and hang.deadlock else HANGS
    word = "BROKEN" if status == STILL_BUGGY else HANGS
    lines = [f"{bug.slug} (bug {bug.number}, {bug.bug_class}) on {name}: {verdict_word(word)}"]
    lines += wrap(_first_upper(hang.summary.split(":", 1)[0]) + ", with each thread waiting for a lock "
                  "another holds:" if hang.deadlock else hang.summary.split(":", 1)[0] + ":", width, "  ")
    lines += output.indented("\n".join(hang.text().splitlines()[1:]), "  ", width)
    data = {"bug": bug.slug, "implementation": name, "held": False, "status": status,
            "message": hang.summary, "hang": hang.as_json()}
    return status, data, "\n".join(lines)


def _unexplored(bug: Bug, name: str, why: str) -> tuple[str, dict, str]:
    """A search that could not decide (no frontrun here, a run it could not schedule): UNPROVEN."""
    lines = [f"{bug.slug} (bug {bug.number}, {bug.bug_class}) on {name}: {verdict_word(UNPROVEN)}"]
    lines += wrap(f"the interleavings could not all be explored: {why}", output.width(), "  ")
    return UNPROVEN, {"bug": bug.slug, "implementation": name, "held": None, "status": UNPROVEN,
                      "message": why}, "\n".join(lines)


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _figure_text(bug: Bug, name: str, figure: Figure, width: int) -> str:
    state = "HOLDS" if figure.held else "BROKEN"
    lines = [f"{bug.slug} (bug {bug.number}, {bug.bug_class}) on {name}: {verdict_word(state)}"]
    lines += wrap(figure.summary, width, "  ")
    if figure.history:
        lines += [""] + figure.history.splitlines()
    return "\n".join(lines)


def _figure_json(bug: Bug, name: str, figure: Figure) -> dict:
    return {"bug": bug.slug, "implementation": name, "held": figure.held, "message": figure.summary,
            "expected": figure.expected, "got": figure.got, "interleaving": figure.history}


__all__ = ["cmd_demo", "cmd_observe", "cmd_race", "EXIT_USAGE"]
