"""What a check measured: the figure a learner reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """What one check, round or execution measured."""

    held: bool
    expected: str
    got: str
    summary: str  # one sentence a learner can read: the figure and what it means
    history: str = ""  # when the recorded history was not linearizable: the checker's account


class Broken(Exception):
    """Raised by a check that found its figure broken; caught where the check is run, into a Figure."""

    def __init__(self, summary: str, expected: str = "the contract", got: str = "broken"):
        super().__init__(summary)
        self.summary, self.expected, self.got = summary, expected, got

    def figure(self) -> Figure:
        return Figure(False, self.expected, self.got, self.summary)


def expect(holds: bool, summary: str, expected: str = "the contract", got: str = "broken") -> None:
    """Raise Broken with the summary unless holds."""
    if not holds:
        raise Broken(summary, expected, got)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
