"""The command that measures the price of correctness: bench."""

from __future__ import annotations

import argparse

from sessionlab.bench import throughput
from sessionlab.cli import output
from sessionlab.cli.common import EXIT_OK, CommandError, load, require, space
from sessionlab.cli.output import Progress, print_json, table, wrap


def cmd_bench(args: argparse.Namespace) -> int:
    specs = args.impl or ["buggy", "fixed"] + (["workspace"] if space().exists else [])
    for spec in specs:
        require(load(spec), args)  # broken code: one line, before any timing
    resolved = [str(space().path) if spec == "workspace" else spec for spec in specs]
    unknown = [name for name in args.workloads if name not in throughput.WORKLOADS]
    if unknown:
        raise CommandError(f"no workload {unknown[0]!r}; the workloads are {', '.join(throughput.WORKLOADS)}")
    progress = Progress()
    shown = progress.rounds("timing " + ", ".join(specs))
    try:
        figures = throughput.measure(resolved, workloads=tuple(args.workloads), threads=tuple(args.threads),
                                     repeats=args.repeats, operations=args.operations,
                                     progress=lambda done, total: shown(done, total))
    finally:
        progress.end()
    names = list(dict.fromkeys(f.implementation for f in figures))
    label = dict(zip(resolved, specs))  # the working copy's path, as the learner calls it
    shown_names = [label.get(name, name) for name in names]
    extra = _full(specs, resolved) if args.full else {}
    if args.json:
        print_json({"operations": [{"workload": f.workload, "threads": f.threads,
                                    "implementation": shown_names[names.index(f.implementation)],
                                    "ops_per_second": round(f.ops_per_second), "runs": [round(r) for r in f.runs]}
                                   for f in figures], **extra})
        return EXIT_OK
    columns = output.width()
    print("\n".join(wrap(f"sessionlab bench: operations per second, the median of {args.repeats} interleaved "
                         f"runs of {args.operations} operations each; fixed / buggy is the price of "
                         f"correctness (1.00: none).", columns)))
    print()
    header = ("workload", "threads", *shown_names, "fixed / buggy" if {"buggy", "fixed"} <= set(names) else "")
    print("\n".join(table([header, *throughput.rows(figures, names)], columns)))
    if extra:
        _print_full(extra, columns)
    return EXIT_OK


def _full(specs: list[str], resolved: list[str]) -> dict:
    """The other costs, per implementation (see sessionlab.bench.costs)."""
    from sessionlab import implementations
    from sessionlab.bench import costs

    progress = Progress()
    found: dict = {"memory_bytes_per_deleted_session": {}, "exploration_seconds": {},
                   "linearizability_ms_per_1000_calls": {}, "http_requests_per_second": {}}
    try:
        for spec, path in zip(specs, resolved):
            implementation = implementations.load(path)
            progress.phase(f"memory per deleted session on {spec} ({costs.MEMORY_CYCLES:,} cycles)")
            found["memory_bytes_per_deleted_session"][spec] = round(
                costs.memory_per_deleted_session(implementation.new_manager), 1)
            progress.phase(f"exploration time per bug on {spec}")
            found["exploration_seconds"][spec] = {slug: round(seconds, 3) for slug, seconds in
                                                  costs.exploration_seconds(implementation).items()}
            if spec != "buggy":  # buggy's histories are not linearizable: nothing to time
                progress.phase(f"the linearizability check on {spec}")
                found["linearizability_ms_per_1000_calls"][spec] = round(
                    1000 * costs.linearizability_seconds_per_1000_calls(implementation.new_manager), 2)
        try:
            progress.phase("requests per second over HTTP")
            apps = [(spec, costs.served(path)) for spec, path in zip(specs, resolved)]
            found["http_requests_per_second"] = costs.http_requests_per_second(
                apps + [("plain Flask, cookie session", costs.PLAIN_FLASK)])
        except ImportError:
            found["http_requests_per_second"] = {"(skipped)": "the web extra is not installed"}
    finally:
        progress.end()
    return found


def _print_full(extra: dict, columns: int) -> None:
    print()
    print("Memory still held per deleted session, after 100,000 logins and logouts (each stored a key):")
    print("\n".join(table([(name, f"{value:g} bytes") for name, value in
                           extra["memory_bytes_per_deleted_session"].items()], columns)))
    print()
    print("Exploring each race scenario (median of 3): on buggy/ until the bad interleaving, on fixed/ every one:")
    specs = list(extra["exploration_seconds"])
    slugs = list(next(iter(extra["exploration_seconds"].values()), {}))
    print("\n".join(table([("bug", *specs)] + [(slug, *(f"{extra['exploration_seconds'][s][slug]:.2f} s"
                                                        for s in specs)) for slug in slugs], columns)))
    print()
    print("The linearizability check, per 1,000 calls of a recorded 4-thread history (median of 5):")
    print("\n".join(table([(name, f"{value:g} ms") for name, value in
                           extra["linearizability_ms_per_1000_calls"].items()], columns)))
    print()
    print("Requests per second over HTTP, 20 users x 2 tabs, CPython's own switch interval (median of 3):")
    print("\n".join(table([(name, f"{value:,.0f}" if isinstance(value, float) else str(value))
                           for name, value in extra["http_requests_per_second"].items()], columns)))


__all__ = ["cmd_bench"]
