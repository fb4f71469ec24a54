"""The learner's working copy of buggy/, and what can be done to it.

``sessionlab start`` copies ``buggy/`` to ``workspace/`` once; learners fix the
copy, so ``buggy/`` stays the pristine exhibit. Both ``workspace/`` and the
lab's own state (``.sessionlab/``: hints seen, versions saved by reset) are
ignored by git. Diff and reset work function by function, on the functions
the catalogue says hold each bug.
"""

from __future__ import annotations

import ast
import difflib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sessionlab.bug import Bug
from sessionlab.implementations import state_folder

WORKSPACE = "workspace"
MODULE = "manager.py"
WILD = "wild"  # the folder of buggy/ and fixed/ that holds the stores on real frameworks (track 3)


def wild_store(path: Path) -> str | None:
    """The store a file is, when it is one of track 3's (a .py file in a wild/ folder): its name."""
    return path.stem if path.suffix == ".py" and path.parent.name == WILD and path.stem != "__init__" else None


def whole_file_diff(mine: Path, reference: Path, mine_label: str, reference_label: str) -> str:
    """A store in the wild against its reference: the whole file, since the fixes add helpers and locks."""
    return "".join(difflib.unified_diff(mine.read_text(encoding="utf-8").splitlines(keepends=True),
                                        reference.read_text(encoding="utf-8").splitlines(keepends=True),
                                        mine_label, reference_label))


def reset_file(workspace: Workspace, target: Path, original: Path, stem: str) -> Path | None:
    """Put a whole file back as it was; return where the learner's version was saved (None: unchanged)."""
    if target.read_bytes() == original.read_bytes():
        return None
    saved = _new_file(workspace.saved, f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}", target.name)
    shutil.copy2(target, saved)
    shutil.copy2(original, target)
    return saved


class WorkspaceError(Exception):
    """The working copy is missing, or does not hold what an operation needs."""


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def path(self) -> Path:
        return self.root / WORKSPACE

    @property
    def state(self) -> Path:
        return state_folder(self.root)

    @property
    def exists(self) -> bool:
        return (self.path / "__init__.py").exists()

    def require(self) -> None:
        if not self.exists:
            raise WorkspaceError("there is no working copy yet; make one with: sessionlab start")

    @property
    def saved(self) -> Path:
        """Where versions of the learner's code are kept before anything replaces them."""
        return self.state / "saved"

    def start(self) -> bool:
        """Copy buggy/ to the workspace; return False if a working copy already exists."""
        if self.exists:
            return False
        self.path.mkdir(parents=True, exist_ok=True)
        for source in sorted((self.root / "buggy").glob("*.py")):
            shutil.copy2(source, self.path / source.name)
        wild = self.root / "buggy" / WILD
        if wild.is_dir():  # track 3: the stores on real frameworks
            (self.path / WILD).mkdir(exist_ok=True)
            for source in sorted(wild.glob("*.py")):
                shutil.copy2(source, self.path / WILD / source.name)
        return True

    def pristine(self) -> bool:
        """Whether the working copy holds exactly what buggy/ holds."""
        mine = {path.name: path.read_bytes() for path in self.files()}
        original = {path.name: path.read_bytes() for path in sorted((self.root / "buggy").glob("*.py"))}
        return mine == original

    def start_fresh(self) -> Path | None:
        """Make a new working copy; the old one is moved under saved/ first (unless it was untouched).

        Returns where the old copy went, or None when there was nothing to keep.
        """
        kept = None
        if self.path.exists():
            if self.exists and self.pristine():
                shutil.rmtree(self.path)
            else:
                kept = _new_folder(self.saved, f"{WORKSPACE}-{time.strftime('%Y%m%d-%H%M%S')}")
                kept.rmdir()
                shutil.move(str(self.path), str(kept))
                for cache in kept.rglob("__pycache__"):
                    shutil.rmtree(cache, ignore_errors=True)
        self.start()
        return kept

    def files(self) -> list[Path]:
        return sorted(self.path.glob("*.py"))


# -- Functions in a source file ------------------------------------------------------------


@dataclass(frozen=True)
class Function:
    name: str  # qualified: Class.method
    first: int  # first line (decorators included), 1-based
    last: int  # last line, inclusive
    text: str


def functions(path: Path) -> dict[str, Function]:
    """The functions and methods defined in a file, by qualified name."""
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkspaceError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkspaceError(f"{path} cannot be read: {exc}") from None
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise WorkspaceError(f"{path} does not parse: SyntaxError: {exc.msg} (line {exc.lineno}); "
                             "fix that line first") from None
    lines = source.splitlines(keepends=True)
    found: dict[str, Function] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                name = prefix + child.name
                found[name] = Function(name, first, child.end_lineno or child.lineno,
                                       "".join(lines[first - 1: child.end_lineno]))
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")

    visit(tree, "")
    return found


def replace_functions(path: Path, replacements: dict[str, str]) -> None:
    """Rewrite a file with some of its functions replaced by new source text, by qualified name."""
    current = functions(path)
    missing = [name for name in replacements if name not in current]
    if missing:
        raise WorkspaceError(f"{path} has no function {', '.join(missing)}")
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    for name in sorted(replacements, key=lambda n: current[n].first, reverse=True):
        text = replacements[name]
        lines[current[name].first - 1: current[name].last] = [text if text.endswith("\n") else text + "\n"]
    path.write_text("".join(lines), encoding="utf-8")


def diff(bug: Bug, mine: Path, reference: Path, mine_label: str, reference_label: str) -> list[tuple[str, str]]:
    """For each function holding the bug: (name, unified diff of mine against the reference)."""
    have, want = functions(mine), functions(reference)
    out = []
    for name in bug.functions:
        if name not in have:
            raise WorkspaceError(f"{mine} has no function {name}")
        text = "".join(difflib.unified_diff(
            have[name].text.splitlines(keepends=True), want[name].text.splitlines(keepends=True),
            f"{mine_label}  ({name}, line {have[name].first})",
            f"{reference_label}  ({name}, line {want[name].first})",
        ))
        out.append((name, text))
    return out


def _new_file(folder: Path, stem: str, name: str) -> Path:
    """A new, empty file folder/stem-name, or stem-2-name, stem-3-name ... : never an existing one."""
    folder.mkdir(parents=True, exist_ok=True)
    for count in range(1, 10_000):
        path = folder / (f"{stem}-{name}" if count == 1 else f"{stem}-{count}-{name}")
        try:
            with path.open("x", encoding="utf-8"):
                return path
        except FileExistsError:
            continue
    raise WorkspaceError(f"{folder} is full of saved versions named {stem}-*: clear some out")


def _new_folder(folder: Path, stem: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for count in range(1, 10_000):
        path = folder / (stem if count == 1 else f"{stem}-{count}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise WorkspaceError(f"{folder} is full of saved copies named {stem}-*: clear some out")


def reset(bug: Bug, workspace: Workspace, target: Path | None = None) -> Path | None:
    """Put the bug's original code back; return where the learner's version was saved.

    target is the file to reset (default: the working copy's). Returns None, and
    saves nothing, when that code is already the original.
    """
    if target is None:
        workspace.require()
        target = workspace.path / bug.module
    original = functions(workspace.root / "buggy" / bug.module)
    current = functions(target)
    missing = [name for name in bug.functions if name not in current]
    if missing:
        raise WorkspaceError(f"{target} has no function {', '.join(missing)}: put it back by hand, or "
                             "start over from buggy/ with: sessionlab start --fresh (your copy is saved first)")
    if all(current[name].text == original[name].text for name in bug.functions):
        return None
    saved = _new_file(workspace.saved, f"{bug.slug}-{time.strftime('%Y%m%d-%H%M%S')}", target.name)
    shutil.copy2(target, saved)
    replace_functions(target, {name: original[name].text for name in bug.functions})
    return saved


# -- Watching ------------------------------------------------------------------------------


def stamps(paths: list[Path]) -> dict[Path, int]:
    """When each file was last modified (files that are gone are left out)."""
    result = {}
    for path in paths:
        try:
            result[path] = path.stat().st_mtime_ns
        except FileNotFoundError:
            continue
    return result


def changed(before: dict[Path, int], now: dict[Path, int]) -> list[Path]:
    """The files added, removed or modified between two stamps."""
    return sorted(p for p in set(now) | set(before) if now.get(p) != before.get(p))


def changes(paths: Callable[[], list[Path]], interval: float = 0.5,
            sleep: Callable[[float], None] = time.sleep) -> Iterator[list[Path]]:
    """Yield once at the start, then each time a file is added, removed or modified."""
    seen = stamps(paths())
    yield sorted(seen)
    while True:
        sleep(interval)
        now = stamps(paths())
        if now != seen:
            found, seen = changed(seen, now), now
            yield found
