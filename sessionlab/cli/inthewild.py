"""The command that finds the track-1 bugs in stores on real frameworks: wild."""

from __future__ import annotations

import argparse

from sessionlab.cli import output
from sessionlab.cli.common import EXIT_OK, CommandError
from sessionlab.cli.output import Progress, print_json, table, wrap
from sessionlab.judge import wild


def cmd_wild(args: argparse.Namespace) -> int:
    ok, why = wild.available()
    if not ok:
        raise CommandError(why, kind="implementation")
    variants = ("buggy",) if args.buggy_only else ("buggy", "fixed")
    progress = Progress()
    try:
        found = wild.findings(variants, progress=progress.phase)
    finally:
        progress.end()
    if args.json:
        print_json({"findings": [{"store": f"{f.variant}/wild/{f.store}.py", "bug": f.bug.slug, "has": f.has,
                                  "evidence": f.evidence, "detail": f.detail} for f in found],
                    "markdown": wild.markdown(found)})
        return EXIT_OK
    if args.markdown:
        print(wild.markdown(found))
        return EXIT_OK
    columns = output.width()
    print("\n".join(wrap("Which of the six track-1 bugs each store on a real framework has: each bug's own "
                         "scenario, explored with the framework's code traced, and its single-thread checks. "
                         "buggy/wild is written the way applications use the framework; fixed/wild adds the "
                         "fixes an application can make on top of it.", columns)))
    print()
    print("\n".join(text_table(found, columns)))
    print()
    for f in found:
        if f.has:
            print("\n".join(wrap(f"{f.variant}/wild/{f.store}.py has {f.bug.slug}: {f.evidence}", columns,
                                 "    ", "  ")))
    return EXIT_OK


def text_table(found: list[wild.Finding], columns: int) -> list[str]:
    """wild's table for a terminal: a bug's number stays with its name, and the stores are named without
    .py, so that four stores fit 80 columns."""
    header, *rows = wild.table(found)
    header = [header[0]] + [cell.replace(".py (", " (") for cell in header[1:]]
    rows = [[row[0].replace(". ", "." + output.GLUE, 1), *row[1:]] for row in rows]
    return table([header, *rows], columns)
