"""Deterministic exploration of thread interleavings, one scenario per race bug.

Each scenario is a setup (a fresh manager and a session), two or three small
workers, and a check of the final state that returns the scenario's figure.
The frontrun library runs the workers under a scheduler it controls and
explores every meaningfully different interleaving (dynamic partial order
reduction over the shared reads, writes and lock operations it observes).
The lab turns frontrun's result into its own report: the bug, the interleaving
step by step with one column per thread, the figure that broke, and how many
interleavings were explored.

On ``buggy`` the search finds the bad interleaving on every run: it is
deterministic, so the same command finds the same interleaving again. On
``fixed`` it runs to completion (no preemption bound) and every interleaving
holds. Stress tests in the same process keep real locks: frontrun's cooperative
locks are patched in only while an exploration runs.
"""

from __future__ import annotations

import linecache
import shutil
import textwrap
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sessionlab import catalogue
from sessionlab.api import SessionNotFound
from sessionlab.catalogue import Bug
from sessionlab.impls import Implementation
from sessionlab.stress import Figure, plural, render

# Enough for a complete search of every scenario here on fixed; reported if reached.
MAX_EXECUTIONS = 20_000

# Only one exploration may run at a time in a process: the scheduler patches
# process-wide locks while it runs.
_exploring = threading.Lock()


class FrontrunUnavailable(RuntimeError):
    """frontrun is not installed, or has no build for this platform."""


def frontrun_available() -> tuple[bool, str]:
    """Whether deterministic exploration can run here, and if not, why not (one line)."""
    try:
        import frontrun  # noqa: F401
    except ImportError as exc:
        return False, (
            f"deterministic exploration needs the frontrun library ({exc}); it ships builds "
            "for Linux and Apple-silicon macOS: pip install -e '.[test]'"
        )
    return True, ""


# -- Scenarios ------------------------------------------------------------------


@dataclass
class State:
    """What the workers of one execution share: a manager, a session, what they saw."""

    manager: Any
    session_id: str
    seen: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Worker:
    label: str  # what this thread does, as the report's column heading
    run: Callable[[State], None]


@dataclass(frozen=True)
class RaceScenario:
    bug: Bug
    story: str  # one sentence: what the threads do
    workers: tuple[Worker, ...]
    check: Callable[[State], Figure]
    metadata: tuple[tuple[str, str], ...] = ()  # stored in the session before the workers start

    def setup(self, implementation: Implementation) -> State:
        manager = implementation.new_manager(clock=lambda: 1_700_000_000.0)
        session_id = manager.create_session("user-1", "Ada")
        for key, value in self.metadata:
            manager.update_session(session_id, key, value)
        return State(manager, session_id)


def _update(key: str, value: str) -> Worker:
    def update(state: State) -> None:
        state.manager.update_session(state.session_id, key, value)

    return Worker(f"update_session(s, {key!r}, {value!r})", update)


def _check_lost_updates(state: State) -> Figure:
    now = dict(state.manager.get_session(state.session_id).metadata)
    wanted = {"cart": "3 books", "theme": "dark"}
    shown = ", ".join(f"{key}={now.get(key)!r}" for key in wanted)
    lost = [key for key, value in wanted.items() if now.get(key) != value]
    if not lost:
        return Figure(True, "cart='3 books', theme='dark'", shown, "both updates were kept")
    return Figure(False, "cart='3 books', theme='dark'", shown,
                  f"one request set cart to '3 books', the other set theme to 'dark'; the session holds "
                  f"{shown}: the update of {' and '.join(lost)} was lost")


def _increment(state: State) -> None:
    state.seen.setdefault("returned", []).append(state.manager.increment_access(state.session_id))


def _check_lost_increments(state: State) -> Figure:
    count = state.manager.get_session(state.session_id).access_count
    returned = sorted(state.seen.get("returned", []))
    if count == 2:
        return Figure(True, "2", str(count), "expected 2, counted 2")
    return Figure(False, "2", str(count),
                  f"expected 2, counted {count} ({2 - count} lost); the two calls returned {returned}")


def _logout(tab: int) -> Worker:
    def logout(state: State) -> None:
        try:
            state.manager.delete_session(state.session_id)
        except SessionNotFound:
            state.seen[f"tab {tab}"] = "SessionNotFound"
        else:
            state.seen[f"tab {tab}"] = "logged out"

    return Worker(f"delete_session(s)  [tab {tab}]", logout)


def _check_stats_drift(state: State) -> Figure:
    stats = state.manager.get_stats()
    actual = state.manager.get_active_count()
    succeeded = sum(1 for outcome in state.seen.values() if outcome == "logged out")
    if stats.active_sessions == actual and succeeded == 1:
        return Figure(True, f"{actual} active", f"{stats.active_sessions} active",
                      "one logout succeeded, the other found no session; stats agree with the store")
    return Figure(False, f"{actual} active", f"{stats.active_sessions} active",
                  f"both logouts succeeded; get_stats() reports {stats.active_sessions} active sessions, "
                  f"the store holds {actual} (discrepancy {stats.active_sessions - actual:+d})")


def _login(user: str) -> Worker:
    def login(state: State) -> None:
        state.seen[user] = state.manager.create_session(user, user)

    return Worker(f"create_session({user!r}, ...)", login)


def _check_id_collision(state: State) -> Figure:
    ids = {user: sid for user, sid in state.seen.items()}
    owners = {user: state.manager.get_session(sid).user_id for user, sid in ids.items()}
    if len(set(ids.values())) == len(ids) and all(owners[user] == user for user in ids):
        return Figure(True, "2 distinct ids", "2 distinct ids", "each login got its own id")
    (first, shared), (second, _) = sorted(ids.items())
    return Figure(False, "2 distinct ids", f"{len(set(ids.values()))} distinct id",
                  f"{first} and {second} were both given session id {shared}; it now belongs to "
                  f"{owners[first]}, so the other user is logged in as someone else")


def _read_and_render(state: State) -> None:
    try:
        snapshot = state.manager.get_session(state.session_id)
    except SessionNotFound:
        return  # logged out before the page was read: nothing to render
    state.seen["snapshot"] = snapshot
    state.seen["rendered"] = render(snapshot.metadata)


def _logout_only(state: State) -> None:
    state.manager.delete_session(state.session_id)


def _check_shared_snapshot(state: State) -> Figure:
    if "snapshot" not in state.seen:
        return Figure(True, "unchanged", "not read", "the logout came first; there was no snapshot to render")
    before = state.seen["rendered"].count("<tr>")
    after = render(state.seen["snapshot"].metadata).count("<tr>")
    if after == before:
        return Figure(True, f"{before} rows", f"{after} rows", "the snapshot rendered the same after logout")
    return Figure(False, f"{before} rows", f"{after} rows",
                  f"the page read the session and rendered {before} rows; after the logout in another tab "
                  f"the same snapshot renders {after} rows: get_session handed out live data, not a snapshot")


SCENARIOS: dict[str, RaceScenario] = {
    scenario.bug.slug: scenario
    for scenario in (
        RaceScenario(
            catalogue.find("lost-updates"),
            "two requests each change a different key of the same session",
            (_update("cart", "3 books"), _update("theme", "dark")),
            _check_lost_updates,
            metadata=(("cart", "empty"), ("theme", "light")),
        ),
        RaceScenario(
            catalogue.find("lost-increments"),
            "two requests each count one access to the same session",
            (Worker("increment_access(s)", _increment), Worker("increment_access(s)", _increment)),
            _check_lost_increments,
        ),
        RaceScenario(
            catalogue.find("stats-drift"),
            "the user clicks logout in two tabs at once",
            (_logout(1), _logout(2)),
            _check_stats_drift,
            metadata=(("cart", "3 books"),),
        ),
        RaceScenario(
            catalogue.find("id-collision"),
            "two users log in at the same moment",
            (_login("alice"), _login("bob")),
            _check_id_collision,
        ),
        RaceScenario(
            catalogue.find("shared-snapshot"),
            "a page reads the session and renders its cart while the user logs out in another tab",
            (Worker("get_session(s), render", _read_and_render), Worker("delete_session(s)", _logout_only)),
            _check_shared_snapshot,
            metadata=(("cart", "3 books"), ("theme", "dark")),
        ),
    )
}


# -- The report -----------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One source line a thread ran, with the shared state it touched."""

    location: str  # file:line
    source: str
    accesses: tuple[str, ...]  # e.g. "write _Record.access_count", "dict.pop() writes"


@dataclass(frozen=True)
class Step:
    """A run of lines one thread ran before the scheduler switched to another."""

    thread: int
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class RaceReport:
    bug: Bug
    implementation: str
    scenario: RaceScenario
    held: bool
    explored: int
    complete: bool  # the search ran out of interleavings, not out of budget
    seconds: float
    figure: Figure | None = None  # the broken figure, when an interleaving broke
    steps: tuple[Step, ...] = ()
    conflict: str = ""  # frontrun's one-line account of the conflict
    reproduced: tuple[int, int] = (0, 0)  # (successes, attempts) replaying the schedule
    schedule: tuple[int, ...] = ()
    explanation: str = ""  # frontrun's own explanation, verbatim

    @property
    def message(self) -> str:
        if self.held:
            extent = "every interleaving" if self.complete else "every interleaving explored"
            return f"{self.bug.slug}: {extent} holds ({self.explored} explored, {self.implementation})"
        assert self.figure is not None
        return (f"{self.bug.slug}: {self.figure.summary} (found after exploring "
                f"{plural(self.explored, 'interleaving')}, {self.implementation})")

    def text(self, width: int | None = None) -> str:
        """The report a learner reads: the bug, the interleaving, the figure."""
        width = width or max(80, min(140, shutil.get_terminal_size((100, 24)).columns))
        bug = self.bug
        lines = [f"{bug.slug} (bug {bug.number}, {bug.bug_class}) on {self.implementation}"]
        lines.append(f"Scenario: {self.scenario.story}.")
        lines += [f"  thread {n}: {worker.label}" for n, worker in enumerate(self.scenario.workers)]
        lines.append("")
        if self.held:
            extent = ("the search was complete: every meaningfully different interleaving was run"
                      if self.complete else f"the search stopped at its budget of {MAX_EXECUTIONS} executions")
            lines.append(f"HOLDS: all {plural(self.explored, 'interleaving')} explored hold ({extent}).")
            return "\n".join(lines)
        assert self.figure is not None
        lines.append(f"BROKEN after exploring {plural(self.explored, 'interleaving')} ({self.seconds:.2f} s).")
        lines.append(f"Expected: {self.figure.expected}    Got: {self.figure.got}")
        lines.append(textwrap.fill(self.figure.summary, width, initial_indent="  ", subsequent_indent="  "))
        lines.append("")
        if self.steps:
            lines.append("The interleaving: each step is what one thread ran before the scheduler switched")
            lines.append("threads; shared state each line touched is in brackets.")
            lines.append("")
            lines += _columns(self.steps, self.scenario.workers, width)
        else:
            lines.append(self.explanation)
        lines.append("")
        successes, attempts = self.reproduced
        replay = f"sessionlab race {bug.slug} --impl {self.implementation}"
        if attempts:
            lines.append(f"Replayed {successes} of {attempts} times with the same outcome.")
        lines.append(f"Replay: {replay}  (the search is deterministic: it finds this interleaving again)")
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {
            "bug": self.bug.slug,
            "implementation": self.implementation,
            "held": self.held,
            "explored": self.explored,
            "complete": self.complete,
            "seconds": round(self.seconds, 3),
            "figure": None if self.figure is None else vars(self.figure),
            "steps": [
                {"thread": step.thread, "lines": [
                    {"location": line.location, "source": line.source, "accesses": list(line.accesses)}
                    for line in step.lines
                ]}
                for step in self.steps
            ],
            "conflict": self.conflict,
            "reproduced": {"successes": self.reproduced[0], "attempts": self.reproduced[1]},
            "schedule": list(self.schedule),
            "message": self.message,
        }


def _columns(steps: tuple[Step, ...], workers: tuple[Worker, ...], width: int) -> list[str]:
    threads = len(workers)
    column = max(36, (width - 6) // threads)
    files = {line.location.rsplit(":", 1)[0] for step in steps for line in step.lines}
    one_file = files.pop() if len(files) == 1 else None
    heading = "step  " + "".join(f"thread {n}: {worker.label}"[: column - 2].ljust(column)
                                 for n, worker in enumerate(workers))
    lines = [f"(line numbers of {one_file})"] if one_file else []
    lines += [heading.rstrip(), ("-" * (6 + column * threads))[:width]]
    for number, step in enumerate(steps, 1):
        indent = " " * (column * step.thread)
        for row, line in enumerate(step.lines):
            location = line.location.rsplit(":", 1)[1].rjust(3) if one_file else line.location
            cells = [f"{location}  {line.source}"] + [f"       [{access}]" for access in line.accesses]
            for offset, cell in enumerate(cells):
                if len(cell) > column - 1 and step.thread < threads - 1:
                    cell = cell[: column - 4] + "..."
                prefix = f"{number:>4}  " if row == 0 and offset == 0 else "      "
                lines.append((prefix + indent + cell).rstrip())
    return lines


# Container methods that change their container, for labelling what a line wrote.
_MUTATORS = frozenset({
    "append", "appendleft", "extend", "insert", "pop", "popleft", "popitem", "remove",
    "clear", "update", "setdefault", "add", "discard",
})
_CONTAINERS = frozenset({"dict", "list", "deque", "set"})


def build_steps(events: list[Any], module: Any) -> tuple[Step, ...]:
    """Turn frontrun's recorded events into steps: source lines grouped by thread.

    Only lines in the implementation's own files are kept. Method lookups are
    left out; attribute and key reads and writes are kept, and a call of a
    container method that changes the container is shown as a write.
    """
    files = _source_files_of(module)
    classes = {name: getattr(module, name, None) for name in dir(module)}
    for submodule in _submodules(module):
        classes.update({name: getattr(submodule, name) for name in dir(submodule)})
    lines: list[tuple[int, str, int, list[Any]]] = []  # thread, file, line number, events
    for event in events:
        filename = getattr(event, "filename", "") or ""
        if filename.startswith("<") or Path(filename).name not in files:
            continue
        key = (event.thread_id, filename, event.lineno)
        if not lines or lines[-1][:3] != key:
            lines.append((*key, []))
        lines[-1][3].append(event)
    steps: list[Step] = []
    for thread, filename, number, line_events in lines:
        source = linecache.getline(filename, number).strip()
        accesses = () if source.startswith("with ") else _describe_accesses(line_events, classes)
        line = Line(f"{Path(filename).name}:{number}", source, accesses)
        if steps and steps[-1].thread == thread:
            steps[-1] = Step(thread, steps[-1].lines + (line,))
        else:
            steps.append(Step(thread, (line,)))
    return tuple(steps)


def _describe_accesses(events: list[Any], classes: dict[str, Any]) -> tuple[str, ...]:
    """Label what one line read and wrote, e.g. "read SessionManager._sessions['s1']"."""
    labels: list[str] = []
    holder = ""  # the attribute just read, if the next access is to its contents
    for event in events:
        kind, owner, attr = event.access_type, event.obj_type_name, event.attr_name
        if kind is None or owner is None or attr is None:
            continue
        if owner in _CONTAINERS:
            target = holder or owner
            if hasattr(_CONTAINER_TYPES[owner], attr):
                if attr in _MUTATORS:
                    label = f"{target}.{attr}() writes"
                else:
                    label = f"{target}.{attr}() reads"
            else:
                label = f"{kind} {target}[{attr!r}]"
            if holder and labels and labels[-1] == f"read {holder}":
                labels.pop()
            holder = ""
        else:
            cls = classes.get(owner)
            if not isinstance(cls, type) or callable(getattr(cls, attr, None)):
                holder = ""
                continue  # a method lookup, or state that is not the implementation's own
            label = f"{kind} {owner}.{attr}"
            holder = f"{owner}.{attr}" if kind == "read" else ""
        if label not in labels:
            labels.append(label)
    return tuple(labels)


_CONTAINER_TYPES: dict[str, type] = {"dict": dict, "list": list, "set": set, "deque": deque}


def _submodules(module: Any) -> list[Any]:
    import sys

    prefix = module.__name__ + "."
    return [m for name, m in list(sys.modules.items()) if name.startswith(prefix) and m is not None]


def _source_files_of(module: Any) -> frozenset[str]:
    origin = Path(getattr(module, "__file__", "") or "")
    if origin.name == "__init__.py":
        return frozenset(path.name for path in origin.parent.glob("*.py"))
    return frozenset({origin.name})


# -- Exploring --------------------------------------------------------------------


@dataclass(frozen=True)
class Exploration:
    """What one exploration of some workers found."""

    held: bool
    explored: int
    complete: bool  # the search ran out of interleavings, not out of budget
    seconds: float
    steps: tuple[Step, ...] = ()  # the interleaving that broke, line by line
    explanation: str = ""  # frontrun's own account of it
    reproduced: tuple[int, int] = (0, 0)
    schedule: tuple[int, ...] = ()


def explore_workers(
    implementation: Implementation,
    setup: Callable[[], Any],
    workers: list[Callable[[Any], None]],
    invariant: Callable[[Any], bool],
    *,
    replays: int = 3,
) -> Exploration:
    """Run workers on a fresh setup() under every interleaving, until invariant fails.

    The search has no preemption bound, so when it holds it has run every
    meaningfully different interleaving (up to MAX_EXECUTIONS).
    """
    ok, why = frontrun_available()
    if not ok:
        raise FrontrunUnavailable(why)
    import frontrun
    from frontrun._cooperative import patch_locks, unpatch_locks

    module = implementation.module.__name__.split(".")[0]
    started = time.perf_counter()
    events: list[Any] = []
    with _exploring, _capturing_trace(events):
        patch_locks()  # lets explore() run without the frontrun command-line wrapper
        try:
            result = frontrun.explore(
                setup=setup,
                workers=workers,
                invariant=invariant,
                stop_on_first=True,
                preemption_bound=None,
                max_executions=MAX_EXECUTIONS,
                detect_io=False,
                reproduce_on_failure=replays,
                trace_packages=[module, f"{module}.*"],
            )
        finally:
            unpatch_locks()
    seconds = time.perf_counter() - started
    if result.property_holds is None:
        raise RuntimeError(f"the exploration was inconclusive: {result.inconclusive_reason}")
    if result.property_holds:
        return Exploration(True, result.num_explored, result.num_explored < MAX_EXECUTIONS, seconds)
    return Exploration(
        False, result.num_explored, False, seconds,
        steps=build_steps(events, implementation.module),
        explanation=result.explanation or "",
        reproduced=(result.reproduction_successes, result.reproduction_attempts),
        schedule=tuple(result.counterexample or ()),
    )


def explore(slug: str, implementation: Implementation) -> RaceReport:
    """Explore a race bug's scenario on an implementation; report what was found."""
    bug = catalogue.find(slug)
    if bug.slug not in SCENARIOS:
        races = ", ".join(SCENARIOS)
        raise KeyError(f"{bug.slug} is not a race, so it has no interleaving to explore (races: {races})")
    scenario = SCENARIOS[bug.slug]
    figures: list[Figure] = []

    def invariant(state: State) -> bool:
        figure = scenario.check(state)
        if not figure.held:
            figures.append(figure)
        return figure.held

    found = explore_workers(implementation, lambda: scenario.setup(implementation),
                            [worker.run for worker in scenario.workers], invariant)
    if found.held:
        return RaceReport(bug, implementation.name, scenario, True, found.explored, found.complete, found.seconds)
    first_line = found.explanation.splitlines()[0] if found.explanation else "broke"
    conflict = next((line.strip() for line in found.explanation.splitlines()[1:] if line.strip()), "")
    return RaceReport(
        bug, implementation.name, scenario, False, found.explored, False, found.seconds,
        figure=figures[0] if figures else Figure(False, "?", "?", first_line),
        steps=found.steps, conflict=conflict, reproduced=found.reproduced,
        schedule=found.schedule, explanation=found.explanation,
    )


@contextmanager
def _capturing_trace(sink: list[Any]) -> Iterator[None]:
    """Keep the events frontrun recorded for the failing execution.

    frontrun explains a failure from the shared accesses it saw conflict; the lab
    shows every line the threads ran, so it keeps the whole event list.
    """
    try:
        from frontrun._dpor_runtime import explore as dpor_explore
        original = dpor_explore.format_trace
    except (ImportError, AttributeError):
        yield  # another frontrun layout: the report falls back to frontrun's explanation
        return

    def format_trace(events: list[Any], **options: Any) -> str:
        sink[:] = list(events)
        return original(events, **options)

    dpor_explore.format_trace = format_trace
    try:
        yield
    finally:
        dpor_explore.format_trace = original
