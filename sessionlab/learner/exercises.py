"""The exercises: their order and hints (exercises/manifest.toml), hint progress, where a learner is."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sessionlab import catalogue
from sessionlab.bug import Bug


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


def _manifest(root: Path) -> tuple[Path, dict]:
    """exercises/manifest.toml: where it is, and what it holds."""
    path = root / "exercises" / "manifest.toml"
    try:
        return path, tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path} is missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def load(root: Path) -> tuple[Exercise, ...]:
    """Read the manifest; check that it lists every catalogue bug's exercise once."""
    path, data = _manifest(root)
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


@dataclass(frozen=True)
class WildExercise:
    """Track 3: fix a store on a real framework (buggy/wild/STORE.py) in the application's code."""

    store: str  # the file's name in buggy/wild and fixed/wild, without .py: django_cache
    folder: Path
    bugs: tuple[Bug, ...]  # the track-1 bugs the store has
    hints: tuple[str, ...]

    @property
    def slug(self) -> str:
        """Its name for hints and progress: wild/django_cache."""
        return f"wild/{self.store}"

    @property
    def readme(self) -> Path:
        return self.folder / "README.md"


def load_wild(root: Path) -> tuple[WildExercise, ...]:
    """The manifest's [[wild]] entries: track 3, one exercise per store on a real framework."""
    path, data = _manifest(root)
    found = []
    for entry in data.get("wild", []):
        try:
            store, folder = entry["store"], root / "exercises" / entry["folder"]
            bugs = tuple(catalogue.find(name) for name in entry["bugs"])
        except (KeyError, catalogue.UnknownBug) as exc:
            raise ManifestError(f"{path}: a [[wild]] entry: {exc}") from None
        if not (root / "buggy" / "wild" / f"{store}.py").exists():
            raise ManifestError(f"{path}: the [[wild]] store {store!r} is not in buggy/wild/")
        hints = tuple(entry.get("hints", ()))
        if not hints:
            raise ManifestError(f"{path}: the [[wild]] store {store!r} has no hints")
        found.append(WildExercise(store, folder, bugs, hints))
    return tuple(found)


def find_wild(exercises: tuple[WildExercise, ...], name: str) -> WildExercise | None:
    """The track-3 exercise a name means (12, 12-wild-django-cache, wild/django_cache, django_cache,
    workspace/wild/django_cache.py), or None when it names none."""
    key = name.strip().lower().rstrip("/").replace("-", "_")
    for exercise in exercises:
        stem = exercise.store.lower()
        folder = exercise.folder.name.lower().replace("-", "_")
        number = folder.split("_", 1)[0]
        if key in (stem, f"wild/{stem}", folder, number, number.lstrip("0")) or \
                key.endswith((f"wild/{stem}.py", f"wild/{stem}")):
            return exercise
    return None


def find(exercises: tuple[Exercise, ...], name: str) -> Exercise:
    """The exercise of a bug named any way catalogue.find accepts (slug, number, folder)."""
    bug = catalogue.find(name)
    for exercise in exercises:
        if exercise.bug == bug:
            return exercise
    raise ManifestError(f"exercises/manifest.toml has no exercise for {bug.slug}")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    temporary.replace(path)


class HintProgress:
    """How many hints of each exercise a learner has seen, kept in a small JSON file."""

    def __init__(self, path: Path):
        self.path = path

    def _read(self) -> dict[str, int]:
        return {key: value for key, value in _read_json(self.path).items() if isinstance(value, int)}

    def seen(self, slug: str) -> int:
        return self._read().get(slug, 0)

    def next_hint(self, exercise: Exercise) -> tuple[int, str]:
        """Record one more hint as seen; return its number (from 1) and its text."""
        progress = self._read()
        number = min(progress.get(exercise.bug.slug, 0) + 1, len(exercise.hints))
        progress[exercise.bug.slug] = number
        _write_json(self.path, progress)
        return number, exercise.hints[number - 1]

    def record(self, slug: str, number: int) -> None:
        """Record that hints up to number were seen for slug."""
        progress = self._read()
        progress[slug] = max(number, progress.get(slug, 0))
        _write_json(self.path, progress)

    def seen_hints(self, exercise: Exercise) -> list[tuple[int, str]]:
        """The hints of an exercise already seen, to read again: (number, text)."""
        seen = min(self.seen(exercise.bug.slug), len(exercise.hints))
        return [(number, exercise.hints[number - 1]) for number in range(1, seen + 1)]


class Place:
    """Where a learner is, per implementation checked: the current exercise, and those a full check passed.

    ``check`` without a bug and ``watch`` start from the current exercise until a
    full check finds it FIXED, then move on; ``hint`` without a bug gives its hints.
    Kept in .sessionlab/place.json.
    """

    def __init__(self, path: Path, key: str):
        self.path, self.key = path, key

    def _entry(self) -> dict:
        entry = _read_json(self.path).get(self.key)
        return entry if isinstance(entry, dict) else {}

    @property
    def current(self) -> str | None:
        current = self._entry().get("current")
        return current if isinstance(current, str) else None

    @property
    def confirmed(self) -> set[str]:
        return {slug for slug in self._entry().get("fixed", []) if isinstance(slug, str)}

    def proof(self, slug: str) -> str | None:
        """The fingerprint of the code a full check found this exercise FIXED on, if it did."""
        proofs = self._entry().get("proofs")
        found = proofs.get(slug) if isinstance(proofs, dict) and slug in self.confirmed else None
        return found if isinstance(found, str) else None

    def record(self, slug: str, fixed: bool, current: bool = True, proof: str | None = None) -> None:
        """A full check of one exercise ended: FIXED (fixed=True) or not; current: it is the one worked on;
        proof: the fingerprint of the code it was FIXED on."""
        data = _read_json(self.path)
        entry = data.get(self.key) if isinstance(data.get(self.key), dict) else {}
        confirmed = set(entry.get("fixed", [])) - {slug}
        proofs = {k: v for k, v in (entry.get("proofs") or {}).items() if k != slug and isinstance(v, str)}
        if fixed:
            confirmed.add(slug)
            if proof:
                proofs[slug] = proof
        entry = {"current": slug if current else entry.get("current"), "fixed": sorted(confirmed),
                 "proofs": dict(sorted(proofs.items()))}
        data[self.key] = entry
        try:
            _write_json(self.path, data)
        except OSError:
            pass  # a read-only checkout: the lab forgets where you were, nothing worse
