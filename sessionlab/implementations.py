"""Finding a session-manager implementation by name or path.

An implementation is any package or module that defines ``SessionManager`` with
the contract of ``sessionlab.api``: ``buggy``, ``fixed``, a learner's copy, or a
package of your own. ``project_root`` is the folder that holds them (and the
lab's state folder, ``STATE``).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import linecache
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from sessionlab.api import SessionManager

# The lab's state on this machine (hint progress, the learner's saved files, measured rates),
# in the project root; ignored by git. SESSIONLAB_STATE puts it elsewhere (the self-test's own).
STATE = ".sessionlab"


def state_folder(root: Path | None = None) -> Path:
    """Where the lab keeps its state: SESSIONLAB_STATE, else .sessionlab/ in the project root."""
    override = os.environ.get("SESSIONLAB_STATE")
    if override:
        return Path(override).resolve()
    return (root or project_root()) / STATE


def project_root() -> Path:
    """The folder that holds buggy/, fixed/ and exercises/ (SESSIONLAB_ROOT overrides it)."""
    override = os.environ.get("SESSIONLAB_ROOT")
    if override:
        return Path(override).resolve()
    import buggy

    return Path(buggy.__file__).resolve().parent.parent


class ImplementationError(Exception):
    """The implementation could not be found or does not offer a SessionManager."""


class CodeError(Exception):
    """The implementation's own code failed: it did not import, or it raised.

    Says where, in the implementation's own files: the file, the line, the
    function and the one-line message, never the whole traceback.
    """

    def __init__(self, message: str, file: str = "", line: int = 0, function: str = "", source: str = ""):
        super().__init__(message)
        self.message, self.file, self.line, self.function, self.source = message, file, line, function, source

    @property
    def where(self) -> str:
        if not self.file:
            return ""
        place = f"{self.file}:{self.line}" if self.line else self.file
        return f"{place} in {self.function}" if self.function else place

    def __str__(self) -> str:
        return f"{self.message} ({self.where})" if self.where else self.message

    def text(self) -> str:
        lines = [f"{self.where}:" if self.where else "", f"    {self.source}" if self.source else "",
                 f"{self.message}"]
        return "\n".join(line for line in lines if line)

    @classmethod
    def of(cls, exc: BaseException, files: frozenset[str] = frozenset()) -> CodeError:
        """Describe an exception by the innermost place in files (absolute paths) where it passed."""
        if isinstance(exc, CodeError):
            return exc
        message = f"{type(exc).__name__}: {exc}".rstrip(": ") if str(exc) else type(exc).__name__
        if isinstance(exc, SyntaxError) and exc.filename:
            source = (exc.text or "").strip()
            return cls(f"SyntaxError: {exc.msg}", _short(exc.filename), exc.lineno or 0, "", source)
        found = None
        for frame, line in traceback.walk_tb(exc.__traceback__):
            if not files or frame.f_code.co_filename in files:
                found = (frame.f_code.co_filename, line, frame.f_code.co_qualname)
        if found is None:
            return cls(message)
        filename, line, function = found
        return cls(message, _short(filename), line, function, linecache.getline(filename, line).strip())


def _short(filename: str) -> str:
    """A file's path relative to the current folder when it lies below it."""
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Implementation:
    name: str  # as the user wrote it: "buggy", "fixed", a module name or a path
    module: ModuleType

    @property
    def origin(self) -> str:
        return str(getattr(self.module, "__file__", None) or self.module.__name__)

    @property
    def files(self) -> frozenset[str]:
        """The absolute paths of the implementation's own source files."""
        origin = Path(self.origin)
        if origin.name == "__init__.py":
            return frozenset(str(path) for path in origin.parent.glob("*.py"))
        return frozenset({str(origin)}) if origin.suffix == ".py" else frozenset()

    def unloaded(self, class_name: str) -> CodeError | None:
        """Why a class of the implementation is missing, when the file that defines it did not load."""
        found = getattr(self.module, class_name, None)
        return found.error if isinstance(found, Unloaded) else None

    def new_manager(self, **options: object) -> SessionManager:
        return self.module.SessionManager(**options)

    def new(self, class_name: str, **options: object) -> Any:
        """A new manager of the named class: SessionManager, or PersistentSessionManager for track 2."""
        manager = getattr(self.module, class_name, None)
        if class_name == "RedisSessionManager" and "url" not in options:
            # A node with nothing said of its server: the lab's throwaway redis-server, and a
            # namespace of its own, so a new node starts on an empty store as a new manager does.
            from sessionlab.servers import redis_server

            options = {**redis_server.node_options(), **options}
        if not callable(manager):
            raise ImplementationError(
                f"{self.name!r} ({self.module.__name__}) defines no {class_name}: the bugs of this track "
                f"need one (copy buggy/ again with `sessionlab start --fresh`, or export it from __init__.py)")
        return manager(**options)

    def factory(self, bug: Any) -> Callable[..., Any]:
        """What makes a new manager of the class a bug lives in."""
        return functools.partial(self.new, bug.manager)


def load(spec: str) -> Implementation:
    """Load an implementation from an importable name or a filesystem path."""
    path = Path(spec)
    looks_like_path = any(sep in spec for sep in ("/", "\\")) or spec.endswith(".py") or spec.startswith(".")
    if looks_like_path or (path.exists() and not _importable_as(spec, path)):
        module = _import_path(path) if path.exists() else _missing(spec)
    else:
        module = _import_name(spec)
    manager = getattr(module, "SessionManager", None)
    if isinstance(manager, Unloaded):  # its file did not load, another track's did
        return Implementation(spec, module)
    if not callable(manager) or getattr(manager, "_is_protocol", False):
        raise ImplementationError(f"{spec!r} ({module.__name__}) defines no SessionManager class")
    implementation = Implementation(spec, module)
    missing = [name for name in CONTRACT_METHODS if not callable(getattr(manager, name, None))]
    if missing:
        where = getattr(sys.modules.get(manager.__module__), "__file__", None) or implementation.origin
        raise CodeError(f"SessionManager has no method {', '.join(missing)}: the contract needs "
                        f"every one of {', '.join(CONTRACT_METHODS)}", _short(where))
    return implementation


# What the contract (sessionlab.api.SessionManager) asks of every implementation.
CONTRACT_METHODS = ("create_session", "get_session", "update_session", "increment_access", "delete_session",
                    "get_stats", "get_active_count", "get_cleanup_queue_size", "close", "__enter__", "__exit__")


def _importable_as(name: str, path: Path) -> bool:
    """Whether importing name loads the code at path (not, say, a module of the same name elsewhere)."""
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if found is None or not found.origin:
        return False
    origin = Path(found.origin).resolve()
    here = path.resolve()
    return origin == here or here in origin.parents


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
        raise CodeError.of(exc).with_traceback(None) from None
    except Exception as exc:  # the module is there, but its code is broken
        raise CodeError.of(exc).with_traceback(None) from None


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
    files = frozenset(str(p) for p in (path.glob("*.py") if path.is_dir() else [path]))
    # A package whose __init__ imports several files (buggy/: manager.py for track 1,
    # persistent.py for track 2) loads without the ones that fail: each stands in as an
    # Unloaded module, so one track's typo leaves the other tracks' exercises to be judged.
    stand_ins: dict[str, ModuleType] = {}
    while True:
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.modules.update(stand_ins)
        try:
            spec.loader.exec_module(module)
            break
        except Exception as exc:  # the code itself is broken: say where, in its own files
            for key in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
                del sys.modules[key]
            error = CodeError.of(exc, files)
            if isinstance(exc, ImportError) and path.parent.name == "wild":
                error.message += " (the stores on real frameworks need them: pip install -e '.[realworld]')"
            failed = _failed_file(exc, files)
            submodule = f"{name}.{failed.stem}" if failed is not None else ""
            if (failed is None or failed.parent != path or failed.name == "__init__.py"
                    or submodule in stand_ins):
                raise error.with_traceback(None) from None
            stand_ins[submodule] = _UnloadedModule(submodule, error.with_traceback(None))
        except BaseException:
            for key in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
                del sys.modules[key]
            raise
    if stand_ins and not any(key.startswith(name + ".") and key not in stand_ins for key in sys.modules):
        first = next(iter(stand_ins.values()))
        for key in [key for key in sys.modules if key == name or key.startswith(name + ".")]:
            del sys.modules[key]
        raise first.__sessionlab_error__  # nothing of the package's own code loaded
    module.__sessionlab_stamp__ = stamp  # type: ignore[attr-defined]
    return module


class NotLoaded(CodeError):
    """A class of the implementation was used whose file did not load (the other files did)."""


class Unloaded:
    """Stands for a name of a file of the implementation that did not load; calling it raises why."""

    __slots__ = ("name", "error")

    def __init__(self, name: str, error: CodeError):
        self.name, self.error = name, error

    def __call__(self, *args: object, **kwargs: object) -> Any:
        error = self.error
        raise NotLoaded(error.message, error.file, error.line, error.function, error.source)

    def __repr__(self) -> str:
        return f"<{self.name}: not loaded: {self.error}>"


class _UnloadedModule(ModuleType):
    """A file of a package that did not load: every name asked of it is Unloaded."""

    def __init__(self, name: str, error: CodeError):
        super().__init__(name)
        self.__sessionlab_error__ = error

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return Unloaded(attribute, self.__sessionlab_error__)


def _failed_file(exc: BaseException, files: frozenset[str]) -> Path | None:
    """The file of the implementation where an import failed: a syntax error's, else the innermost frame's."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return Path(exc.filename).resolve()
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename in files:
            found = Path(frame.f_code.co_filename)
    return found


def _stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """What the source files of a package folder or module look like now."""
    files = sorted(path.glob("*.py")) if path.is_dir() else [path]
    return tuple((file.name, file.stat().st_mtime_ns, file.stat().st_size) for file in files)
