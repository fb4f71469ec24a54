"""The commands that put the managers behind a web server: serve, load."""

from __future__ import annotations

import argparse
import errno
import os

from sessionlab.cli import output
from sessionlab.cli.common import EXIT_OK, EXIT_STILL_BUGGY, CommandError, default_spec, load, require, resolve_spec
from sessionlab.cli.output import Progress, print_json, table, verdict_word, wrap

WEB_MISSING = "the web demo needs Flask and waitress: pip install -e '.[web]'"


def _web():
    try:
        from sessionlab.web import load as load_module
        from sessionlab.web import server
    except ImportError:
        raise CommandError(WEB_MISSING) from None
    return server, load_module


def cmd_serve(args: argparse.Namespace) -> int:
    server, _ = _web()
    spec = args.impl or default_spec()
    require(load(spec), args)  # broken code: one line here, not a traceback in every worker
    try:
        store = server.Store.parse(args.store)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not server.loopback(args.host) and not args.public:
        raise CommandError(f"{args.host} is not a loopback address: the demo serves this machine only "
                           f"(add --public to serve other machines, knowing its bugs are real)")
    workers = args.workers if args.workers is not None else (1 if store.kind == server.MEMORY else 4)
    print(f"sessionlab serve: {spec} with the {store} store at http://{args.host}:{args.port}")
    print(f"  {workers} worker process{'es' if workers > 1 else ''} x {args.threads} threads")
    print("  routes: POST /login, GET and POST /api/data, POST /logout, GET /health")
    print(f"  load it from another terminal: sessionlab load --url http://{args.host}:{args.port}")
    print("\n".join(wrap(f"threads switch every {args.switch_interval:g} s, and before {args.noise:.0%} of the "
                         f"served code's lines: the lab's stress settings (--noise 0 --switch-interval 0.005 "
                         f"for CPython's own)", output.width(), "    ", "  ")))
    print("  Ctrl-C stops it.", flush=True)
    try:
        server.serve(resolve_spec(spec), store, host=args.host, port=args.port, workers=workers,
                     threads=args.threads, switch_interval=args.switch_interval, noise=args.noise)
    except (ValueError, RuntimeError) as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        why = "another program listens on it" if exc.errno == errno.EADDRINUSE else os.strerror(exc.errno or 0)
        raise CommandError(f"cannot listen on {args.host}:{args.port}: {why}") from None
    print("sessionlab serve: stopped")
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    _, load_module = _web()
    progress = Progress()
    shown = progress.rounds(f"{args.users} users x {args.tabs} tabs against {args.url}")
    try:
        report = load_module.run(args.url, users=args.users, requests=args.requests, tabs=args.tabs,
                                 seconds=args.seconds, progress=lambda done, total: shown(done, total))
    except load_module.LoadError as exc:
        raise CommandError(str(exc)) from None
    finally:
        progress.end()
    figures = report.figures()
    if args.json:
        print_json({"url": report.url, "users": report.users, "tabs": report.tabs,
                    "requests_per_user": report.requests,
                    "clean": report.clean, **figures})
        return EXIT_OK if report.clean else EXIT_STILL_BUGGY
    columns = output.width()
    print("\n".join(wrap(f"sessionlab load: {report.users} users, {report.tabs} tabs each, about "
                         f"{report.requests} requests per user, against {report.url}", columns)))
    print()
    rows = [("what users saw", "", ""),
            ("accesses lost", str(figures["accesses_lost"]), f"of {figures['reads']} reads counted by the server"),
            ("preferences lost", str(figures["preferences_lost"]),
             f"of {figures['preferences_saved']} saved, missing or changed at the end"),
            ("unexpected logouts", str(figures["unexpected_logouts"]), "401 before the user logged out"),
            ("users mixed up", str(figures["users_mixed_up"]), "users shown someone else's session"),
            ("errors", str(figures["errors"]),
             ", ".join(f"{kind} x{count}" for kind, count in figures["error_kinds"].items()) or "none")]
    print("\n".join(table(rows, columns)))
    print()
    print(f"  {figures['requests_made']} requests in {figures['seconds']} s: {figures['requests_per_second']} "
          f"requests/s; latency p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms")
    health = figures["health"]
    if report.health_status == 0:
        said = "no answer: the server is down or does not answer any more (deadlocked?)"
    else:
        said = (f"{report.health_status} {'healthy' if report.health_status == 200 else 'UNHEALTHY'}: "
                f"{health.get('active_sessions_reported')} active sessions reported, "
                f"{health.get('active_sessions_actual')} held, cleanup queue {health.get('cleanup_queue_size')}")
    print("\n".join(wrap(f"/health: {said}", columns, "    ", "  ")))
    print()
    word = "HOLDS" if report.clean else "BROKE"
    print(f"{verdict_word(word)}: " + ("users saw nothing wrong" if report.clean else
                                       "users saw what the table says"))
    return EXIT_OK if report.clean else EXIT_STILL_BUGGY


__all__ = ["cmd_serve", "cmd_load"]
