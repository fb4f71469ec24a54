"""sessionlab watch: check the current exercise on every save, and move on once it is FIXED.

Each check runs in a child process (``sessionlab check --json``): a learner's
half-written code may hang, leave threads stuck or import half a module, and a
fresh process starts clean every time. The child's progress goes straight to
the terminal; its verdict comes back as JSON and is printed here as ``check``
prints it.

On a terminal the screen is drawn afresh for each run: the details at the top,
and at the bottom, fitted to the terminal, the verdict with its figure, the
exercises of the saved file that were fixed and no longer are, a bar of the
exercises fixed, and the keys. A FIXED stays on the screen until a key says
what next. Off a terminal (a log, a pipe) each run is printed after the last
and a FIXED moves on by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sessionlab import catalogue
from sessionlab.cli import output, verdicts
from sessionlab.cli.common import EXIT_INTERNAL, EXIT_OK, FIXED, follow, resolve_spec, space, watched_files
from sessionlab.cli.output import table, verdict_word, wrap
from sessionlab.judge import checks
from sessionlab.learner import exercises, workspace

try:  # single keys without Enter: POSIX terminals only
    import termios
    import tty
except ImportError:  # pragma: no cover - Windows: watch without keys
    termios = tty = None  # type: ignore[assignment]

KEYS = "h hint  l list  r recheck  q quit"
KEYS_ON_FIXED = "n next  " + KEYS
CLEAR = "\033[H\033[2J\033[3J"  # cursor home, erase the screen and what scrolled off it
ESCAPES = re.compile(r"\033\[[0-9;]*m")


def run_check(bugs: list[str], args: argparse.Namespace, *, recheck: bool = False,
              columns: int | None = None) -> tuple[int, dict]:
    """sessionlab check [BUG...] --json in a child process: its exit status and its JSON.

    recheck: a second look at exercises done before (deterministic checks only), which
    leaves the current exercise as it is.
    """
    command = [sys.executable, "-m", "sessionlab", "check", *bugs, "--json"]
    if args.impl:
        command += ["--impl", args.impl]
    command += [option for pattern in args.trace for option in ("--trace", pattern)] if getattr(args, "trace", None) else []
    command += ["--no-trace-deps"] if getattr(args, "no_trace_deps", False) else []
    command += ["--no-stress"] if getattr(args, "no_stress", False) or recheck else []
    command += ["--recheck"] if recheck else []
    env = {**os.environ, "SESSIONLAB_CHILD": "1", **({"COLUMNS": str(columns)} if columns else {})}
    # The child has a session of its own, so Ctrl-C reaches only this process, which ends the child.
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True,
                             env=env)
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


class Keys:
    """Single keys from the terminal, read without Enter (cbreak mode, put back at the end); none off one."""

    def __init__(self, stream=None):
        stream = stream or sys.stdin
        try:
            self.fd = stream.fileno() if termios is not None and stream.isatty() else None
        except (AttributeError, ValueError, OSError):
            self.fd = None
        self._saved = None

    def __enter__(self) -> Keys:
        if self.fd is not None:
            self._saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    def wait(self, seconds: float) -> str | None:
        """The key pressed within seconds, or None; off a terminal, only the wait."""
        if self.fd is None:
            time.sleep(seconds)
            return None
        ready, _, _ = select.select([self.fd], [], [], seconds)
        if not ready:
            return None
        data = os.read(self.fd, 32)
        return data.decode("utf-8", "replace")[:1].lower() if data else "q"  # a closed terminal: quit


class Screen:
    """The terminal, drawn afresh for each run; off a terminal, lines printed one after another."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        try:
            self.terminal = self.stream.isatty()
        except (AttributeError, ValueError):
            self.terminal = False

    def size(self) -> tuple[int, int]:
        columns, rows = shutil.get_terminal_size((80, 24))
        return max(40, columns), max(12, rows)

    def begin(self, line: str) -> None:
        """A run starts: on a terminal, a clear screen with one line (the child's progress goes under it)."""
        self._write((CLEAR if self.terminal else "") + line + "\n")

    def draw(self, body: list[str], footer: list[str], full: str) -> None:
        """The body at the top, cut to what fits (full: the command that prints all of it), the footer at
        the bottom."""
        if not self.terminal:
            self._write("\n".join(body + footer) + "\n")
            return
        columns, rows = self.size()
        room = rows - len(footer) - 1
        body = [_fit(line, columns) for line in body]
        if len(body) > room:
            cut = len(body) - room + 1
            body = body[: room - 1] + [_fit(f"  ... {cut} more lines: {full} prints them all", columns)]
        self._write(CLEAR + "\n".join(body + [""] * (room - len(body)) + [_fit(line, columns) for line in footer])
                    + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _fit(line: str, columns: int) -> str:
    """A line cut to the width (its colours dropped if it must be cut)."""
    plain = ESCAPES.sub("", line)
    return line if len(plain) <= columns else plain[: columns - 1] + "~"


def compact(verdict: dict) -> list[str]:
    """A verdict for one screen: a line per check, then what broke (the scenario and the steps of the
    interleaving, or where each thread waits, or where the code broke); the figure is in the footer."""
    bug = catalogue.find(verdict["bug"])
    status = verdict.get("status") or (FIXED if verdict["fixed"] else "STILL BUGGY")
    lines = [f"{bug.number}. {bug.slug} in {verdict['implementation']}: {verdict_word(status)}"]
    if verdict.get("detail") and not verdict.get("checks"):
        lines += ["  your code did not load:", *("    " + line for line in verdict["detail"].splitlines())]
    ran = set()
    for check in verdict.get("checks", []):
        ran.add(check["check"])
        mark = output.paint(verdicts.MARKS.get(check["outcome"], check["outcome"]),
                            verdicts.MARK_COLOURS.get(check["outcome"], ""))
        lines.append(f"  [{mark}] {check['check']} ({check['seconds']:.2f} s)")
        if check["outcome"] != "held" and check.get("detail"):
            lines += ["", *_steps(check["detail"]), ""]
    if verdict.get("checks"):
        lines += [f"  [    ] {check.name}: not run" for check in checks.checks_for(catalogue.home(bug))
                  if check.name not in ran]
    if status == FIXED:
        lines += ["", f"  Compare with the reference: sessionlab diff {bug.slug}"
                  + (f" --impl {verdict['implementation']}" if verdict["implementation"] != "workspace" else "")]
    return lines


def _steps(detail: str) -> list[str]:
    """An interleaving's report without what the footer says already (the figure, why) and without its
    legend and replay lines; other details (where threads wait, where code broke) whole."""
    lines = detail.splitlines()
    start = next((n for n, line in enumerate(lines) if line.startswith("Scenario:")), None)
    if start is None:
        return ["  " + line for line in lines]
    kept, skipping = [], False
    for line in lines[start:]:
        if line.startswith(("The interleaving: each step", "Found after exploring")):
            skipping = not line.startswith("Found after")
            continue
        if skipping:
            skipping = bool(line.strip())
            continue
        if line.startswith("Replayed "):
            break
        kept.append(line)
    return kept


def progress_bar(fixed: int, total: int, columns: int) -> str:
    label = f"  {fixed} of {total} fixed"
    width = max(10, min(50, columns - len(label) - 3))
    done = round(width * fixed / total) if total else 0
    return "[" + "#" * done + (">" if done < width else "") + "-" * max(0, width - done - 1) + "]" + label


class Watch:
    """One watch: what is on the screen, and what each key does."""

    def __init__(self, args: argparse.Namespace, spec: str, screen: Screen, keys: Keys):
        self.args, self.spec, self.screen, self.keys = args, spec, screen, keys
        self.root = space().root
        self.bug = catalogue.find(args.bug).slug if args.bug else None
        self.found = exercises.load(self.root)
        self.wild = exercises.find_wild(exercises.load_wild(self.root), spec) if args.impl else None
        self.slugs = [bug.slug for bug in self.wild.bugs] if self.wild else [e.bug.slug for e in self.found]
        self.announced: list[str] = []
        self.status = EXIT_OK
        self.verdict: dict | None = None  # the last verdict shown (its JSON)
        self.body: list[str] = []
        self.regressed: list[dict] = []
        self.heading = ""  # when the last run started, and why

    # -- Runs ----------------------------------------------------------------------------------

    def run(self, why: str, changed: list[Path] | None = None) -> bool:
        """Check the current exercise (and, after a save, those of the saved files done before); draw the
        screen. True when every exercise is fixed."""
        fixed_now: set[str] = set()
        while True:
            self.heading = f"--- {time.strftime('%H:%M:%S')}  {why}"
            self.screen.begin(self.heading)
            columns = self.screen.size()[0] if self.screen.terminal else None
            self.status, result = run_check([self.bug] if self.bug else [], self.args, columns=columns)
            if "error" in result and not result.get("verdicts"):
                self.verdict, self.regressed = None, []
                self.body = self._error(result["error"])
                self.draw()
                return False
            found = result.get("verdicts", [])
            if not found:
                return True
            self.verdict = found[0]
            # Code that does not load is the news of this save: the exercises done before say the same.
            loads = not self.verdict.get("error")
            self.regressed = self._regressions(changed or [], self.verdict["bug"], columns) if loads else []
            self.body = compact(self.verdict) if self.screen.terminal else verdicts.render(self.verdict, self.args)
            fixed = self.verdict.get("status") == FIXED
            if fixed and self.verdict["bug"] not in self.announced:
                self.announced.append(self.verdict["bug"])
            self.draw()
            if not fixed or self.screen.terminal:
                self.bug = self.verdict["bug"] if fixed else self.bug  # on a terminal, stay until n
                return False
            # Off a terminal nobody presses n: on to the next exercise, once per exercise.
            if self.verdict["bug"] in fixed_now:
                return False
            fixed_now.add(self.verdict["bug"])
            print("*** On to the next exercise.\n", flush=True)
            self.bug, why, changed = None, "the next exercise", None

    def _regressions(self, changed: list[Path], current: str, columns: int | None) -> list[dict]:
        """The exercises done before whose code is in a saved file and no longer holds."""
        if not changed:
            return []
        single = Path(resolve_spec(self.spec)).is_file()
        names = {path.name for path in changed}
        done = verdicts.place(self.spec).confirmed | set(self.announced)
        again = [bug.slug for bug in catalogue.BUGS if bug.slug in done and bug.slug != current
                 and bug.slug in self.slugs and (single or bug.module in names)]
        if not again:
            return []
        _, result = run_check(again, self.args, recheck=True, columns=columns)
        broken = [v for v in result.get("verdicts", []) if v.get("status") != FIXED]
        for verdict in broken:
            if verdict["bug"] in self.announced:
                self.announced.remove(verdict["bug"])
        return broken

    def _error(self, error: dict) -> list[str]:
        lines = [f"  {error.get('message', 'the check failed')}"]
        if error.get("detail"):
            lines += ["    " + line for line in error["detail"].splitlines()]
        return lines + ["  (still watching: fix it and save)"]

    # -- The screen ----------------------------------------------------------------------------

    def draw(self) -> None:
        columns = self.screen.size()[0] if self.screen.terminal else output.width()
        slug = self.verdict["bug"] if self.verdict else self.bug or ""
        body = [self.heading, *self.body] if self.screen.terminal and self.heading else self.body
        self.screen.draw(body, self.footer(columns), follow(self.args, "check", *([slug] if slug else [])))

    def footer(self, columns: int) -> list[str]:
        lines = [("-" * (columns - 1)) if self.screen.terminal else ""]
        verdict = self.verdict
        if verdict is not None:
            bug = catalogue.find(verdict["bug"])
            status = verdict.get("status") or (FIXED if verdict["fixed"] else "STILL BUGGY")
            figure = re.sub(r" \(found after exploring [^()]*\)$", "",
                            verdict["evidence"].removeprefix(f"{verdict['bug']}: "))
            mark = "*** " if status == FIXED else ""
            lines += wrap(f"{mark}{verdict_word(status)}: {bug.number}. {bug.slug}: {figure}", columns, "  ",
                          "")[:3]
        for other in self.regressed:
            bug = catalogue.find(other["bug"])
            lines += wrap(f"!!! {bug.number}. {bug.slug} was fixed and is {verdict_word(other['status'])} again "
                          f"after this save: {follow(self.args, 'check', bug.slug)}", columns, "  ", "")
        if self.screen.terminal:
            fixed = len(verdicts.place(self.spec).confirmed & set(self.slugs))
            lines += [progress_bar(fixed, len(self.slugs), columns),
                      KEYS_ON_FIXED if verdict is not None and verdict.get("status") == FIXED else KEYS]
        return lines

    def hint(self) -> None:
        from sessionlab.cli import learner

        text = io.StringIO()
        slug = self.verdict["bug"] if self.verdict else self.bug
        named = argparse.Namespace(bug=None if self.wild else slug, all=False, impl=self.args.impl if self.wild else None)
        with contextlib.redirect_stdout(text):
            learner.cmd_hint(named)
        self.body = text.getvalue().splitlines()
        self.draw()

    def listing(self) -> None:
        """The exercises as the checks left them (no new check: list judges them all, and takes longer)."""
        where = verdicts.place(self.spec)
        current = self.verdict["bug"] if self.verdict else where.current
        rows = [("", "#", "exercise", "status")]
        for bug in (catalogue.find(slug) for slug in self.slugs):
            state = "fixed" if bug.slug in where.confirmed else "current" if bug.slug == current else ""
            rows.append(("->" if bug.slug == current else "", str(bug.number), bug.slug, state))
        self.body = [f"Exercises in {self.args.impl or 'workspace/'}, as the checks left them "
                     f"(every check: {follow(self.args, 'list')}):", "", *table(rows, self.screen.size()[0])]
        self.draw()

    def done(self) -> int:
        total = len(self.slugs)
        lines = [f"All {total} exercises are fixed, each confirmed by its full check."]
        if self.announced:
            lines.append(f"Fixed while watching: {', '.join(self.announced)}.")
        lines.append(f"Compare your fixes with the reference: {follow(self.args, 'diff', 'BUG')}")
        print("\n".join(lines), flush=True)
        return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    here = space()
    if args.impl is None:
        here.require()
    spec = args.impl or str(here.path)
    screen = Screen()
    print("\n".join(wrap(f"Watching {args.impl or workspace.WORKSPACE + '/'}; the check reruns on every save. "
                         f"Stop with {'q or ' if screen.terminal else ''}Ctrl-C.", output.width())), flush=True)
    with Keys() as keys:
        watch = Watch(args, spec, screen, keys)
        files = lambda: watched_files(spec)  # noqa: E731
        seen = workspace.stamps(files())
        if watch.run("checking"):
            return watch.done()
        if args.once:
            return watch.status
        while True:
            key = keys.wait(args.interval)
            now = workspace.stamps(files())
            if now != seen:
                changed, seen = workspace.changed(seen, now), now
                if watch.run("saved: " + ", ".join(path.name for path in changed), changed):
                    return watch.done()
            elif key == "q":
                return EXIT_OK
            elif key == "r" or (key == "n" and watch.verdict and watch.verdict.get("status") == FIXED):
                if key == "n":
                    watch.bug = None
                if watch.run("the next exercise" if key == "n" else "checking again"):
                    return watch.done()
            elif key == "h":
                watch.hint()
            elif key == "l":
                watch.listing()
