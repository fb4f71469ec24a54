"""The command that measures the price of correctness: bench."""

from __future__ import annotations

import argparse

from sessionlab import bench
from sessionlab.cli import output
from sessionlab.cli.common import EXIT_OK, CommandError, load, require, space
from sessionlab.cli.output import Progress, print_json, table, wrap


def cmd_bench(args: argparse.Namespace) -> int:
    specs = args.impl or ["buggy", "fixed"] + (["workspace"] if space().exists else [])
    for spec in specs:
        require(load(spec), args)  # broken code: one line, before any timing
    resolved = [str(space().path) if spec == "workspace" else spec for spec in specs]
    unknown = [name for name in args.workloads if name not in bench.WORKLOADS]
    if unknown:
        raise CommandError(f"no workload {unknown[0]!r}; the workloads are {', '.join(bench.WORKLOADS)}")
    progress = Progress()
    shown = progress.rounds("timing " + ", ".join(specs))
    try:
        figures = bench.measure(resolved, workloads=tuple(args.workloads), threads=tuple(args.threads),
                                repeats=args.repeats, operations=args.operations, progress=lambda done, total: shown(done, total))
    finally:
        progress.end()
    names = list(dict.fromkeys(f.implementation for f in figures))
    label = dict(zip(resolved, specs))  # the working copy's path, as the learner calls it
    shown_names = [label.get(name, name) for name in names]
    if args.json:
        print_json([{"workload": f.workload, "threads": f.threads, "implementation": shown_names[names.index(
            f.implementation)], "ops_per_second": round(f.ops_per_second), "runs": [round(r) for r in f.runs]}
            for f in figures])
        return EXIT_OK
    columns = output.width()
    print("\n".join(wrap(f"sessionlab bench: operations per second, the median of {args.repeats} interleaved "
                         f"runs of {args.operations} operations each; fixed / buggy is the price of "
                         f"correctness (1.00: none).", columns)))
    print()
    header = ("workload", "threads", *shown_names, "fixed / buggy" if {"buggy", "fixed"} <= set(names) else "")
    print("\n".join(table([header, *bench.rows(figures, names)], columns)))
    return EXIT_OK


__all__ = ["cmd_bench"]
