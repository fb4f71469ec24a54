"""The commands the documents quote are commands the lab accepts."""

import re
import shlex
from pathlib import Path

import pytest

from sessionlab import catalogue
from sessionlab.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "TECHNICAL.md", *sorted((ROOT / "exercises").rglob("*.md"))]
QUOTED = re.compile(r"`((?:sessionlab|pytest) [^`]+)`|^\s*((?:sessionlab|pytest) [^\n#]+)", re.MULTILINE)


def quoted_commands(path: Path) -> list[str]:
    found = []
    for inline, block in QUOTED.findall(path.read_text(encoding="utf-8")):
        command = (inline or block).strip()
        if "BUG" in command or "MARKER" in command or "..." in command:
            continue  # a pattern, not a command
        found.append(command)
    return found


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_commands_are_accepted(path):
    markers = {bug.marker for bug in catalogue.BUGS}
    commands = quoted_commands(path)
    for command in commands:
        words = shlex.split(command)
        if words[0] == "sessionlab":
            try:
                args = build_parser().parse_args(words[1:])
            except SystemExit:
                pytest.fail(f"{path.name}: `{command}` is not a command sessionlab accepts")
            named = getattr(args, "bug", None)
            for bug in [named] if isinstance(named, str) else named or []:
                catalogue.find(bug)  # raises for a bug that does not exist
        else:
            for flag, value in zip(words, words[1:]):
                if flag == "-m":
                    named = [word for word in value.split() if word not in ("or", "and", "not")]
                    assert named and set(named) <= markers, f"{path.name}: `{command}` selects no bug's checks"


def test_the_documents_quote_commands():
    assert sum(len(quoted_commands(path)) for path in DOCUMENTS) > 50


def test_the_round_bounds_the_exercises_quote_are_the_code_s():
    from sessionlab.engines import stress

    quoted = re.compile(r"of\s+at\s+most\s+(\d+)|held\s+in\s+(\d+)\s+rounds?")
    checked = 0
    for bug in catalogue.BUGS:
        scenario = catalogue.home(bug).stress
        readme = ROOT / bug.exercise / "README.md"
        if scenario is None or not readme.exists():
            continue
        bound = stress.rounds_for(scenario.round_rate)
        for number in ("".join(groups) for groups in quoted.findall(readme.read_text(encoding="utf-8"))):
            assert int(number) == bound, f"{readme.relative_to(ROOT)} quotes {number} rounds; the bound is {bound}"
            checked += 1
    assert checked >= 10


def test_the_readme_s_demo_table_quotes_the_code_s_round_bounds():
    from sessionlab.engines import stress

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text[text.index("  #   bug "):].split("```")[0]
    rows: list[list[str]] = []
    for line in table.splitlines()[1:]:
        if re.match(r"^\s+\d+\s+[a-z-]+\s", line):
            rows.append([line])
        elif rows and line.strip():
            rows[-1].append(line)  # a cell wrapped onto the next line
    found = []
    for lines in rows:
        slug = lines[0].split()[1]
        joined = " ".join(" ".join(lines).split())
        held = re.findall(r"\((\d+) rounds?\)", joined)  # fixed/'s cell: "held (12 rounds)", wrapped or not
        assert "held" in joined and held, f"the demo row of {slug} shows no rounds held on fixed/"
        found.append((slug, int(held[-1])))
    assert [slug for slug, _ in found] == [home.bug.slug for home in catalogue.stressed()], found
    for slug, rounds in found:
        assert rounds == stress.rounds_for(catalogue.home(slug).stress.round_rate), (slug, rounds)


def test_the_hints_put_the_clock_where_the_reference_does():
    """fixed/manager.py never calls the clock with its lock held; a hint that places the timestamp says so."""
    import ast

    from sessionlab.learner import exercises

    tree = ast.parse((ROOT / "fixed" / "manager.py").read_text(encoding="utf-8"))
    under_lock = [node.lineno for block in ast.walk(tree) if isinstance(block, ast.With)
                  and any("_lock" in ast.unparse(item.context_expr) for item in block.items)
                  for node in ast.walk(block) if isinstance(node, ast.Call) and "clock" in ast.unparse(node.func)]
    assert under_lock == [], f"fixed/manager.py calls a clock under its lock at lines {under_lock}"
    placing = [hint for exercise in exercises.load(ROOT) if exercise.bug.module == "manager.py"
               for hint in exercise.hints if hint.startswith("Near-answer") and re.search(r"clock|timestamp", hint)]
    assert len(placing) >= 2
    for hint in placing:
        assert "before the lock" in hint and not re.search(r"(timestamp|clock)[^.;]* (inside|under the lock)", hint), hint
