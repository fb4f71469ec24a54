"""One exercise at a time: the others a learner has not touched yet are taken as solved.

A learner fixes one bug of a file that holds several. When the judge searches
every pair of operations for that bug, a pair may break because of another bug
the learner has not reached yet (a read that still takes the locks in the wrong
order deadlocks against every write). That failure is not this exercise's.

So, for that search, every function of another bug of the same file that is
still exactly as shipped in ``buggy/`` is replaced by the reference's version
from ``fixed/``, compiled among the learner's own module's names, on a subclass:
the learner's class and module stay as they are. A function the learner has
changed is kept as the learner wrote it, right or wrong.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from dataclasses import replace
from pathlib import Path

from sessionlab import catalogue, implementations
from sessionlab.bug import Bug
from sessionlab.implementations import Implementation


def _functions(path: Path) -> dict[str, tuple[ast.AST, str, int]]:
    """The methods of a file's classes by qualified name: (tree, source, first line)."""
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, UnicodeDecodeError, SyntaxError):
        return {}
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    text = ast.get_source_segment(source, item, padded=True) or ""
                    found[f"{node.name}.{item.name}"] = (item, text, item.lineno)
    return found


def _same(a: ast.AST, b: ast.AST) -> bool:
    return ast.dump(a, include_attributes=False) == ast.dump(b, include_attributes=False)


def _module_file(implementation: Implementation, bug: Bug) -> Path | None:
    origin = Path(implementation.origin)
    path = origin.parent / bug.module if origin.name == "__init__.py" else origin
    return path if path.is_file() else None


def untouched(bug: Bug, implementation: Implementation) -> list[str]:
    """The functions of the other bugs of bug's file that are exactly as buggy/ ships them."""
    mine = _module_file(implementation, bug)
    shipped = _module_file(implementations.load("buggy"), bug)
    if mine is None or shipped is None or mine.resolve() == shipped.resolve():
        return [] if mine is None or shipped is None else _others(bug)
    have, buggy = _functions(mine), _functions(shipped)
    return [name for name in _others(bug) if name in have and name in buggy and _same(have[name][0], buggy[name][0])]


def _others(bug: Bug) -> list[str]:
    return [name for other in catalogue.BUGS if other.module == bug.module and other.slug != bug.slug
            for name in other.functions if name.split(".")[0] == bug.manager]


def others_solved(bug: Bug, implementation: Implementation) -> tuple[Implementation, list[str]]:
    """The implementation with the other bugs' untouched functions taken from fixed/; the names replaced."""
    already = getattr(implementation.module, "__sessionlab_solved__", None)
    if already is not None:
        return implementation, list(already)
    names = untouched(bug, implementation)
    reference = _module_file(implementations.load("fixed"), bug)
    if not names or reference is None:
        return implementation, []
    cls = getattr(implementation.module, bug.manager, None)
    if not isinstance(cls, type):
        return implementation, []
    defined = inspect.getmodule(cls)
    # The learner's names first; a name the reference needs that the learner's file lacks (an
    # import) is the reference's own.
    namespace = {**vars(inspect.getmodule(getattr(implementations.load("fixed").module, bug.manager))),
                 **vars(defined if defined is not None else implementation.module)}
    sources = _functions(reference)
    methods = {}
    for name in names:
        if name not in sources:
            continue
        _, text, first = sources[name]
        tree = ast.parse(textwrap.dedent(text))
        ast.increment_lineno(tree, first - 1)
        scope: dict = {}
        exec(compile(tree, str(reference), "exec"), namespace, scope)  # noqa: S102  (the reference's own code)
        methods[name.split(".")[1]] = next(iter(scope.values()))
    hybrid = type(cls.__name__, (cls,), {**methods, "__module__": cls.__module__, "__qualname__": cls.__qualname__})
    module = types.ModuleType(implementation.module.__name__)
    module.__dict__.update(vars(implementation.module))
    setattr(module, bug.manager, hybrid)
    module.__sessionlab_solved__ = tuple(sorted(methods))  # type: ignore[attr-defined]
    return replace(implementation, module=module), sorted(methods)
