"""The race report as text: the one-sentence account of the race, and the interleaving laid out.

``explain`` derives what went wrong from the accesses alone: two threads read
the same state before either wrote it back (a lost update, a check-then-act),
one thread wrote between another's read and write back, or one thread changed
in place an object another had already read. ``interleaving`` lays the steps
out one column per thread, every line wrapped inside its column at word and
punctuation boundaries, or, when the columns would be too narrow, one column
with a thread tag on every line. Helper calls that are not where the race is
fold into one line naming the call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sessionlab.reports.trace import Access, Line, Step

MIN_COLUMN = 40  # narrower than this, threads go one under the other instead of side by side
GUTTER = 5  # the step number, "  1  "
RULE = " │ "  # between two thread columns

_REMOVERS = frozenset({"pop", "popitem", "popleft", "remove", "discard"})


# -- Wrapping -------------------------------------------------------------------------

_SOFT = re.compile(r"[.(\[,/=]")  # a long token may break after one of these, never inside a word
# Short units wrapping must not break at their spaces: a quoted string, a bracketed or braced
# value (a dict's repr), "name = value".
_UNIT = re.compile(r"""(?<!\w)'[^'\n]*'|"[^"\n]*"|\{[^{}\n]*\}|\[[^\[\]\n]*\]|\([^()\n]*\)"""
                   r"""|(?<![\w.\[\]'-])[\w.\[\]'-]+ = (?:\{[^{}\n]*\}|\[[^\[\]\n]*\]|'[^'\n]*'|[^\s,;:]+)""")
_JOIN = "\x00"  # stands for a space inside a unit while wrapping


def wrap(text: str, width: int, indent: str = "", subsequent: str | None = None) -> list[str]:
    """Wrap text to width at spaces; a token too long for a line breaks after punctuation.

    Never breaks inside a word, an id or a number (not at hyphens either), nor
    inside a short quoted or bracketed value or a "name = value", unless it is
    longer than a whole line.
    """
    subsequent = indent if subsequent is None else subsequent
    text = _protect(text, max(1, width - max(len(indent), len(subsequent))))
    lines: list[str] = []
    current, empty = indent, True
    for word in text.split():
        while True:
            candidate = current + ("" if empty else " ") + word
            if len(candidate) <= width:
                current, empty = candidate, False
                break
            if not empty:
                lines.append(current)
                current, empty = subsequent, True
                continue
            head, word = _split(word, max(1, width - len(current)))
            lines.append(current + head)
            current, empty = subsequent, True
            if not word:
                break
    if not empty or not lines:
        lines.append(current.rstrip() if empty else current)
    return [line.replace(_JOIN, " ") for line in lines]


def _protect(text: str, room: int) -> str:
    """Join the spaces of each unit that fits on a line; in a unit too long, look for smaller ones."""
    joined, position = [], 0
    while unit := _UNIT.search(text, position):
        if len(unit[0]) <= room:
            joined.append(text[position:unit.start()] + unit[0].replace(" ", _JOIN))
            position = unit.end()
        else:
            joined.append(text[position:unit.start() + 1])
            position = unit.start() + 1
    return "".join(joined) + text[position:]


def _split(word: str, room: int) -> tuple[str, str]:
    """The longest head of word that fits in room, cut after punctuation if there is any."""
    cuts = [match.end() for match in _SOFT.finditer(word) if match.end() <= room]
    cut = cuts[-1] if cuts else room
    return word[:cut], word[cut:]


# -- What went wrong, in one sentence ------------------------------------------------------


@dataclass
class Why:
    sentence: str = ""
    states: set[tuple[Any, Any]] = field(default_factory=set)  # the racing state: (object id, key or None)
    names: set[str] = field(default_factory=set)  # the same, as the report names it


@dataclass(frozen=True)
class _Touch:
    position: int
    thread: int
    access: Access

    @property
    def obj(self) -> Any:
        return self.access.state[0] if self.access.state[0] is not None else self.access.target

    @property
    def key(self) -> Any:
        return self.access.state[1] if self.access.state[0] is not None else None


def explain(steps: tuple[Step, ...]) -> Why:
    """What went wrong, in one sentence, and the state the threads raced on."""
    touches = [_Touch(n, thread, access) for n, (thread, line, access) in enumerate(
        (step.thread, line, access) for step in steps for line in step.lines for access in line.touched)]
    methods = _methods(steps)
    found = Why()
    by_object: dict[Any, list[_Touch]] = {}
    for touch in touches:
        by_object.setdefault(touch.obj, []).append(touch)
    # State a thread read plainly (a key, an attribute) says more than state it only asked a method of.
    by_object = dict(sorted(by_object.items(), key=lambda item: all(t.access.method for t in item[1]
                                                                     if t.access.kind == "read")))
    for obj, group in by_object.items():  # two threads read it before either wrote it back
        for key in sorted({t.key for t in group if t.key is not None}, key=str) or [None]:
            relevant = [t for t in group if key is None or t.key in (key, None)]
            sentence = _both_read(relevant, methods) or _written_between(relevant, methods)
            if sentence:
                found.states.add((obj, key))
                found.names.add(_name(relevant, key))
                found.sentence = found.sentence or sentence
    if not found.sentence:
        _changed_in_place(touches, methods, found) or _stale(touches, methods, found)
    return found


def _methods(steps: tuple[Step, ...]) -> dict[int, str]:
    """The public method each thread called: its outermost function in the implementation."""
    methods: dict[int, str] = {}
    for step in steps:
        for line in step.lines:
            if not line.calls and line.function:
                methods.setdefault(step.thread, line.function.rsplit(".", 1)[-1])
    return methods


def _who(thread: int, methods: dict[int, str]) -> str:
    return f"the {methods[thread]} call (thread {thread})" if thread in methods else f"thread {thread}"


def _name(touches: list[_Touch], key: Any) -> str:
    """How the sentence names state: "access_count", "_sessions['s1']"."""
    keyed = [t for t in touches if key is not None and t.key == key and not t.access.method]
    target = (keyed or touches)[0].access.target
    head, bracket, rest = target.partition("[")
    return head.split(".", 1)[-1] + bracket + rest


def _first(touches: list[_Touch], thread: int, kind: str, after: int = -1) -> _Touch | None:
    return next((t for t in touches if t.thread == thread and t.access.kind == kind and t.position > after), None)


def _both_read(touches: list[_Touch], methods: dict[int, str]) -> str:
    threads = sorted({t.thread for t in touches})
    for a in threads:
        for b in (b for b in threads if b > a):
            read_a, read_b = _first(touches, a, "read"), _first(touches, b, "read")
            if read_a is None or read_b is None:
                continue
            write_a = _first(touches, a, "write", read_a.position)
            write_b = _first(touches, b, "write", read_b.position)
            if write_a is None or write_b is None:
                continue
            if max(read_a.position, read_b.position) > min(write_a.position, write_b.position):
                continue
            name = _name(touches, read_a.key)
            value = f" = {read_a.access.value}" if read_a.access.value and \
                read_a.access.value == read_b.access.value else ""
            looked_up = read_a.key is not None and not read_a.access.method and "[" in read_a.access.target
            verb = "looked up" if looked_up else "read"
            method = write_a.access.method or write_b.access.method
            done = ("removed it" if method in _REMOVERS else "cleared it" if method == "clear"
                    else "changed it" if method else "wrote it back, so one write overwrote the other")
            same = methods.get(a) and methods.get(a) == methods.get(b)
            who = f"both {methods[a]} calls" if same and len(threads) == 2 else f"threads {a} and {b} both"
            return f"{who} {verb} {name}{value} before either {done}"
    return ""


def _written_between(touches: list[_Touch], methods: dict[int, str]) -> str:
    for read in (t for t in touches if t.access.kind == "read"):
        write_back = _first(touches, read.thread, "write", read.position)
        if write_back is None:
            continue
        between = next((t for t in touches if t.thread != read.thread and t.access.kind == "write"
                        and read.position < t.position < write_back.position), None)
        if between is not None:
            value = f" = {read.access.value}" if read.access.value else ""
            return (f"{_who(between.thread, methods)} wrote {_name(touches, read.key)} after "
                    f"{_who(read.thread, methods)} had read it{value} and before it wrote it back, "
                    f"so that write was lost")
    return ""


def _changed_in_place(touches: list[_Touch], methods: dict[int, str], found: Why) -> bool:
    """A thread changed an object in place after another thread had read it (and still holds it)."""
    for change in (t for t in touches if t.access.kind == "write" and t.access.state[0] is not None):
        reads = [t for t in touches if t.position < change.position and t.thread != change.thread
                 and t.access.kind == "read" and t.access.value_id == change.access.state[0]]
        if not reads:
            continue
        read = reads[-1]
        method = change.access.method
        verb = "cleared" if method == "clear" else "removed items from" if method in _REMOVERS else "changed"
        kind = {"{": "dict", "[": "list"}.get((read.access.value or " ")[0], "object")
        name = _name([read], read.key)
        found.sentence = (f"{_who(change.thread, methods)} {verb} {name} in place after "
                          f"{_who(read.thread, methods)} had read it: thread {read.thread} still holds "
                          f"that same {kind}")
        found.states |= {(read.obj, read.key), (change.obj, None)}
        found.names.add(name)
        return True
    return False


def _stale(touches: list[_Touch], methods: dict[int, str], found: Why) -> bool:
    """A thread wrote what another had read, and the other went on with what it had read."""
    for write in (t for t in touches if t.access.kind == "write" and not t.access.method):
        read = next((t for t in reversed(touches) if t.position < write.position and t.thread != write.thread
                     and t.access.kind == "read" and (t.obj, t.key) == (write.obj, write.key)), None)
        if read is not None:
            value = f" = {read.access.value}" if read.access.value else ""
            name = _name([read], read.key)
            found.sentence = (f"{_who(write.thread, methods)} wrote {name} after {_who(read.thread, methods)} "
                              f"had read it{value}, and thread {read.thread} went on with what it had read")
            found.states.add((read.obj, read.key))
            found.names.add(name)
            return True
    return False


def _racing(access: Access, states: set[tuple[Any, Any]]) -> bool:
    obj, key = access.state if access.state[0] is not None else (access.target, None)
    return any(obj == o and (key is None or k is None or key == k) for o, k in states)


# -- The interleaving ---------------------------------------------------------------------


def interleaving(steps: tuple[Step, ...], workers: tuple[Any, ...], width: int, verbose: bool = False) -> list[str]:
    """The steps, one column per thread when the columns fit, else one column with thread tags."""
    states = explain(steps).states
    files = {line.location.rsplit(":", 1)[0] for step in steps for line in step.lines}
    one_file = next(iter(files)) if len(files) == 1 else None
    threads = max(len(workers), 1 + max(step.thread for step in steps))
    column = (width - GUTTER - len(RULE) * (threads - 1)) // threads
    cells = [_items(step.lines, 0, states, verbose, one_file, step.lines[0]) for step in steps]
    folded = any(text.lstrip().startswith("↳") for items in cells for _, _, text in items)
    lines = wrap("The interleaving: each step is what one thread ran before the scheduler switched "
                 "threads. Under each line: in brackets, what it read or wrote (= the value), then the "
                 "locks it took, released or waited for."
                 + (" ↳ folds a helper call that is not where the race is (-v shows its lines)."
                    if folded else ""), width)
    lines.append("")
    if one_file:
        lines.append(f"(line numbers of {one_file})")
    shown = _columns(steps, cells, workers, threads, column) if column >= MIN_COLUMN else _rows(steps, cells, width)
    return lines + shown + _framework_files(steps, cells, width)


def _framework_files(steps: tuple[Step, ...], cells: list[list[tuple[str, str, str]]], width: int) -> list[str]:
    """Where the framework's files that the interleaving shows are, by their path in their package."""
    texts = {text for items in cells for _, _, text in items}
    paths = dict.fromkeys(line.path for step in steps for line in step.lines
                          if line.path and line.source in texts)
    if not paths:
        return []
    lines = ["", "The framework's own files in it:"]
    for path in paths:
        lines += wrap(f"{path.rsplit('/', 1)[-1]} is {path}", width, "  ", "    ")
    return lines


def _labels(workers: tuple[Any, ...], threads: int) -> list[str]:
    return [f"thread {n}: {workers[n].label}" if n < len(workers) else f"thread {n}" for n in range(threads)]


def _columns(steps: tuple[Step, ...], cells: list[list[tuple[str, str, str]]], workers: tuple[Any, ...],
             threads: int, column: int) -> list[str]:
    def row(gutter: str, texts: dict[int, str]) -> str:
        return (gutter.ljust(GUTTER) + RULE.join(texts.get(n, "").ljust(column) for n in range(threads))).rstrip()

    headings = [wrap(label, column) for label in _labels(workers, threads)]
    lines = [row("step" if n == 0 else "", {t: h[n] for t, h in enumerate(headings) if n < len(h)})
             for n in range(max(map(len, headings)))]
    lines.append("─" * GUTTER + "─┼─".join("─" * column for _ in range(threads)))
    for number, (step, items) in enumerate(zip(steps, cells), 1):
        if number > 1:
            lines.append(row("", {}))
        texts = _render(items, column)
        lines += [row(f"{number:>3}" if n == 0 else "", {step.thread: text}) for n, text in enumerate(texts)]
    return lines


def _rows(steps: tuple[Step, ...], cells: list[list[tuple[str, str, str]]], width: int) -> list[str]:
    lines: list[str] = []
    for number, (step, items) in enumerate(zip(steps, cells), 1):
        tag = f"thread {step.thread} │ "
        for n, text in enumerate(_render(items, width - GUTTER - len(tag))):
            lines.append((f"{number:>3}" if n == 0 else "").ljust(GUTTER) + (tag if n == 0 else
                         "│ ".rjust(len(tag))) + text)
    return lines


def _render(items: Iterable[tuple[str, str, str]], column: int) -> list[str]:
    return [part for first, rest, text in items for part in wrap(text, column, first, rest)]


def _items(lines: tuple[Line, ...], depth: int, states: set[tuple[Any, Any]], verbose: bool,
           one_file: str | None, first: Line) -> list[tuple[str, str, str]]:
    """What one step shows: (first indent, continuation indent, text) for each entry.

    Lines inside a call from the current depth form a group: shown one level
    deeper when verbose or where the race is (or a lock is used), else folded.
    ``first`` is the step's first line: a group that holds it was entered before.
    """
    items: list[tuple[str, str, str]] = []
    pad = "  " * depth
    n = 0
    while n < len(lines):
        line = lines[n]
        if not verbose and _inside_framework(line) and not any(_racing(a, states) for a in line.touched):
            n += 1  # a framework's line shows where the race is in it; -v shows them all
            continue
        if len(line.calls) <= depth:
            items += _line(line, pad, one_file)
            n += 1
            continue
        end = n
        while end < len(lines) and len(lines[end].calls) > depth and lines[end].calls[depth] == line.calls[depth]:
            end += 1
        group = lines[n:end]
        hot = any(member.locks or any(_racing(a, states) for a in member.touched) for member in group)
        if verbose or hot:
            items += _items(group, depth + 1, states, verbose, one_file, first)
        else:
            items.append(_fold(group, depth, pad, one_file, resumed=group[0] is first))
        n = end
    return items


def _inside_framework(line: Line) -> bool:
    """Whether a line is in a framework's file (named from its package: django/core/...)."""
    return bool(line.path)


def _prefix(line: Line, one_file: str | None) -> str:
    return f"{line.location.rsplit(':', 1)[1]:>3} " if one_file else f"{line.location} "


def _line(line: Line, pad: str, one_file: str | None) -> list[tuple[str, str, str]]:
    prefix = _prefix(line, one_file)
    under = pad + " " * len(prefix)
    ops = "; ".join(str(op) for op in line.locks)
    if line.source.startswith("with ") and line.locks and all(op.op == "release" for op in line.locks):
        return [(pad + prefix, under, f"end of with: {ops}")]
    items = [(pad + prefix, under + "  ", line.source or "(source not available)")]
    shown = [_shown(access, line.source) for access in line.touched] or list(line.accesses)
    items += [(under, under + " ", f"[{access}]") for access in shown]
    items += [(under, under + "  ", str(op)) for op in line.locks]
    return items


def _shown(access: Access, source: str) -> str:
    """An access as the interleaving shows it: without its class when the line names the attribute."""
    shown = access.shown
    owner, dot, rest = access.target.partition(".")
    attribute = re.split(r"[\[.]", rest)[0] if dot else ""
    if attribute and re.search(rf"\b{re.escape(attribute)}\b", source):
        shown = shown.replace(access.target, access.target[len(owner) + 1:], 1)
    return shown


def _fold(group: tuple[Line, ...], depth: int, pad: str, one_file: str | None,
          resumed: bool) -> tuple[str, str, str]:
    """One line for a helper call: its name and what it does."""
    callee = next((line for line in group if len(line.calls) == depth + 1), group[0])
    name = callee.function.rsplit(".", 1)[-1] or "a helper"
    touched = dict.fromkeys(access.target.split(".", 1)[-1] for line in group for access in line.touched)
    what = callee.doc or (f"touches {', '.join(touched)}" if touched else "")
    indent = pad + " " * (len("000 ") if one_file else len(group[0].calls[depth]) + 1)
    text = f"↳ {'(still in) ' if resumed else ''}{name}(){': ' + what if what else ''}"
    return indent, indent + "  ", text
