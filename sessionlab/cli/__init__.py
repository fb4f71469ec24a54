"""The ``sessionlab`` command line.

``main`` parses the command line and runs one command; the commands live in
``learner`` (start, list, check, hint), ``comparing`` (diff, reset), ``watching``
(watch), ``grading`` (grade) and ``observing`` (demo, observe, race), and print
through ``output``. They are imported only once a command is chosen, so
``sessionlab --help`` is quick and Ctrl-C is caught from the first moment.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
from collections.abc import Sequence

from sessionlab.cli import framework_logs, interrupts
from sessionlab.cli.status import (
    EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_STATUSES, EXIT_USAGE, CommandError, report_error)

__all__ = ["main", "build_parser", "version"]


def version() -> str:
    import sessionlab

    return sessionlab.__version__


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are JSON when --json was asked for."""

    json_wanted = False

    def error(self, message: str) -> None:  # type: ignore[override]
        if _Parser.json_wanted:
            report_error(argparse.Namespace(json=True), CommandError(f"{self.prog}: {message}", kind="usage"))
            raise SystemExit(EXIT_USAGE)
        super().error(message)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


BUG_HELP = "a bug's name, number or exercise folder: lost-updates, 1, 01-lost-updates"
IMPL_HELP = "a package folder, a .py file, or an importable module (buggy, fixed); relative to where you run"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sessionlab",
        description="A lab for learning why threaded session code loses data, and how to prove\nit doesn't.",
        epilog="start with: sessionlab demo, then sessionlab start\n\n" + EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"sessionlab {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, run: str, help: str, epilog: str | None = None) -> argparse.ArgumentParser:
        description = "\n".join(textwrap.wrap(help[0].upper() + help[1:] + ".", 78))
        sub = commands.add_parser(name, help=help, description=description, epilog=epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(run=run)
        return sub

    def tracing_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--trace", action="append", default=[], metavar="PATTERN",
                         help="also trace the packages matching PATTERN (fnmatch, repeatable), e.g. 'cachelib*'")
        sub.add_argument("--no-trace-deps", action="store_true",
                         help="trace only the implementation's own files, not the third-party packages it uses")

    def json_option(sub: argparse.ArgumentParser, what: str) -> None:
        sub.add_argument("--json", action="store_true", help=f"print {what} as JSON (errors too: {{\"error\": ...}})")

    demo = command("demo", "observing:cmd_demo", "observe every bug on buggy/ and fixed/ side by side")
    demo.add_argument("--impl", metavar="PATH", help=f"show this implementation instead of buggy/ ({IMPL_HELP})")
    demo.add_argument("--track", type=int, choices=(1, 2),
                      help="only this track's bugs: 1, the in-memory manager; 2, the persistent one (default: both)")
    json_option(demo, "the results")

    observe = command("observe", "observing:cmd_observe", "observe one bug's stress scenario on real threads")
    observe.add_argument("bug", metavar="BUG", help=BUG_HELP)
    observe.add_argument("--impl", action="append", metavar="PATH",
                         help="the implementation to observe, repeatable (default: your working copy once "
                              f"made, else buggy; and fixed). {IMPL_HELP}")
    observe.add_argument("--rounds", type=_at_least_one, metavar="N",
                         help="run at most N rounds (default: the checks' bound, enough to miss a bug that "
                              "breaks rounds at the assumed rate less than once in a million)")
    observe.add_argument("--rate", type=_at_least_one, metavar="N",
                         help="instead, run N single rounds and report how many broke, with a 95%% interval")
    observe.add_argument("--calibrate", action="store_true",
                         help="with --rate N (50 or more) on buggy: keep the rate for the bounds of the stress "
                              "checks on this machine (check then runs more rounds if buggy breaks less often "
                              "here); without it observe changes nothing check does")
    json_option(observe, "the results")

    racing = command("race", "observing:cmd_race", "explore every interleaving of a race bug; print the bad one",
                     epilog=EXIT_STATUSES)
    racing.add_argument("bug", metavar="BUG", help=BUG_HELP)
    racing.add_argument("--impl", action="append", metavar="PATH",
                        help=f"the implementation to explore, repeatable (default: your working copy once made, "
                             f"else buggy). {IMPL_HELP}")
    racing.add_argument("-v", "--verbose", action="store_true",
                        help="show the lines of helper calls the report folds into one line")
    tracing_options(racing)
    json_option(racing, "the reports")

    serve = command("serve", "serving:cmd_serve",
                    "serve a manager behind a web app on waitress, on this machine (Ctrl-C stops it)")
    serve.add_argument("--impl", metavar="PATH",
                       help=f"the implementation to serve (default: your working copy once made, else buggy). "
                            f"{IMPL_HELP}")
    serve.add_argument("--store", default="memory", metavar="STORE",
                       help="memory (SessionManager, one process) or sqlite:PATH (PersistentSessionManager, "
                            "several processes sharing the file); default: memory")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="the port (default: 8000)")
    serve.add_argument("--workers", type=_at_least_one, metavar="N",
                       help="worker processes (default: 1 for memory, 4 for sqlite)")
    serve.add_argument("--threads", type=_at_least_one, default=8, metavar="N",
                       help="threads per worker (default: 8)")
    serve.add_argument("--public", action="store_true", help="allow an address that is not loopback")
    serve.add_argument("--switch-interval", type=float, default=1e-6, metavar="SECONDS",
                       help="the workers' thread switch interval (default: 1e-6, as in the lab's stress tests; "
                            "CPython's own is 0.005)")
    serve.add_argument("--noise", type=float, default=0.1, metavar="P",
                       help="chance of a thread switch before each line of the served code (default: 0.1, as "
                            "in the stress tests; 0 for none)")

    loading = command("load", "serving:cmd_load",
                      "drive a served app with concurrent users; print what they saw (loopback only)")
    loading.add_argument("--url", default="http://127.0.0.1:8000", help="the app (default: http://127.0.0.1:8000)")
    loading.add_argument("--users", type=_at_least_one, default=20, metavar="U", help="users (default: 20)")
    loading.add_argument("--tabs", type=_at_least_one, default=4, metavar="T",
                         help="tabs per user, each its own connection, all at once (default: 4)")
    loading.add_argument("--requests", type=_at_least_one, default=40, metavar="R",
                         help="requests per user, shared among its tabs (default: 40)")
    loading.add_argument("--seconds", type=float, default=30.0, metavar="S",
                         help="stop making requests after S seconds (default: 30)")
    json_option(loading, "what users saw")

    wilds = command("wild", "inthewild:cmd_wild",
                    "find the track-1 bugs in the stores on real frameworks (buggy/wild, fixed/wild)")
    wilds.add_argument("--markdown", action="store_true", help="print the table in Markdown, as TECHNICAL.md has it")
    wilds.add_argument("--buggy-only", action="store_true", help="only the stores as applications write them")
    json_option(wilds, "every finding")

    benching = command("bench", "benching:cmd_bench",
                       "operations per second of buggy/, fixed/, your copy and two baselines, at 1, 4, 16 threads")
    benching.add_argument("--impl", action="append", metavar="PATH",
                          help=f"an implementation to time, repeatable (default: buggy, fixed, and your working "
                               f"copy once made). {IMPL_HELP}")
    benching.add_argument("--threads", type=_at_least_one, nargs="+", default=[1, 4, 16], metavar="N",
                          help="thread counts (default: 1 4 16)")
    benching.add_argument("--workloads", nargs="+", default=["create", "get", "update", "increment", "delete",
                                                              "mixed"], metavar="W",
                          help="create, get, update, increment, delete, mixed (default: all)")
    benching.add_argument("--repeats", type=_at_least_one, default=5, metavar="N",
                          help="interleaved runs per figure; the median is shown (default: 5)")
    benching.add_argument("--full", action="store_true",
                          help="also: memory per deleted session, exploration time per bug, linearizability "
                               "time per 1000 calls, requests/s over HTTP (a minute or two)")
    benching.add_argument("--operations", type=_at_least_one, default=20_000, metavar="N",
                          help="operations per run, shared among the threads (default: 20000)")
    json_option(benching, "every figure")

    start = command("start", "learner:cmd_start", "make your working copy of buggy/ in workspace/ (once)")
    start.add_argument("--fresh", action="store_true",
                       help="start over: keep your current copy in .sessionlab/saved/, then copy buggy/ again")

    listing = command("list", "learner:cmd_list", "every exercise, its status in your working copy, and what is next")
    listing.add_argument("--impl", metavar="PATH", help=f"list this implementation's status instead ({IMPL_HELP})")
    tracing_options(listing)
    json_option(listing, "the status")

    check = command("check", "learner:cmd_check",
                    "is the bug fixed in your working copy? exit status 0 only when it is",
                    epilog="verdicts: FIXED, STILL BUGGY, ERROR, HANGS, UNPROVEN\n\n" + EXIT_STATUSES)
    check.add_argument("bug", metavar="BUG", nargs="*",
                       help=f"{BUG_HELP}; several may be named (default: the current exercise: the one you "
                            "last checked, until it is FIXED; then the first not fixed)")
    check.add_argument("--all", action="store_true", help="check every exercise; ends with N of M fixed")
    check.add_argument("--impl", metavar="PATH", help=f"check this instead of your working copy ({IMPL_HELP})")
    check.add_argument("--no-stress", action="store_true",
                       help="skip the stress check: only the checks that decide run (stress can only confirm)")
    tracing_options(check)
    json_option(check, "the verdicts")
    check.add_argument("--recheck", action="store_true", help=argparse.SUPPRESS)  # watch's: the current stays

    hint = command("hint", "learner:cmd_hint", "the next hint for an exercise")
    hint.add_argument("bug", metavar="BUG", nargs="?", help=f"{BUG_HELP} (default: the current exercise)")
    hint.add_argument("--all", action="store_true",
                      help="read again every hint you have seen (of BUG, or of every exercise)")
    hint.add_argument("--impl", metavar="PATH",
                      help="a store in the wild (track 3): its hints, e.g. workspace/wild/django_cache.py")

    differ = command("diff", "comparing:cmd_diff", "your code for one bug against the reference fixed/")
    differ.add_argument("bug", metavar="BUG", nargs="?", help=f"{BUG_HELP} (default: the current exercise)")
    differ.add_argument("--impl", metavar="PATH",
                        help="compare this package folder or .py file instead of your working copy")
    differ.add_argument("--yes", action="store_true",
                        help="show the reference fix even before you have changed the code (no question asked)")

    resetting = command("reset", "comparing:cmd_reset",
                        "put one bug's original code back in your working copy (yours is saved first)")
    resetting.add_argument("bug", metavar="BUG", help=BUG_HELP)
    resetting.add_argument("--impl", metavar="PATH", help="reset this package folder or .py file instead")

    grading = command("grade", "grading:cmd_grade",
                      "judge a class's working copies, several at once: a table of copies by exercises")
    grading.add_argument("copies", metavar="DIR", nargs="+",
                         help="a learner's clone (its workspace/ is judged, its hints seen read) or a working copy")
    grading.add_argument("--jobs", type=_at_least_one, metavar="N", help="copies judged at once (default: the cores)")
    grading.add_argument("--seconds", type=_seconds, default=300.0, metavar="S",
                         help="the bound of one copy's check; a copy still running is a row that says so "
                              "(default: 300)")
    grading.add_argument("--no-stress", action="store_true", help="judge without the stress checks (faster)")
    grading.add_argument("--csv", action="store_true", help="print the table as CSV, with the hints seen")
    json_option(grading, "every copy's verdicts, with the lab's version and the time")

    watch = command("watch", "watching:cmd_watch",
                    "check the current exercise on every save; move on once it is FIXED")
    watch.add_argument("bug", metavar="BUG", nargs="?", help="start with this exercise (default: the current one)")
    watch.add_argument("--impl", metavar="PATH", help=f"watch this instead of your working copy ({IMPL_HELP})")
    watch.add_argument("--interval", type=_seconds, default=0.5, metavar="SECONDS",
                       help="how often to look for saves (default: 0.5)")
    tracing_options(watch)
    watch.add_argument("--no-stress", action="store_true", help="check without the stress check, as check --no-stress")
    watch.add_argument("--once", action="store_true", help=argparse.SUPPRESS)
    return parser


def _command(run: str):
    module, name = run.split(":")
    return getattr(importlib.import_module(f"sessionlab.cli.{module}"), name)


def _run(argv: list[str]) -> int:
    parser = build_parser()
    _Parser.json_wanted = "--json" in argv
    if not argv:
        parser.print_help()
        return EXIT_OK
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, --version, or a usage error already printed
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        return _dispatch(args)
    except CommandError as error:
        return report_error(args, error)
    except BrokenPipeError:
        # The reader went away (sessionlab list | head): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # a bug in the lab itself
        if os.environ.get("SESSIONLAB_DEBUG"):
            raise
        return report_error(args, CommandError(
            f"internal error: {type(exc).__name__}: {exc}. This is a bug in the lab, not in your code; "
            "SESSIONLAB_DEBUG=1 shows the traceback", EXIT_INTERNAL, kind="internal"))


def _dispatch(args: argparse.Namespace) -> int:
    """Run the chosen command; the lab's own errors become one-line CommandErrors."""
    from sessionlab import implementations
    from sessionlab.catalogue import UnknownBug
    from sessionlab.engines.exploration import search
    from sessionlab.learner import exercises
    from sessionlab.learner.workspace import WorkspaceError

    previous = search.TRACING
    if getattr(args, "trace", None) or getattr(args, "no_trace_deps", False):
        search.configure(search.Tracing(dependencies=not args.no_trace_deps, extra=tuple(args.trace)))
    try:
        return _command(args.run)(args)
    except UnknownBug as exc:
        raise CommandError(str(exc), kind="unknown-bug", name=exc.name, suggestion=exc.suggestion) from None
    except implementations.CodeError as exc:
        raise CommandError(f"ERROR: your code did not load: {exc}", EXIT_ERROR, kind="code",
                           detail=exc.text()) from None
    except implementations.ImplementationError as exc:
        raise CommandError(str(exc), kind="implementation") from None
    except WorkspaceError as exc:
        raise CommandError(str(exc), kind="workspace") from None
    except exercises.ManifestError as exc:
        raise CommandError(str(exc), kind="manifest") from None
    finally:
        search.configure(previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Without argv (the installed command), the process ends here too."""
    process = argv is None
    if process:
        interrupts.install()
    with framework_logs.collected() as logs:
        try:
            status = _run(list(sys.argv[1:] if argv is None else argv))
        except KeyboardInterrupt:
            interrupts.say()
            status = EXIT_INTERRUPTED
    for line in logs.summary():
        print(line, file=sys.stderr)
    if process:
        interrupts.finish(status)
    return status


if __name__ == "__main__":
    main()
