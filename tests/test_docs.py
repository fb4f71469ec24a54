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
            if getattr(args, "bug", None):
                catalogue.find(args.bug)  # raises for a bug that does not exist
        else:
            for flag, value in zip(words, words[1:]):
                if flag == "-m":
                    assert value in markers, f"{path.name}: `{command}` selects no bug's checks"


def test_the_documents_quote_commands():
    assert sum(len(quoted_commands(path)) for path in DOCUMENTS) > 50
