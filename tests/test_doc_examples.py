"""The code in the documents runs, quotes what the files hold, and cites the lines it names.

Every block of README.md, TECHNICAL.md and exercises/ is of a kind
(``tests/doc_blocks.py`` says how a block's kind is told): programs, sessions and
snippets are run, and what they print is compared with what the document shows
(where its figures vary, as numbers, and FIXED below checks what stays fixed);
they import no module by the name it had before it moved; quotes are found in
the file they quote; and every line number the text cites ("line 118", "lines
116 to 118", "persistent.py:132", a table's "117-119:") is followed by code that
the cited line holds. The programs run in a background
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
    DOCUMENTS, ROOT, Block, Citation, blocks, citations, misquoted, quoted_in, same_output, session_command)

BLOCKS = [block for document in DOCUMENTS for block in blocks(document)]
RUN = [block for block in BLOCKS if block.kind in ("program", "session", "snippet")]
QUOTES = [block for block in BLOCKS if block.kind == "quote"]
# The programs' outputs (a disassembly among them) are those of the CPython the documents quote.
QUOTED_PYTHON = (3, 11)
SECONDS = 120
GIL = getattr(sys, "_is_gil_enabled", lambda: True)()

_FOLDER = tempfile.TemporaryDirectory()  # the programs' files, and a python3 that is this interpreter


def _command(block: Block) -> list[str]:
    """How to run a block, with this interpreter standing for the documents' python3."""
    folder = Path(_FOLDER.name)
    if block.kind == "program":
        (folder / block.file).write_text(block.text, encoding="utf-8")
        return [sys.executable, str(folder / block.file)]
    python3 = folder / "python3"
    python3.write_text(  # a program the document saved above is found by its name
        f'#!/bin/sh\nif [ -n "$1" ] && [ ! -e "$1" ] && [ -e "{folder}/$1" ]; then\n'
        f'    program="{folder}/$1"; shift; exec "{sys.executable}" "$program" "$@"\nfi\n'
        f'exec "{sys.executable}" "$@"\n', encoding="utf-8")
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


def _gil_window(out: str) -> None:
    """The program sets 1 microsecond; a bare += loses nothing on a GIL build, the one with a call loses."""
    assert out.splitlines()[0].endswith("switch interval 1e-06 s"), out
    bare = re.search(r"^ +bare: expected 1600000, counted \d+, lost (\d+) ", out, re.MULTILINE)
    call = re.search(r"^with_call: expected 1600000, counted \d+, lost (\d+) ", out, re.MULTILINE)
    assert bare and call, out
    assert int(bare.group(1)) == 0 or not GIL, out
    assert int(call.group(1)) > 0, out


def _snapshot_copy(out: str) -> None:
    """dict(view) copies in C, where no other thread runs on a GIL build; how often render crashes is luck."""
    assert re.search(r"^  dict\(view\): 0 of 50000 reads", out, re.MULTILINE) or not GIL, out


def _default_interval(out: str) -> None:
    """Rounds at CPython's own interval, not fast_switching's, and they almost never break. Measured
    with both cores busy: 1 of 500 lost-updates rounds broke, none of the others' (at 1 microsecond
    about half of them break)."""
    rows = re.findall(r"^[a-z-]+: (\d+) of 50 rounds broke at switch interval (\S+)$", out, re.MULTILINE)
    assert len(rows) == 3 and all(interval == "0.005" and int(broke) <= 10 for broke, interval in rows), out


# What stays fixed in an output whose figures vary: by the program's name, or by what a snippet prints.
FIXED = {"gil_window.py": _gil_window, "snapshot_copy.py": _snapshot_copy,
         "rounds broke at switch interval": _default_interval}


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
    if varying:
        fixed = [check for key, check in FIXED.items() if key == block.file or key in block.text]
        assert len(fixed) == 1, f"{block.where}: its figures vary; say in FIXED what stays fixed in them"
        fixed[0](out)


def test_the_code_imports_no_module_by_a_name_it_had_before_it_moved():
    import sessionlab

    code = [block for block in BLOCKS if block.kind in ("program", "session", "snippet", "example")]
    for old in sessionlab.MOVED:
        package, name = old.rsplit(".", 1)
        stale = re.compile(rf"\b{re.escape(old)}\b|\bfrom {re.escape(package)} import [^\n]*\b{name}\b")
        for block in code:
            assert not stale.search(block.text), f"{block.where} imports {old}: it is {sessionlab.MOVED[old]} now"


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
        locmem = pytest.importorskip("django.core.cache.backends.locmem", reason="needs Django (the realworld extra)")

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
    problem = misquoted(citation, source)
    assert not problem, f"{citation.where}, {name}: {problem}"


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
