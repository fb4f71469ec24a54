"""The race report reads well at any width: wrapped columns, folded helpers, locks, one sentence.

Every race bug's report on the pristine buggy/ is rendered at 80, 100 and 140
columns: no line is longer than the width, the values that matter (the colliding
id, the counts) appear whole, each thread's lock operations are shown, the
sentence saying what went wrong comes before the interleaving, and helper calls
that are not where the race is fold into one line unless verbose.
"""

import importlib.util
import json
import re
import sys
from types import SimpleNamespace

import pytest

from sessionlab import catalogue, implementations
from sessionlab.engines import exploration
from sessionlab.engines.exploration import threads
from sessionlab.engines.exploration.search import explore_workers
from sessionlab.figure import Figure
from sessionlab.reports.race import RaceReport
from sessionlab.reports.text import GUTTER, MIN_COLUMN, wrap
from sessionlab.reports.trace import Line, LockOp, Step

AVAILABLE, WHY = exploration.frontrun_available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=WHY)

WIDTHS = (80, 100, 120, 140)
SLUGS = ("lost-updates", "lost-increments", "stats-drift", "id-collision", "shared-snapshot")

# What each report must say, whole, wherever it wraps: the sentence, and values in the interleaving.
SENTENCES = {
    "lost-updates": "both update_session calls read metadata = {'cart': 'empty', 'theme': 'light'} "
                    "before either wrote it back, so one write overwrote the other",
    "lost-increments": "both increment_access calls read access_count = 0 before either wrote it back, "
                       "so one write overwrote the other",
    "stats-drift": "both delete_session calls looked up _sessions[s] before either removed it",
    "id-collision": "both create_session calls read _next_id = 2 before either wrote it back, "
                    "so one write overwrote the other",
    "shared-snapshot": "the delete_session call (thread 1) cleared metadata in place after the "
                       "get_session call (thread 0) had read it: thread 0 still holds that same dict",
}
VALUES = {  # (thread, text that must appear whole on one line of that thread's part)
    "lost-updates": [(0, "{'cart': 'empty', 'theme': 'light'}"), (1, "{'cart': 'empty', 'theme': 'light'}"),
                     (1, "{'cart': 'empty', 'theme': 'dark'}"), (0, "{'cart': '3 books', 'theme': 'light'}")],
    "lost-increments": [(0, "[read access_count = 0]"), (1, "[read access_count = 0]"),
                        (0, "[write access_count = 1]"), (1, "[write access_count = 1]")],
    "stats-drift": [(0, "[read _sessions[s]]"), (1, "[read _sessions[s]]"),
                    (0, "[write _active_sessions = -1]")],
    "id-collision": [(0, "[read _next_id = 2]"), (1, "[read _next_id = 2]"),
                     (0, "[write _sessions['sess-000002']]"), (1, "[write _sessions['sess-000002']]")],
    "shared-snapshot": [(0, "{'cart': '3 books', 'theme': 'dark'}"), (1, "[metadata.clear() writes]")],
}
# Lines inside helpers: folded unless verbose when the race is elsewhere, shown when it is there.
FOLDED = {
    "lost-updates": ["if self._closed:", "return self._sessions[session_id]"],
    "lost-increments": ["if self._closed:", "return self._sessions[session_id]"],
    "stats-drift": ["if self._closed:", "for _ in range(len(self._cleanup_queue)):"],
    "id-collision": ["if self._closed:"],
    "shared-snapshot": ["if self._closed:"],
}
REQUIRE = "↳ _require(): returns the live record for session_id"
CHECK_OPEN = "↳ _check_open(): raises SessionError once the manager is closed"
NOTES = {  # what a folded helper call says: (thread, note)
    "lost-updates": [(0, REQUIRE), (1, REQUIRE)],
    "lost-increments": [(0, REQUIRE), (1, REQUIRE)],
    "stats-drift": [(0, CHECK_OPEN), (1, CHECK_OPEN),
                    (1, "↳ _run_cleanup(): releases every deleted session in the cleanup queue")],
    "id-collision": [(0, CHECK_OPEN), (1, CHECK_OPEN)],
    "shared-snapshot": [(0, CHECK_OPEN), (1, REQUIRE)],
}
SHOWN = {
    "stats-drift": ["return self._sessions[session_id]"],
    "id-collision": ["number = self._next_id", "self._next_id = number + 1"],
    "shared-snapshot": ["metadata=MappingProxyType(self.metadata),", "record.metadata.clear()"],
}


@pytest.fixture(scope="module")
def reports():
    buggy = implementations.load("buggy")
    return {slug: threads.explore(catalogue.home(slug).race, buggy) for slug in SLUGS}


def parts(text: str, threads: int = 2) -> dict[int, list[str]]:
    """Each thread's lines of the interleaving, in order, whichever layout the report used."""
    body = text.split("(line numbers of", 1)[1].split("\n\nReplay", 1)[0].splitlines()[1:]
    found: dict[int, list[str]] = {n: [] for n in range(threads)}
    if body[0].startswith("step"):  # side by side: one column per thread
        rule = next(n for n, line in enumerate(body) if line.startswith("─"))
        column = body[rule].index("┼") - GUTTER
        for line in body[rule + 1:]:
            for thread in range(threads):
                start = GUTTER + thread * (column + 3)
                cell = line[start:start + column].rstrip()
                if cell.strip():
                    found[thread].append(cell.strip())
        return found
    thread = None
    for line in body:
        tagged = re.match(r"\s*\d+\s+thread (\d+) │ ", line)
        if tagged:
            thread = int(tagged.group(1))
        found[thread].append(line.split("│ ", 1)[1].strip())
    return found


def flat(text: str) -> str:
    return " ".join(text.split())


def packed(lines) -> str:
    """Lines run together without any whitespace: a wrapped source line reads as it was."""
    return re.sub(r"\s", "", "".join(lines))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("slug", SLUGS)
def test_no_line_is_longer_than_the_width(reports, slug, width):
    for verbose in (False, True):
        text = reports[slug].text(width=width, verbose=verbose)
        too_long = [line for line in text.splitlines() if len(line) > width]
        assert not too_long, f"{slug} at {width} (verbose={verbose}): {too_long}"


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("slug", SLUGS)
def test_the_values_that_matter_appear_whole_in_their_threads_part(reports, slug, width):
    threads = parts(reports[slug].text(width=width))
    for thread, value in VALUES[slug]:
        assert any(value in line for line in threads[thread]), f"{slug} at {width}: {value} in thread {thread}"


@pytest.mark.parametrize("width", WIDTHS)
def test_the_colliding_id_and_the_counts_are_never_cut(reports, width):
    text = reports["id-collision"].text(width=width)
    assert "sess-000002" in text.splitlines()[1] + text.splitlines()[2]  # in the headline, whole
    assert not re.search(r"sess-0*$|sess-$|^\s*0*2\b'", text, re.MULTILINE)
    counts = reports["lost-increments"].text(width=width)
    assert "2 increments, counted 1" in counts.splitlines()[1]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("slug", SLUGS)
def test_both_threads_take_and_release_the_lock(reports, slug, width):
    threads = parts(reports[slug].text(width=width))
    for thread, lines in threads.items():
        assert "takes self._lock" in lines, f"{slug} at {width}: thread {thread}"
        assert any(line.endswith("end of with: releases self._lock") for line in lines), f"{slug}: {thread}"


def test_a_release_is_shown_where_it_happens_before_the_other_thread_takes_the_lock(reports):
    """Thread 0 left its `with self._lock:` block before thread 1 took the lock."""
    report = reports["lost-increments"]
    ops = [(step.thread, str(op)) for step in report.steps for line in step.lines for op in line.locks]
    assert ops[:4] == [(0, "takes self._lock"), (0, "releases self._lock"),
                       (1, "takes self._lock"), (1, "releases self._lock")]
    text = report.text(width=100)
    assert text.index("end of with: releases self._lock") < text.index("  2  ")


@pytest.mark.parametrize("slug", SLUGS)
def test_the_sentence_says_what_went_wrong_before_the_interleaving(reports, slug):
    report = reports[slug]
    assert report.why == SENTENCES[slug]
    for width in WIDTHS:
        text = report.text(width=width)
        assert f"Why: {SENTENCES[slug]}." in flat(text)
        assert flat(text).index("Why:") < flat(text).index("The interleaving")
        assert flat(text).index(flat(report.figure.summary)) < flat(text).index("Why:")
        assert "Expected:" not in text and "?" not in text.split("Why:")[0]


@pytest.mark.parametrize("slug", SLUGS)
def test_helper_lines_fold_unless_verbose_or_where_the_race_is(reports, slug):
    report = reports[slug]
    for width in WIDTHS:
        folded, verbose = report.text(width=width), report.text(width=width, verbose=True)
        folded_parts, verbose_parts = parts(folded), parts(verbose)
        shown = packed(line for lines in folded_parts.values() for line in lines)
        shown_verbose = packed(line for lines in verbose_parts.values() for line in lines)
        for source in FOLDED[slug]:
            assert packed(source) not in shown, f"{slug} at {width}: {source!r} should be folded"
            assert packed(source) in shown_verbose, f"{slug} at {width}: {source!r} shown when verbose"
        for source in SHOWN.get(slug, []):
            assert packed(source) in shown, f"{slug} at {width}: {source!r} is where the race is"
        for thread, note in NOTES[slug]:
            assert note in flat(" ".join(folded_parts[thread])), f"{slug} at {width}: {note!r} in {thread}"
        assert "↳" not in verbose


def test_the_json_keeps_its_fields_and_adds_the_sentence_and_the_locks(reports):
    for slug, report in reports.items():
        data = json.loads(json.dumps(report.as_json()))
        assert data["why"] == SENTENCES[slug] and data["headline"] == report.figure.summary
        assert {"location", "source", "accesses", "values", "locks"} <= set(data["steps"][0]["lines"][0])
        assert {(lock["thread"], lock["op"]) for lock in data["locks"]} == {
            (0, "take"), (0, "release"), (1, "take"), (1, "release")}
        assert data["figure"]["got"] == report.figure.got and data["schedule"] == list(report.schedule)
    assert reports["id-collision"].as_json()["racing"] == ["_next_id"]


def test_threads_go_one_under_the_other_when_the_columns_would_be_too_narrow(reports):
    report = reports["id-collision"]
    narrow = report.text(width=60)
    assert all(len(line) <= 60 for line in narrow.splitlines())
    tags = re.findall(r"^\s*(\d+)\s+thread (\d) │ ", narrow, re.MULTILINE)
    assert tags == [("1", "0"), ("2", "1"), ("3", "0")]
    assert "[write _sessions['sess-000002']]" in narrow
    wide = report.text(width=2 * MIN_COLUMN + GUTTER + 3)
    assert wide.split("(line numbers of manager.py)\n")[1].startswith("step thread 0:")


def test_three_threads_fall_back_to_one_column_until_three_fit():
    steps = tuple(Step(n % 3, (Line("m.py:1", "x = self.count", ("read C.count",)),)) for n in range(4))
    report = _report(steps, 3)
    rows = report.text(width=100)
    assert re.findall(r"^\s*(\d+)\s+thread (\d) │ ", rows, re.MULTILINE) == [
        ("1", "0"), ("2", "1"), ("3", "2"), ("4", "0")]
    columns = report.text(width=140)
    assert "step thread 0: worker 0" in columns and "┼" in columns
    for text, width in ((rows, 100), (columns, 140)):
        assert max(map(len, text.splitlines())) <= width


def test_a_thread_waiting_for_a_lock_says_who_holds_it(tmp_path):
    """A lock another thread holds: "waits for self._lock (held by thread 0)", then takes it."""
    source = tmp_path / "waiting.py"
    source.write_text(
        "import threading\n\n\n"
        "class Counter:\n"
        "    def __init__(self):\n"
        "        self._lock = threading.Lock()  # guards busy and n\n"
        "        self.busy = False\n"
        "        self.n = 0\n\n"
        "    def bump(self):\n"
        "        with self._lock:\n"
        "            self.busy = True\n"
        "            n = self.n\n"
        "            self.busy = False\n"
        "        self.n = n + 1\n\n"
        "    def peek_then_bump(self, seen):\n"
        "        seen.append(self.busy)\n"
        "        with self._lock:\n"
        "            n = self.n\n"
        "        self.n = n + 1\n")
    spec = importlib.util.spec_from_file_location("_report_test_waiting", source)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        implementation = implementations.Implementation("waiting", module)

        def setup():
            return SimpleNamespace(counter=module.Counter(), seen=[])

        found = explore_workers(implementation, setup, [lambda s: s.counter.bump(),
                                                        lambda s: s.counter.peek_then_bump(s.seen)],
                                lambda s: s.seen != [True], replays=0)
    finally:
        del sys.modules[spec.name]
    assert not found.held
    ops = [(step.thread, str(op)) for step in found.steps for line in step.lines for op in line.locks]
    assert ops == [(0, "takes self._lock"), (1, "waits for self._lock (held by thread 0)"),
                   (0, "releases self._lock"), (1, "takes self._lock"), (1, "releases self._lock")]
    text = _report(found.steps, 2).text(width=80)
    assert "waits for self._lock (held by thread 0)" in parts(text)[1]
    data = _report(found.steps, 2).as_json()
    assert {"thread": 1, "op": "wait", "holder": 0}.items() <= data["locks"][1].items()


def test_a_report_without_a_figure_or_steps_never_prints_question_marks():
    report = RaceReport(catalogue.find("lost-increments"), "mine", _scenario(2), False, 3, False, 0.1,
                        figure=Figure(False, "?", "?", ""), explanation="Race condition found after 3 interleavings.")
    text = report.text(width=80)
    assert "?" not in text and "Race condition found after 3 interleavings." in text.splitlines()[1]
    assert report.as_json()["headline"] == "Race condition found after 3 interleavings."


def test_wrapping_breaks_at_spaces_and_punctuation_never_inside_an_id():
    text = "alice and bob were both given session id sess-000002; read SessionManager._next_id = 2"
    for width in range(16, 100):
        lines = wrap(text, width, "  ", "    ")
        assert all(len(line) <= width for line in lines), (width, lines)
        assert any("sess-000002" in line for line in lines), (width, lines)
        assert re.sub(r"\s", "", "".join(lines)) == re.sub(r"\s", "", text)
        assert any("_next_id = 2" in line for line in lines) or width < 4 + len("SessionManager._next_id = 2")
    assert wrap("[write SessionManager._sessions['sess-000002']]", 20) == [
        "[write", "SessionManager.", "_sessions[", "'sess-000002']]"]


def test_a_line_and_its_lock_operations_render_in_order():
    line = Line("m.py:7", "with self._lock:", (), (),
                (LockOp("wait", "self._lock", 0), LockOp("take", "self._lock")))
    text = _report((Step(1, (line,)),), 2).text(width=100)
    body = parts(text)[1]
    assert body == ["7 with self._lock:", "waits for self._lock (held by thread 0)", "takes self._lock"]


def test_a_step_that_resumes_inside_a_helper_says_so_and_verbose_shows_its_lines():
    call = Line("m.py:3", "self._check(key)", (), function="Store.put")
    inside = Line("m.py:9", "if self._closed:", ("read Store._closed",), function="Store._check",
                  calls=("m.py:3",), doc="raises if the store is closed")
    steps = (Step(0, (call, inside)), Step(1, (Line("m.py:3", "self._check(key)", (), function="Store.put"),)),
             Step(0, (inside,)))
    report = _report(steps, 2)
    threads = parts(report.text(width=80))
    assert threads[0] == ["3 self._check(key)", "↳ _check(): raises if the store is closed",
                          "↳ (still in) _check(): raises if the store is closed"]
    assert parts(report.text(width=80, verbose=True))[0] == [
        "3 self._check(key)", "9 if self._closed:", "[read Store._closed]", "9 if self._closed:",
        "[read Store._closed]"]
    assert str(LockOp("busy", "self._lock", 1)) == "tries self._lock: busy (held by thread 1)"


def _scenario(threads: int) -> SimpleNamespace:
    return SimpleNamespace(story="a test", workers=tuple(SimpleNamespace(label=f"worker {n}") for n in range(threads)))


def _report(steps, threads: int) -> RaceReport:
    return RaceReport(catalogue.find("lost-increments"), "mine", _scenario(threads), False, 1, False, 0.0,
                      figure=Figure(False, "2", "1", "2 increments, counted 1"), steps=tuple(steps))
