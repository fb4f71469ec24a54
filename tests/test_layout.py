"""The layout shows the architecture: packages by role, imports that point one way, a bug passed down.

From the command line down to the contract, each layer of ``sessionlab/`` may
import only the layers below it, and a module of its own package:

    __main__                   python -m sessionlab
    cli, pytest_plugin         the command line, and --impl under pytest
    bench                      the price of correctness
    web                        the web demo
    judge, learner             where verdicts are made; the learner's working copy and exercises
    catalogue                  the list of bugs, and each bug's home
    bugs                       one home per bug: its entry, its scenarios, its checks
    engines                    stress, exploration, linearizability, the id attacker
    reports                    what the engines found, drawn
    bug, figure, implementations   the words every layer shares
    servers                    throwaway servers (redis-server) for the tracks that outgrow one machine
    api                        the contract the managers implement
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import sessionlab
from sessionlab import catalogue, implementations
from sessionlab.engines import stress
from sessionlab.engines.exploration import threads
from sessionlab.judge import checks

PACKAGE = Path(__file__).resolve().parent.parent / "sessionlab"

LAYERS = (
    ("sessionlab.__main__",),
    ("sessionlab.cli", "sessionlab.pytest_plugin"),
    ("sessionlab.bench",),
    ("sessionlab.web",),
    ("sessionlab.judge", "sessionlab.learner"),
    ("sessionlab.catalogue",),
    ("sessionlab.bugs",),
    ("sessionlab.engines",),
    ("sessionlab.reports",),
    ("sessionlab.bug", "sessionlab.figure", "sessionlab.implementations"),
    ("sessionlab.servers",),
    ("sessionlab.api",),
)
TOP_MODULES = {"__init__", "__main__", "api", "bug", "catalogue", "figure", "implementations", "pytest_plugin"}
TOP_PACKAGES = {"bench", "bugs", "cli", "engines", "judge", "learner", "reports", "servers", "web"}
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The lab's modules a module imports, anywhere in it (inside functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target != name:
                found.add(target)
    return found


GRAPH = {name: imports(name, path, modules()) for name, path in modules().items()}


def layer(name: str) -> tuple[int, str]:
    """The layer a module is in (0 is the top), and the package or module that places it there."""
    for number, members in enumerate(LAYERS):
        for member in members:
            if name == member or name.startswith(member + "."):
                return number, member
    raise AssertionError(f"{name} is in no layer of this test's map: add it")


def test_the_top_holds_a_handful_of_modules_and_packages_named_by_role():
    assert {p.stem for p in PACKAGE.glob("*.py")} == TOP_MODULES
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} == TOP_PACKAGES


def test_no_module_is_over_400_lines():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_imports_point_down_from_the_command_line_to_the_contract():
    upward = []
    for name, targets in GRAPH.items():
        if name == "sessionlab":
            continue
        mine, home = layer(name)
        for target in targets:
            if target == "sessionlab":
                continue
            theirs, their_home = layer(target)
            if theirs < mine or (theirs == mine and their_home != home):
                upward.append(f"{name} imports {target}")
    assert not upward, "imports against the layers:\n" + "\n".join(sorted(upward))


def test_no_two_modules_import_each_other_directly_or_through_a_circle():
    circles, done = [], set()

    def visit(name: str, path: list[str]) -> None:
        for target in sorted(GRAPH[name]):
            if target in path:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in done:
                visit(target, path + [target])
        done.add(name)

    for name in sorted(GRAPH):
        if name not in done:
            visit(name, [name])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_map_sees_the_lab_s_imports():
    """The checks above read real edges: the judge reaches the engines, the catalogue every bug."""
    assert "sessionlab.engines.exploration.threads" in GRAPH["sessionlab.judge.checks"]
    assert {module.__name__ for module in catalogue.MODULES} <= GRAPH["sessionlab.catalogue"]
    assert not any(target.startswith("sessionlab.catalogue") for name, targets in GRAPH.items()
                   if name.startswith(("sessionlab.engines", "sessionlab.reports", "sessionlab.bugs"))
                   for target in targets)


@pytest.mark.parametrize("slug, stress_too", [("id-collision", False), ("cleanup-leak", True)])
def test_the_judge_finds_the_bug_s_home_once_and_hands_each_engine_its_scenario(monkeypatch, slug, stress_too):
    bug = catalogue.find(slug)
    home = catalogue.home(bug)
    looked_up, handed = [], []
    real_find, real_home = catalogue.find, catalogue.home
    real_explore, real_observe = threads.explore, stress.observe
    monkeypatch.setattr(catalogue, "find", lambda name: looked_up.append(("find", name)) or real_find(name))
    monkeypatch.setattr(catalogue, "home", lambda name: looked_up.append(("home", name)) or real_home(name))
    monkeypatch.setattr(threads, "explore", lambda scenario, *a, **k: handed.append(scenario) or real_explore(
        scenario, *a, **k))
    monkeypatch.setattr(stress, "observe", lambda scenario, *a, **k: handed.append(scenario) or real_observe(
        scenario, *a, **k))
    verdict = checks.judge(bug, implementations.load("fixed"), stress_too=stress_too)
    assert verdict.fixed, verdict.evidence
    assert looked_up == [("home", bug)], f"the judge looked the bug up {len(looked_up)} times: {looked_up}"
    expected = [s for s in (home.race, home.stress if stress_too else None) if s is not None]
    assert [id(s) for s in handed] == [id(s) for s in expected]


@pytest.mark.parametrize("old, new", sorted(sessionlab.MOVED.items()))
def test_a_name_the_documents_once_taught_still_imports_with_a_warning(monkeypatch, old, new):
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} has moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert old not in {f"sessionlab.{p.stem}" for p in PACKAGE.glob("*.py")}  # no file left behind at the old name
