"""buggy/ and fixed/ mirror each other: their diff is the list of fixes and nothing else."""

import difflib
import re
from pathlib import Path

from sessionlab import catalogue
from sessionlab.learner import workspace

ROOT = Path(__file__).resolve().parent.parent
FIX = re.compile(r"#\s*FIX\(([a-z-]+)\)")


def owner(functions: dict, line: int) -> str | None:
    """The innermost function holding a line."""
    holding = [f for f in functions.values() if f.first <= line <= f.last]
    return min(holding, key=lambda f: f.last - f.first).name if holding else None


def test_the_packages_hold_the_same_files():
    names = lambda folder: sorted(p.name for p in (ROOT / folder).glob("*.py"))  # noqa: E731
    assert names("buggy") == names("fixed")


def test_every_fix_is_marked_inside_the_functions_of_its_bug():
    marked = {}
    for name in ("manager.py", "persistent.py", "redis_store.py"):
        path = ROOT / "fixed" / name
        functions = workspace.functions(path)
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for slug in FIX.findall(line):
                bug = catalogue.find(slug)
                assert owner(functions, number) in bug.functions, f"{name}:{number} FIX({slug}) outside {bug.functions}"
                marked.setdefault(slug, []).append(number)
    every = {bug.slug for bug in catalogue.BUGS}
    assert set(marked) == every, f"bugs without a FIX marker: {every - set(marked)}"


def test_buggy_carries_no_markers():
    for path in (ROOT / "buggy").glob("*.py"):
        assert not FIX.search(path.read_text()), f"{path} gives its bugs away"


def test_the_diff_touches_only_imports_and_the_functions_of_the_bugs():
    before, after = ROOT / "buggy" / "manager.py", ROOT / "fixed" / "manager.py"
    places = {"buggy": workspace.functions(before), "fixed": workspace.functions(after)}
    allowed = {name for bug in catalogue.BUGS for name in bug.functions}
    old, new = before.read_text().splitlines(), after.read_text().splitlines()
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        changed = [("buggy", n + 1, old[n]) for n in range(i1, i2)] + [("fixed", n + 1, new[n]) for n in range(j1, j2)]
        for side, number, text in changed:
            if text.startswith(("import ", "from ")):
                continue
            assert owner(places[side], number) in allowed, f"{side}/manager.py:{number} changes outside a bug: {text!r}"


def test_the_catalogue_functions_exist_in_both_packages():
    for side in ("buggy", "fixed"):
        for bug in catalogue.BUGS:
            defined = workspace.functions(ROOT / side / bug.module)
            for name in bug.functions:
                assert name in defined, f"{side}/{bug.module} has no {name} (catalogue: {bug.slug})"


def test_the_persistent_diff_touches_only_the_functions_that_carry_a_fix():
    before, after = ROOT / "buggy" / "persistent.py", ROOT / "fixed" / "persistent.py"
    places = {"buggy": workspace.functions(before), "fixed": workspace.functions(after)}
    text = after.read_text()
    fixed_functions = {owner(places["fixed"], number) for number, line in enumerate(text.splitlines(), 1)
                       if FIX.search(line)}
    assert len(fixed_functions) == 5, fixed_functions  # one per bug of the persistent track
    old, new = before.read_text().splitlines(), text.splitlines()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        changed = [("buggy", n + 1, old[n]) for n in range(i1, i2)] + [("fixed", n + 1, new[n]) for n in range(j1, j2)]
        for side, number, line in changed:
            assert owner(places[side], number) in fixed_functions, \
                f"{side}/persistent.py:{number} changes outside a fixed function: {line!r}"


def test_the_redis_diff_touches_only_imports_the_scripts_and_the_functions_that_carry_a_fix():
    before, after = ROOT / "buggy" / "redis_store.py", ROOT / "fixed" / "redis_store.py"
    places = {"buggy": workspace.functions(before), "fixed": workspace.functions(after)}
    text = after.read_text()
    fixed_functions = {owner(places["fixed"], number) for number, line in enumerate(text.splitlines(), 1)
                       if FIX.search(line)}
    assert len(fixed_functions) == 4, fixed_functions  # five bugs: resurrected-logout shares two of them
    old, new = before.read_text().splitlines(), text.splitlines()
    allowed = fixed_functions | {"RedisSessionManager.__init__"}  # where fixed registers its scripts
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        changed = [("buggy", n + 1, old[n]) for n in range(i1, i2)] + [("fixed", n + 1, new[n]) for n in range(j1, j2)]
        for side, number, line in changed:
            where = owner(places[side], number)
            if where is None:  # outside every function: the module's docstring, imports and Lua scripts
                continue
            assert where in allowed, f"{side}/redis_store.py:{number} changes outside a fixed function: {line!r}"
