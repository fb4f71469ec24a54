"""sessionlab watch: check the current exercise on every save, and move on once it is FIXED.

Each check runs in a child process (``sessionlab check --json``): a learner's
half-written code may hang, leave threads stuck or import half a module, and a
fresh process starts clean every time. The child's progress goes straight to
the terminal; its verdict comes back as JSON and is printed here as ``check``
prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from sessionlab import catalogue
from sessionlab.cli import verdicts
from sessionlab.cli.common import EXIT_INTERNAL, EXIT_OK, FIXED, follow, space, watched_files
from sessionlab.cli.output import verdict_word
from sessionlab.learner import exercises, workspace


def run_check(bug: str | None, args: argparse.Namespace) -> tuple[int, dict]:
    """sessionlab check [BUG] --json in a child process: its exit status and its JSON."""
    command = [sys.executable, "-m", "sessionlab", "check", *([bug] if bug else []), "--json"]
    if args.impl:
        command += ["--impl", args.impl]
    command += [option for pattern in args.trace for option in ("--trace", pattern)] if getattr(args, "trace", None) else []
    command += ["--no-trace-deps"] if getattr(args, "no_trace_deps", False) else []
    command += ["--no-stress"] if getattr(args, "no_stress", False) else []
    # The child has a session of its own, so Ctrl-C reaches only this process, which ends the child.
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
                             env={**os.environ, "SESSIONLAB_CHILD": "1"})
    try:
        out, _ = child.communicate()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    try:
        data = json.loads(out.decode("utf-8", "replace"))
    except ValueError:
        data = {"error": {"message": f"the check ended without a verdict (exit status {child.returncode})",
                          "exit": EXIT_INTERNAL}}
    return child.returncode, data if isinstance(data, dict) else {}


def cmd_watch(args: argparse.Namespace) -> int:
    here = space()
    if args.impl is None:
        here.require()
    spec = args.impl or str(here.path)
    bug = catalogue.find(args.bug).slug if args.bug else None
    total = len(exercises.load(here.root))
    print(f"Watching {args.impl or here.path}; the check reruns on every save. Stop with Ctrl-C.\n")
    announced: list[str] = []
    status = EXIT_OK
    first = True
    for changed in workspace.changes(lambda: watched_files(spec), interval=args.interval):
        what = "checking" if first else "saved: " + (", ".join(path.name for path in changed) or "(no files)")
        print(f"--- {time.strftime('%H:%M:%S')}  {what}", flush=True)
        first = False
        fixed_now: set[str] = set()
        while True:
            status, result = run_check(bug, args)
            if "error" in result and not result.get("verdicts"):
                error = result["error"]
                print(f"  {error.get('message', 'the check failed')}")
                if error.get("detail"):
                    print("\n".join("    " + line for line in error["detail"].splitlines()))
                print("  (still watching: fix it and save)\n")
                break
            found = result.get("verdicts", [])
            if not found:
                print(f"\nAll {total} exercises are fixed, each confirmed by its full check.")
                if announced:
                    print(f"Fixed while watching: {', '.join(announced)}.")
                print(f"Compare your fixes with the reference: {follow(args, 'diff', 'BUG')}")
                return EXIT_OK
            verdict = found[0]
            print("\n".join(verdicts.render(verdict, args)))
            print()
            if verdict.get("status") != FIXED or verdict["bug"] in fixed_now:
                break
            fixed_now.add(verdict["bug"])
            if verdict["bug"] not in announced:
                announced.append(verdict["bug"])
            number = catalogue.find(verdict["bug"]).number
            figure = verdict["evidence"].removeprefix(f"{verdict['bug']}: ")
            print(f"*** {verdict_word(FIXED)}: {number}. {verdict['bug']}: {figure}")
            print("*** On to the next exercise.\n")
            bug = None  # from now on, whichever exercise is current
        sys.stdout.flush()  # a log or a pipe reads each check as it ends, not when the watch stops
        if args.once:
            return status
    return status
