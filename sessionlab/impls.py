"""Finding a session-manager implementation by name or path.

An implementation is any package or module that defines ``SessionManager`` with
the contract of ``sessionlab.api``: ``buggy``, ``fixed``, a learner's copy, or a
package of your own.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from sessionlab.api import SessionManager


class ImplementationError(Exception):
    """The implementation could not be found or does not offer a SessionManager."""


@dataclass(frozen=True)
class Implementation:
    name: str  # as the user wrote it: "buggy", "fixed", a module name or a path
    module: ModuleType

    @property
    def origin(self) -> str:
        return str(getattr(self.module, "__file__", None) or self.module.__name__)

    def new_manager(self, **options: object) -> SessionManager:
        return self.module.SessionManager(**options)


def load(spec: str) -> Implementation:
    """Load an implementation from an importable name or a filesystem path."""
    path = Path(spec)
    looks_like_path = any(sep in spec for sep in ("/", "\\")) or spec.endswith(".py") or spec.startswith(".")
    if looks_like_path or (path.exists() and not _importable(spec)):
        module = _import_path(path) if path.exists() else _missing(spec)
    else:
        module = _import_name(spec)
    manager = getattr(module, "SessionManager", None)
    if not callable(manager) or getattr(manager, "_is_protocol", False):
        raise ImplementationError(f"{spec!r} ({module.__name__}) defines no SessionManager class")
    return Implementation(spec, module)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _missing(spec: str) -> ModuleType:
    raise ImplementationError(f"no implementation at {spec!r}: no such file or folder")


def _import_name(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise ImplementationError(
                f"no implementation {name!r}: not an importable module and no such path "
                f"(try buggy, fixed, or the path of a package folder)"
            ) from None
        raise


def _import_path(path: Path) -> ModuleType:
    """Import a package folder or a single .py file under a name of its own.

    The folder is imported under a name derived from its absolute path, so
    ``buggy/`` and a learner's copy of it can be loaded side by side.
    """
    path = path.resolve()
    if path.is_dir():
        init = path / "__init__.py"
        if not init.exists():
            raise ImplementationError(f"{path} is a folder without __init__.py, not a package")
        location, search = init, [str(path)]
    elif path.suffix == ".py":
        location, search = path, None
    else:
        raise ImplementationError(f"{path} is neither a package folder nor a .py file")
    name = "_sessionlab_impl_" + "".join(c if c.isalnum() else "_" for c in str(path))
    stamp = _stamp(path)
    loaded = sys.modules.get(name)
    if loaded is not None and getattr(loaded, "__sessionlab_stamp__", None) == stamp:
        return loaded
    for key in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
        del sys.modules[key]  # its files changed since it was imported: import it afresh
    spec = importlib.util.spec_from_file_location(name, location, submodule_search_locations=search)
    if spec is None or spec.loader is None:
        raise ImplementationError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    module.__sessionlab_stamp__ = stamp  # type: ignore[attr-defined]
    return module


def _stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """What the source files of a package folder or module look like now."""
    files = sorted(path.glob("*.py")) if path.is_dir() else [path]
    return tuple((file.name, file.stat().st_mtime_ns, file.stat().st_size) for file in files)
