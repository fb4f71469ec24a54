"""The code blocks of README.md, TECHNICAL.md and exercises/, each of one kind.

A block's kind follows from its fence and from the line above it, so the
documents need no markup but one comment:

program   a ```python block after a line that says "Save this as `NAME.py`":
          it is run; the ```console block after it ("$ python3 NAME.py") is what it prints
session   a ```console block whose first line is "$ python3 -c ...": the command is
          run, and the lines after it are what it prints
snippet   a ```sh block that runs ``python3 -c`` or a program saved above it
          (``python3 NAME.py``): it is run; an untagged block right after it is what
          it prints
quote     any other ```python block: lines of the project's code, found together
          and in order (their indentation aside) in the file the text names above it
          (`buggy/manager.py`, ...; under "### The fix", a file of fixed/); a
          line "..." stands for lines left out, and "..." inside a line for any text
example   a ```python block under a line ``<!-- an example: ... -->``: code that is
          in none of the project's files (a learner's fix, say), shown as it is
commands  a ```sh block of the lab's commands only (sessionlab, pytest, python3 -m
          pytest, pip, diff -u, ...): tests/test_docs.py parses them
output    an untagged or ```json block, or a ```console block that runs no python3:
          what a command prints
unknown   any other block; tests/test_doc_examples.py fails on it

Where a printed figure changes from run to run (threads racing), the document
says so in a line ``<!-- figures vary from run to run -->`` right above the
block of what it printed; numbers are then compared as numbers, not as values,
and tests/test_doc_examples.py says what in it stays fixed (FIXED).

A line a document cites is followed by the code it holds, in backticks: "line
119 (`record.access_count = count`)", "lines 117 to 119 of `buggy/manager.py`
(...)", a step of an interleaving table "118-120: `record.access_count = count`
stores 1"; a race report's "persistent.py:132 `with self._cache_lock:`" or
"locmem.py:41 pickled = self._cache[key]". The file is the one named with the
line, else the last one the text names above it. Code is matched token by
token, so `s` is not found inside `"%s"`. In a table, every piece of code the
file holds (with a name in it) must be on the lines cited, and the first and the last cited line
must each hold one ("takes the lock" stands for `with self._lock:`, "returns"
for a return); "N-M, the whole call of `name`" cites the function from its
def to its last line. In prose, the first code after "line N" is on line N,
and after "lines N to M" the next is on line M.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "TECHNICAL.md", *sorted((ROOT / "exercises").rglob("*.md"))]
VARYING = "<!-- figures vary from run to run -->"
EXAMPLE = "<!-- an example:"
FILE_NAMED = re.compile(r"`((?:buggy|fixed)/[\w/]+\.py)`")
SAVED_AS = re.compile(r"Save this as `([\w.]+\.py)`")
RUNS_SAVED = re.compile(r"^\s*python3 ([\w.]+\.py)\b", re.MULTILINE)
# The lines of a ```sh block of commands: the lab's own, the installer's, and comments.
COMMAND = re.compile(r"(sessionlab|pytest|python3 -m (pytest|sessionlab|venv)|\.venv/bin/\S+|pip install|diff -u)(\s|$)|#")


@dataclass
class Block:
    document: Path
    line: int  # of the opening fence, counted from 1
    info: str  # the fence's language: python, sh, console, json, or ""
    lines: list[str]
    above: str  # the text between the previous block (or heading) and this one
    varying: bool = False  # the document says its figures vary
    example: bool = False  # the document says it is an example, in no file of the project
    kind: str = ""
    file: str = ""  # a program's name, or the file a quote quotes
    printed: Block | None = field(default=None, repr=False)  # the block of what it prints

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def blocks(document: Path) -> list[Block]:
    """Every fenced block of a document, in order, with its kind."""
    lines = document.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    start, n = 0, 0
    while n < len(lines):
        opening = re.match(r"^(\s*)```(\S*)\s*$", lines[n])
        if not opening:
            n += 1
            continue
        indent = len(opening.group(1))
        end = n + 1
        while not re.match(r"^\s*```\s*$", lines[end]):
            end += 1
        above = lines[start:n]
        found.append(Block(document, n + 1, opening.group(2), [line[indent:] for line in lines[n + 1:end]],
                           "\n".join(above), varying=any(line.strip() == VARYING for line in above[-2:]),
                           example=any(line.strip().startswith(EXAMPLE) for line in above[-2:])))
        start = n = end + 1
    _classify(found, lines)
    return found


def _classify(found: list[Block], lines: list[str]) -> None:
    for number, block in enumerate(found):
        following = found[number + 1] if number + 1 < len(found) else None
        between = lines[block.line + len(block.lines) + 1:following.line - 1] if following else []
        adjacent = following is not None and all(not line.strip() or line.strip() == VARYING for line in between)
        first = block.lines[0] if block.lines else ""
        saved = {earlier.file for earlier in found[:number] if earlier.kind == "program"}
        if block.info == "python" and SAVED_AS.search(block.above):
            block.kind, block.file = "program", SAVED_AS.findall(block.above)[-1]
            if following is not None and following.info == "console" and \
                    following.lines[0] == f"$ python3 {block.file}":
                block.printed, following.kind = following, "printed"
        elif block.info == "console" and first.startswith('$ python3 -c "'):
            block.kind = "session"
        elif block.info == "sh" and ("python3 -c" in block.text or set(RUNS_SAVED.findall(block.text)) & saved):
            block.kind = "snippet"
            if following is not None and following.info == "" and adjacent:
                block.printed, following.kind = following, "printed"
        elif block.info == "python" and block.example:
            block.kind = "example"
        elif block.info == "python":
            block.kind, block.file = "quote", quoted_file(block, found[:number])
        elif block.info == "sh" and all(COMMAND.match(line.strip()) for line in block.lines if line.strip()):
            block.kind = "commands"
        elif (block.info in ("", "json") or block.info == "console" and not first.startswith("$ python3")) \
                and not block.kind:
            block.kind = "output"
        elif not block.kind:
            block.kind = "unknown"


def quoted_file(block: Block, before: list[Block]) -> str:
    """The file a quote is from: the last one the text names above it, back to its section's start."""
    texts = [block.above] + [b.above for b in reversed(before)]
    for text in texts:
        named = FILE_NAMED.findall(text)
        if named:
            return named[-1]
        if re.search(r"^## ", text, re.MULTILINE):
            break
    return ""


def session_command(block: Block) -> tuple[str, list[str]]:
    """A console session's command (its continuation lines joined) and the lines it printed."""
    command, rest = [block.lines[0][2:]], block.lines[1:]
    while "\n".join(command).count('"') % 2:
        command.append(rest.pop(0))
    return "\n".join(command), rest


def same_output(got: str, expected: str, varying: bool) -> bool:
    """Whether a run printed what the document shows (numbers as numbers where figures vary)."""
    def shape(text: str) -> list[str]:
        lines = [line.rstrip() for line in text.strip("\n").splitlines()]
        return [re.sub(r"\d+(\.\d+)?(e-?\d+)?", "N", line) for line in lines] if varying else lines

    return shape(got) == shape(expected)


def _pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part.strip()) for part in line.strip().split("...")))


def quoted_in(quote: list[str], source: list[str]) -> bool:
    """Whether the quote's lines are in the source together and in order, indented alike but for one
    common indentation ("..." lines skip lines)."""
    parts: list[list[str]] = [[]]
    for line in quote:
        if re.fullmatch(r"\s*\.\.\.\s*(#.*)?", line):
            parts.append([])
        elif line.strip():
            parts[-1].append(line)

    def indent(line: str) -> int:
        return len(line) - len(line.lstrip())

    def at(start: int, part: list[str], shift: int) -> bool:
        return all(n < len(source) and _pattern(line).fullmatch(source[n].strip()) is not None
                   and indent(source[n]) == indent(line) + shift for n, line in enumerate(part, start))

    def from_(start: int, rest: list[list[str]], shift: int | None) -> bool:
        if not rest:
            return True
        first, *later = rest
        for n in range(start, len(source)):
            moved = indent(source[n]) - indent(first[0]) if shift is None else shift
            if at(n, first, moved) and from_(n + len(first), later, moved):
                return True
        return False

    return from_(0, [part for part in parts if part], None)


# -- Line numbers ---------------------------------------------------------------------------------

LOCATED = re.compile(r"`?\b([\w/]+\.py):(\d+)`?")  # persistent.py:132, as a race report prints it
PROSE = re.compile(r"\blines? (\d+)(?: (?:to|and) (\d+))?")  # line 118, lines 116 to 118
IN_TABLE = re.compile(r"(?<![\w.\-])(\d{2,3})(?:-(\d{2,3}))?(?![\w%.\-])")  # a step's lines: 117-119:
CODE = re.compile(r"`[^`\n]+`")


@dataclass(frozen=True)
class Citation:
    """Lines a document cites, and the text after them that says what they hold."""

    document: Path
    line: int
    offset: int
    name: str  # the file as the text names it; "" for the file the text named last above
    ranges: tuple[tuple[int, int], ...]
    said: str
    form: str  # "located" (file:line, as a report prints it), "prose" or "table" (a step's lines)

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def _masked(text: str) -> str:
    """The text with fenced blocks and `code` blanked out (same length): where prose cites lines."""
    text = re.sub(r"^\s*```.*?^\s*```", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text,
                  flags=re.MULTILINE | re.DOTALL)
    return CODE.sub(lambda m: " " * len(m.group(0)), text)


def _interleaving_rows(masked: str) -> list[re.Match[str]]:
    """The rows of the tables that lay out an interleaving (headed "| step | thread A ..."): their
    cells cite the lines each step ran."""
    rows, inside = [], False
    for row in re.finditer(r"^.*$", masked, re.MULTILINE):
        line = row.group(0)
        if not line.startswith("|"):
            inside = False
        elif line.startswith("| step |"):
            inside = True
        elif inside and not set(line) <= set("|- "):
            rows.append(row)
    return rows


def citations(document: Path) -> list[Citation]:
    text = document.read_text(encoding="utf-8")
    masked = _masked(text)
    found: list[tuple[int, int, str, tuple[tuple[int, int], ...], str]] = []  # start, end, name, ranges, form
    for match in LOCATED.finditer(text):
        found.append((match.start(), match.end(), match.group(1), ((int(match.group(2)),) * 2,), "located"))
    taken = [(start, end) for start, end, *_ in found]
    for match in PROSE.finditer(masked):
        first = int(match.group(1))
        named = re.match(r"\s+of\s+`((?:buggy|fixed)/[\w/]+\.py)`", text[match.end():])  # lines 1 to 9 of `buggy/x.py`
        end = match.end() + (named.end() if named else 0)
        found.append((match.start(), end, named.group(1) if named else "", ((first, int(match.group(2) or first)),),
                      "prose"))
    for row in _interleaving_rows(masked):
        for cell in re.finditer(r"(?<=\|)[^|]+(?=\|)", row.group(0)):
            base = row.start() + cell.start()
            groups: list[list[re.Match[str]]] = []
            for number in IN_TABLE.finditer(cell.group(0)):
                start = base + number.start()
                if cell.start() == 1 or re.search(r"offsets? $", masked[start - 8:start]) or \
                        any(a <= start < b for a, b in taken):
                    continue
                gap = cell.group(0)[groups[-1][-1].end():number.start()] if groups else None
                if gap in (", ", " and "):
                    groups[-1].append(number)
                else:
                    groups.append([number])
            for group in groups:
                ranges = tuple((int(m.group(1)), int(m.group(2) or m.group(1))) for m in group)
                found.append((base + group[0].start(), base + group[-1].end(), "", ranges, "table"))
    found.sort()
    result = []
    for n, (start, end, name, ranges, form) in enumerate(found):
        stop = text.find("\n", end)
        stop = len(text) if stop < 0 else stop
        if form != "located":
            row = text.rfind("\n", 0, start) + 1
            if text.startswith("|", row):
                stop = min(stop, text.find("|", end) if text.find("|", end) >= 0 else stop)
            else:
                stop = min(stop + 1 + text[stop + 1:].find("\n") if "\n" in text[stop + 1:] else stop, end + 100)
            later = [s for s, *_ in found[n + 1:] if s >= end]
            if later:
                stop = min(stop, later[0])
        result.append(Citation(document, text.count("\n", 0, start) + 1, start, name, ranges, text[end:stop], form))
    return result


def fragments(citation: Citation) -> list[str]:
    """What a citation says the lines hold: its code in backticks, in order; after file:line as a
    report prints it, the source that follows."""
    found = [fragment.strip("`").strip() for fragment in CODE.findall(citation.said)]
    plain = citation.said.strip()
    return [fragment for fragment in found if fragment] or \
        ([plain] if citation.form == "located" and plain else [])


TOKEN = re.compile(r"""\.\.\.|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|\w+|\S""")
# What an interleaving table says instead of a line's code.
PHRASES = {"takes the lock": "with self._lock:", "returns": "return ..."}
WHOLE_CALL = re.compile(r"^, the whole call of `(\w+)`")


def holds(line: str, code: str) -> bool:
    """Whether a line of source holds a piece of code: its tokens, one after the other ("..." for any)."""
    pattern = "\0"
    for token in TOKEN.findall(code):
        pattern += "(?:.*?\0)?" if token == "..." else re.escape(token) + "\0"
    return re.search(pattern, "\0" + "\0".join(TOKEN.findall(line)) + "\0") is not None


def functions(source: list[str]) -> dict[str, set[tuple[int, int]]]:
    """Every function of a file by name, and the lines each spans, from its def to its last line."""
    import ast

    spans: dict[str, set[tuple[int, int]]] = {}
    for node in ast.walk(ast.parse("\n".join(source))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            spans.setdefault(node.name, set()).add((node.lineno, node.end_lineno or node.lineno))
    return spans


def misquoted(citation: Citation, source: list[str]) -> str:
    """What is wrong with a citation of lines of this source, or "" when the lines hold what it says."""
    said = fragments(citation)
    cited = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in citation.ranges)

    def line(number: int) -> str:
        return source[number - 1] if 0 < number <= len(source) else ""

    def shown(numbers: range) -> str:
        return "; ".join(f"{n}: {line(n).strip()}" for n in numbers)

    whole = WHOLE_CALL.match(citation.said) if citation.form == "table" else None
    if whole:
        spans = functions(source).get(whole.group(1), set())
        if len(citation.ranges) == 1 and citation.ranges[0] in spans:
            return ""
        return f"lines {cited} are not the whole of {whole.group(1)}: it spans " + \
            (", ".join(f"{a}-{b}" for a, b in sorted(spans)) or "nothing (no such function)")
    if not said:
        return f"lines {cited} are cited without the code they hold (`code` after them): {citation.said.strip()!r}"
    if citation.form in ("located", "prose"):
        (first, last), = citation.ranges
        wanted = [(first, said[0])] + ([(last, said[1] if len(said) > 1 else "")] if last != first else [])
        for number, code in wanted:
            if not code or not holds(line(number), code):
                return f"line {number} holds {line(number).strip()!r}, not `{code}`"
        return ""
    numbers = [n for a, b in citation.ranges for n in range(a, b + 1)]
    # The code the file holds, with a name in it (`{}` in "copies `{}`" is a value, not a line's code).
    in_file = [code for code in said if re.search(r"[A-Za-z_]", code) and any(holds(text, code) for text in source)]
    for code in in_file:
        if not any(holds(line(n), code) for n in numbers):
            return f"`{code}` is not on lines {cited} ({shown(range(numbers[0], numbers[-1] + 1))})"
    evidence = in_file + [code for phrase, code in PHRASES.items() if phrase in citation.said]
    for a, b in citation.ranges:
        for end in sorted({a, b}):
            if not any(holds(line(end), code) for code in evidence):
                return (f"line {end}, where lines {cited} {'start' if end == a else 'end'}, holds "
                        f"{line(end).strip()!r}: none of the code the step names ({said})")
    return ""
