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


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
