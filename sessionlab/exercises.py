"""The exercises: their order and hints (exercises/manifest.toml), and hint progress."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sessionlab import catalogue
from sessionlab.catalogue import Bug


class ManifestError(Exception):
    """exercises/manifest.toml is missing or does not match the catalogue."""


@dataclass(frozen=True)
class Exercise:
    bug: Bug
    folder: Path
    hints: tuple[str, ...]

    @property
    def readme(self) -> Path:
        return self.folder / "README.md"


def load(root: Path) -> tuple[Exercise, ...]:
    """Read the manifest; check that it lists every catalogue bug's exercise once."""
    path = root / "exercises" / "manifest.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: {exc}") from None
    exercises = []
    for entry in data.get("exercise", []):
        try:
            bug = catalogue.find(entry["bug"])
        except (KeyError, catalogue.UnknownBug) as exc:
            raise ManifestError(f"{path}: {exc}") from None
        folder = root / "exercises" / entry.get("folder", "")
        if folder != root / bug.exercise:
            raise ManifestError(f"{path}: {bug.slug} has folder {entry.get('folder')!r}, "
                                f"the catalogue says {bug.exercise}")
        hints = tuple(entry.get("hints", ()))
        if not hints:
            raise ManifestError(f"{path}: {bug.slug} has no hints")
        exercises.append(Exercise(bug, folder, hints))
    listed = [exercise.bug.slug for exercise in exercises]
    missing = [bug.slug for bug in catalogue.BUGS if bug.slug not in listed]
    if missing or len(set(listed)) != len(listed):
        raise ManifestError(f"{path} must list every bug once; missing {missing}, listed {listed}")
    return tuple(exercises)


def find(exercises: tuple[Exercise, ...], name: str) -> Exercise:
    bug = catalogue.find(name)
    return next(exercise for exercise in exercises if exercise.bug == bug)


class HintProgress:
    """How many hints of each exercise a learner has seen, kept in a small JSON file."""

    def __init__(self, path: Path):
        self.path = path

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        return {key: value for key, value in data.items() if isinstance(value, int)}

    def seen(self, slug: str) -> int:
        return self._read().get(slug, 0)

    def next_hint(self, exercise: Exercise) -> tuple[int, str]:
        """Record one more hint as seen; return its number (from 1) and its text."""
        progress = self._read()
        number = min(progress.get(exercise.bug.slug, 0) + 1, len(exercise.hints))
        progress[exercise.bug.slug] = number
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(progress, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return number, exercise.hints[number - 1]
