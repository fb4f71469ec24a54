"""What every command shares: exit statuses, errors, loading an implementation, follow-ups."""

from __future__ import annotations

import argparse
import importlib.util
import shlex
from dataclasses import dataclass
from pathlib import Path

from sessionlab import implementations
from sessionlab.cli.status import (  # noqa: F401  (re-exported for the commands)
    ERROR, EXIT_ERROR, EXIT_FIXED, EXIT_FOR, EXIT_HANGS, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_STATUSES,
    EXIT_STILL_BUGGY, EXIT_UNPROVEN, EXIT_USAGE, FIXED, HANGS, SEVERITY, STILL_BUGGY, UNPROVEN, CommandError,
    report_error, worst)
from sessionlab.learner import workspace
from sessionlab.learner.workspace import Workspace


def code_error_json(error: implementations.CodeError) -> dict:
    return {"message": error.message, "file": error.file, "line": error.line, "function": error.function,
            "source": error.source, "where": error.where}


# -- Where things are ------------------------------------------------------------------------


def space() -> Workspace:
    return Workspace(implementations.project_root())


def default_spec() -> str:
    """The learner's working copy once it exists, else the pristine buggy/."""
    here = space()
    return str(here.path) if here.exists else "buggy"


def resolve_spec(spec: str) -> str:
    """"workspace" means the project's working copy wherever the command runs from."""
    if spec.rstrip("/\\") == workspace.WORKSPACE and not Path(spec).exists() and space().exists:
        return str(space().path)
    return spec


def is_workspace(spec: str) -> bool:
    here = space()
    try:
        return here.exists and Path(resolve_spec(spec)).resolve() == here.path.resolve()
    except OSError:
        return False


def shorten(error: implementations.CodeError) -> implementations.CodeError:
    """The error with its file named relative to the project when it is not below the current folder."""
    path = Path(error.file)
    if not error.file or not path.is_absolute():
        return error
    try:
        short = str(path.relative_to(implementations.project_root()))
    except ValueError:
        return error
    return implementations.CodeError(error.message, short, error.line, error.function, error.source)


@dataclass(frozen=True)
class Loaded:
    """An implementation, or why its code did not load."""

    name: str
    implementation: implementations.Implementation | None
    error: implementations.CodeError | None = None

    def error_for(self, manager: str) -> implementations.CodeError | None:
        """Why a bug's class (SessionManager, PersistentSessionManager) cannot be judged: its file did
        not load (the others may have)."""
        if self.implementation is None:
            return self.error
        unloaded = self.implementation.unloaded(manager)
        return shorten(unloaded) if unloaded is not None else None

    @property
    def partly(self) -> list[implementations.CodeError]:
        """The errors of the files that did not load, when others did (each track loads on its own)."""
        if self.implementation is None:
            return []
        found = {id(error): error for error in (self.implementation.unloaded(name)
                                                for name in dir(self.implementation.module)) if error}
        return [shorten(error) for error in found.values()]


def load(spec: str) -> Loaded:
    """Load an implementation; a missing one is a usage error, broken code is an ERROR to report."""
    resolved = resolve_spec(spec)
    name = workspace.WORKSPACE if is_workspace(resolved) else spec
    try:
        implementation = implementations.load(resolved)
    except implementations.CodeError as error:
        return Loaded(name, None, shorten(error))
    except implementations.ImplementationError as exc:
        raise CommandError(str(exc), kind="implementation") from None
    return Loaded(name, implementations.Implementation(name, implementation.module))


def require(loaded: Loaded, args: argparse.Namespace) -> implementations.Implementation:
    """The implementation, or a CommandError (exit 3) saying where its code broke."""
    if loaded.implementation is None:
        assert loaded.error is not None
        raise CommandError(f"{loaded.name}: ERROR: your code did not load: {loaded.error}", EXIT_ERROR, kind="code",
                           code=code_error_json(loaded.error), detail=loaded.error.text())
    return loaded.implementation


def source_file(spec: str, module: str) -> Path:
    """The source file of an implementation that holds a module (manager.py), without importing it."""
    path = Path(resolve_spec(spec))
    if path.is_file():
        return path
    if path.is_dir():
        return path / module
    try:
        found = importlib.util.find_spec(spec) if not any(c in spec for c in "/\\") else None
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin:
        raise CommandError(f"no implementation at {spec!r}: no such file or folder", kind="implementation")
    origin = Path(found.origin)
    return origin.parent / module if found.submodule_search_locations else origin


def watched_files(spec: str) -> list[Path]:
    """The source files of an implementation, to watch for saves."""
    path = Path(resolve_spec(spec))
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.glob("*.py"))
    origin = source_file(spec, "__init__.py")
    return sorted(origin.parent.glob("*.py")) if origin.name == "__init__.py" else [origin]


# -- Follow-up commands keep the options they were run with --------------------------------------


def follow(args: argparse.Namespace, *words: str) -> str:
    """A command to suggest, with the --impl the learner ran this one with."""
    command = ["sessionlab", *words]
    impl = getattr(args, "impl", None)
    for spec in ([impl] if isinstance(impl, str) else impl or []):
        command += ["--impl", spec]
    return shlex.join(command)
