"""The race report: what broke, why in one sentence, and the interleaving step by step.

frontrun records every shared access of the execution that broke, and the lab
records the locks each thread took, released and waited for
(``sessionlab.engines.exploration``). The report groups them into source lines and
steps (what one thread ran before the scheduler switched), labels what each
line read or wrote and the values it saw, says in one sentence what went wrong
(derived from the accesses: two threads read the same state before either
wrote it back, say), and lays the steps out one column per thread, wrapped to
the terminal (``sessionlab.reports.text``).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from sessionlab.bug import Bug
from sessionlab.figure import Figure, plural
from sessionlab.reports.text import explain, interleaving, wrap
from sessionlab.reports.trace import Step


@dataclass(frozen=True)
class RaceReport:
    bug: Bug
    implementation: str
    scenario: Any  # the RaceScenario: its story and its workers' labels
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
    scope: str = ""  # what the search could see: "complete over the code of ...; not traced: ..."
    preemptions: int | None = None  # the search was complete under this preemption bound (None: no bound)
    budget: int | None = None  # the most executions the search could run (one that ran them all stopped there)

    @property
    def message(self) -> str:
        if self.held:
            extent = "every interleaving" if self.complete else "every interleaving explored"
            scope = f"; {self.scope}" if self.scope and self.complete else ""
            if self.complete and self.preemptions is not None:
                # Under a preemption bound the search prunes: a sample within the bound, not all of it.
                extent = f"a search bounded at {plural(self.preemptions, 'preemption')}"
                scope = scope.replace("complete over the code of", "over the code of")
            return f"{self.bug.slug}: {extent} holds ({self.explored} explored{scope})"
        return f"{self.bug.slug}: {self.headline} (found after exploring " \
               f"{plural(self.explored, 'interleaving')}, {self.implementation})"

    @property
    def headline(self) -> str:
        """The figure that broke, in words."""
        figure = self.figure
        if figure is not None and figure.summary:
            return figure.summary
        if figure is not None and "?" not in (figure.expected, figure.got):
            return f"expected {figure.expected}, got {figure.got}"
        first = self.explanation.strip().splitlines()[0] if self.explanation.strip() else ""
        return first or "an interleaving broke the scenario's invariant"

    @property
    def why(self) -> str:
        """One sentence: what went wrong between the threads, derived from their accesses."""
        sentence = explain(self.steps).sentence if self.steps else ""
        return sentence or getattr(self.scenario, "why", "") or self.conflict

    def text(self, width: int | None = None, verbose: bool = False) -> str:
        """The report a learner reads: what broke and why, then the interleaving.

        Lines inside helper calls that are not where the race is are folded
        into one line per call; ``verbose`` shows them.
        """
        width = width or max(80, min(140, shutil.get_terminal_size((80, 24)).columns))
        bug = self.bug
        lines = [*wrap(f"{bug.slug} (bug {bug.number}, {bug.bug_class}) on {self.implementation}: "
                       f"{'HOLDS' if self.held else 'BROKEN'}", width)]
        if self.held:
            budget = f" of {self.budget} executions" if self.budget else ""
            extent = ("the search was complete: every meaningfully different interleaving was run, "
                      + (self.scope or f"over the code of {self.implementation}")
                      if self.complete else f"the search stopped at its budget{budget}")
            if self.complete and self.preemptions is not None:
                extent = (f"the search was complete up to {plural(self.preemptions, 'preemption')}: every "
                          f"interleaving in which threads are interrupted at most "
                          f"{'once' if self.preemptions == 1 else f'{self.preemptions} times'} was run, "
                          f"{self.scope}; a search of every interleaving, through the framework's code, "
                          f"would take too long")

            lines += wrap(f"All {plural(self.explored, 'interleaving')} explored hold ({extent}).", width, "  ")
            lines += ["", *self._scenario(width)]
            return "\n".join(lines)
        lines += wrap(_sentence(self.headline), width, "  ")
        if self.why:
            lines += wrap(f"Why: {_sentence(self.why)}", width, "  ", "       ")
        if self.figure is not None and self.figure.history:  # what the store saw: a server's commands
            lines += ["", *self.figure.history.splitlines()]
        lines += ["", *self._scenario(width)]
        lines += wrap(f"Found after exploring {plural(self.explored, 'interleaving')} ({self.seconds:.2f} s).",
                      width)
        lines.append("")
        if self.steps:
            lines += interleaving(self.steps, self.scenario.workers, width, verbose)
        else:
            lines += [part for line in self.explanation.splitlines() for part in wrap(line, width)]
        lines.append("")
        successes, attempts = self.reproduced
        if attempts:
            lines += wrap(f"Replayed {successes} of {attempts} times with the same outcome.", width)
        lines += wrap(f"Replay: sessionlab race {bug.slug} --impl {self.implementation}  (the search is "
                      f"deterministic: it finds this interleaving again)", width, "", "  ")
        return "\n".join(lines)

    def _scenario(self, width: int) -> list[str]:
        lines = wrap(f"Scenario: {_sentence(self.scenario.story)}", width)
        for n, worker in enumerate(self.scenario.workers):
            lines += wrap(f"thread {n}: {worker.label}", width, "  ", "    ")
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "bug": self.bug.slug,
            "implementation": self.implementation,
            "held": self.held,
            "explored": self.explored,
            "complete": self.complete,
            "seconds": round(self.seconds, 3),
            "scope": self.scope,
            "figure": None if self.figure is None else vars(self.figure),
            "headline": None if self.held else self.headline,
            "why": None if self.held else self.why,
            "racing": sorted(explain(self.steps).names) if self.steps else [],
            "steps": [
                {"thread": step.thread, "lines": [
                    {"location": line.location, "source": line.source, "accesses": list(line.accesses),
                     "values": [access.shown for access in line.touched],
                     "locks": [str(op) for op in line.locks], "function": line.function,
                     "calls": list(line.calls)}
                    for line in step.lines
                ]}
                for step in self.steps
            ],
            "locks": [
                {"step": number, "thread": step.thread, "location": line.location, "op": op.op,
                 "lock": op.lock, "holder": op.holder, "text": str(op)}
                for number, step in enumerate(self.steps, 1) for line in step.lines for op in line.locks
            ],
            "conflict": self.conflict,
            "reproduced": {"successes": self.reproduced[0], "attempts": self.reproduced[1]},
            "schedule": list(self.schedule),
            "message": self.message,
        }


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."
