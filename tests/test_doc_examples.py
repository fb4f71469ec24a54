"""The code in the documents runs, quotes what the files hold, and cites the lines it names.

Every block of README.md, TECHNICAL.md and exercises/ is of a kind
(``tests/doc_blocks.py`` says how a block's kind is told): programs, sessions and
snippets are run, and what they print is compared with what the document shows;
quotes are found in the file they quote; and every line number the text cites
("line 118", "lines 116 to 118", "persistent.py:132", a table's "117-119:") is
followed by code that the cited line holds. The programs run in a background
process from the moment the tests are collected (tests/conftest.py calls
``start_in_background``), on the other core.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

import pytest
from background import Background
from doc_blocks import (
    DOCUMENTS, ROOT, Block, Citation, blocks, citations, fragments, quoted_in, same_output, session_command)

BLOCKS = [block for document in DOCUMENTS for block in blocks(document)]
RUN = [block for block in BLOCKS if block.kind in ("program", "session", "snippet")]
QUOTES = [block for block in BLOCKS if block.kind == "quote"]
# The programs' outputs (a disassembly among them) are those of the CPython the documents quote.
QUOTED_PYTHON = (3, 11)
SECONDS = 120

_FOLDER = tempfile.TemporaryDirectory()  # the programs' files, and a python3 that is this interpreter


def _command(block: Block) -> list[str]:
    """How to run a block, with this interpreter standing for the documents' python3."""
    folder = Path(_FOLDER.name)
    if block.kind == "program":
        (folder / block.file).write_text(block.text, encoding="utf-8")
        return [sys.executable, str(folder / block.file)]
    python3 = folder / "python3"
    python3.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
    python3.chmod(0o755)
    return ["bash", "-c", session_command(block)[0] if block.kind == "session" else block.text]


PROGRAMS = Background("the documents' programs", lambda: [(block.where, _command(block)) for block in RUN],
                      cwd=ROOT, seconds=SECONDS, stderr=None,
                      env=lambda: dict(os.environ, PATH=f"{_FOLDER.name}{os.pathsep}{os.environ['PATH']}",
                                       PYTHONPATH=str(ROOT)))
start_in_background = PROGRAMS.start


def output_of(block: Block) -> str:
    code, out = PROGRAMS.result(block.where)
    assert code == 0, f"{block.where}: the {block.kind} exited with {code}:\n{out[-3000:]}"
    return out


def test_every_block_is_of_a_kind():
    unknown = [f"{b.where}: ```{b.info}" for b in BLOCKS if b.kind == "unknown"]
    assert not unknown, "blocks of no kind (see tests/doc_blocks.py):\n" + "\n".join(unknown)
    assert len(RUN) >= 7 and len(QUOTES) >= 20


@pytest.mark.parametrize("block", RUN, ids=lambda b: b.where)
def test_the_code_runs_and_prints_what_the_document_shows(block):
    out = output_of(block)
    expected = session_command(block)[1] if block.kind == "session" else \
        block.printed.lines if block.printed else None
    if expected is None:
        return  # nothing shown: that it ran is the check
    if sys.version_info[:2] != QUOTED_PYTHON:
        pytest.skip(f"the document quotes the output of Python {'.'.join(map(str, QUOTED_PYTHON))}")
    varying = block.printed is not None and block.printed.varying
    shown = "\n".join(expected)
    if block.kind == "program" and block.printed:
        shown = "\n".join(expected[1:])  # the first line is the command
    assert same_output(out, shown, varying), f"{block.where} printed:\n{out}\nThe document shows:\n{shown}"


@pytest.mark.parametrize("block", QUOTES, ids=lambda b: b.where)
def test_a_quote_is_found_in_the_file_it_names(block):
    assert block.file, f"{block.where}: the text above the quote names no file (`buggy/manager.py`, ...)"
    heading = [line for line in block.above.splitlines() if line.startswith("### ")]
    source = (ROOT / block.file).read_text(encoding="utf-8").splitlines()
    assert quoted_in(block.lines, source), f"{block.where}: these lines are not in {block.file}:\n{block.text}"
    if heading and heading[-1] == "### The fix":
        assert block.file.startswith("fixed/"), f"{block.where}: a fix quoted from {block.file}"


# -- Line numbers -------------------------------------------------------------------------------

CITATIONS = [citation for document in DOCUMENTS for citation in citations(document)]


def _source(citation: Citation) -> tuple[str, list[str]]:
    """The file cited: named with the line, else the last one the document names above it.

    A bare file name is one a race report printed; the reports the documents show are of buggy/.
    """
    name = citation.name
    if name.endswith("locmem.py"):
        import django.core.cache.backends.locmem as locmem

        return "locmem.py", Path(locmem.__file__).read_text(encoding="utf-8").splitlines()
    if name and "/" not in name:
        name = f"buggy/{name}"
    if not name:
        above = citation.document.read_text(encoding="utf-8")[:citation.offset]
        named = re.findall(r"((?:buggy|fixed)/[\w/]+\.py)", above)
        name = named[-1] if named else ""
    path = ROOT / name
    return name, path.read_text(encoding="utf-8").splitlines() if name and path.is_file() else []


def test_the_documents_cite_lines():
    assert len(CITATIONS) >= 30


@pytest.mark.parametrize("citation", CITATIONS, ids=lambda c: f"{c.where}-{c.ranges[0][0]}")
def test_a_cited_line_holds_the_code_the_text_says_it_does(citation):
    name, source = _source(citation)
    cited = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in citation.ranges)
    assert source, f"{citation.where}: cites line {cited} of no file the text names above it"
    said = fragments(citation)
    assert said, (f"{citation.where}: cites {name} line {cited} without saying what is there "
                  f"(`code` after it): {citation.said.strip()!r}")
    lines = [source[n - 1] for a, b in citation.ranges for n in range(a, b + 1) if 0 < n <= len(source)]
    assert any(fragment in line for fragment in said for line in lines), (
        f"{citation.where}: {name} line {cited} holds {[line.strip() for line in lines]}, not {said}")


NAMED = re.compile(r"`((?:sessionlab|buggy|fixed|tests|exercises)/[\w./<>-]*)`")


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_file_and_folder_the_documents_name_is_there(document):
    text = document.read_text(encoding="utf-8")
    missing = []
    for name in NAMED.findall(text):
        if "<" in name:  # a pattern: sessionlab/bugs/<bug>.py
            name = name.split("<")[0]
        if not (ROOT / name).exists():
            missing.append(name)
    for first, row in re.findall(r"^\| `((?:sessionlab|buggy|fixed)/[\w./]*)`(.*)$", text, re.MULTILINE):
        folder = ROOT / first if first.endswith("/") else (ROOT / first).parent
        for name in re.findall(r"`(\w+\.py)`", row):  # a file of the row's folder, or of the one above it
            if not ((folder / name).exists() or (folder.parent / name).exists()):
                missing.append(f"{name} (beside {first})")
    assert not missing, f"{document.name} names what is not there: {sorted(set(missing))}"
