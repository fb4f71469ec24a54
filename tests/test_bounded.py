"""Bounded checks: a fix that deadlocks becomes a Hang naming the threads and the lines they wait at.

The classes below are throwaway managers with the deadlocks a learner's fix can
bring: two locks taken in opposite orders, a non-reentrant lock taken twice by
one thread, a wait on an event nobody sets. Cases that leave a thread stuck for
good run in a subprocess; the others release the stuck lock afterwards so the
thread ends.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from sessionlab.engines.bounded import Hang, Held, Wait, abandon, join_all, run_bounded
from sessionlab.engines.exploration.witness import Witness, describe_deadlock, explore_bounded

HERE = os.path.realpath(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))


class TwoLocks:
    """Two locks, taken in opposite orders by two methods."""

    def __init__(self) -> None:
        self._a = threading.Lock()  # guards moves (with _b)
        self._b = threading.Lock()  # guards moves (with _a)
        self.moves = 0

    def a_then_b(self) -> None:
        with self._a:  # a_then_b takes a
            with self._b:  # a_then_b takes b
                self.moves += 1

    def b_then_a(self) -> None:
        with self._b:  # b_then_a takes b
            with self._a:  # b_then_a takes a
                self.moves += 1


class Reentered:
    """update takes the lock, then calls a helper that takes it again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards data
        self.data: dict[str, object] = {}

    def update(self, key: str, value: object) -> None:
        with self._lock:  # update takes the lock
            self._touch()
            self.data[key] = value

    def _touch(self) -> None:
        with self._lock:  # _touch takes the lock again
            self.data["touched"] = True


class Waiter:
    def __init__(self) -> None:
        self.ready = threading.Event()

    def wait(self) -> None:
        self.ready.wait()  # waits for an event nobody sets


def line(marker: str, path: str | os.PathLike[str] = HERE) -> tuple[int, str]:
    """The number and text of the one line of path that ends with the comment marker."""
    with open(path) as source:
        found = [(n, text.strip()) for n, text in enumerate(source, 1) if text.rstrip().endswith(marker)]
    assert len(found) == 1, found
    return found[0]


def wait_at(thread: str, marker: str, function: str, **more: object) -> Wait:
    number, text = line(marker)
    return Wait(thread, HERE, number, function, text, **more)


def held_at(lock: str, marker: str, function: str) -> Held:
    number, text = line(marker)
    return Held(lock, HERE, number, function, text)


def explore(setup, workers, per_run: float = 5.0):
    """One frontrun exploration, driven as sessionlab.engines.exploration.explore_workers drives it."""
    frontrun = pytest.importorskip("frontrun")
    from frontrun._cooperative import patch_locks, unpatch_locks

    patch_locks()
    try:
        return frontrun.explore(setup=setup, workers=workers, invariant=lambda state: True, stop_on_first=True,
                                preemption_bound=None, max_executions=200, detect_io=False, reproduce_on_failure=3,
                                trace_packages=[__name__, f"{__name__}.*"], timeout_per_run=per_run)
    finally:
        unpatch_locks()


@pytest.fixture(autouse=True, scope="module")
def no_thread_left_behind():
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before]
    finish(left)


def finish(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive(), f"{thread.name} is still stuck"


# -- The message -------------------------------------------------------------------------


def test_a_hang_reads_as_the_threads_and_their_lines():
    hang = Hang(10, "stress on real threads", [
        Wait("worker-0", "/x/manager.py", 97, "update_session", "with self._lock:"),
        Wait("worker-1", "/x/manager.py", 120, "get_stats", "with self._stats_lock:"),
    ])
    assert str(hang) == ("your code did not finish within 10 s: "
                         "thread worker-0 waits at manager.py:97 `with self._lock:` in update_session; "
                         "thread worker-1 waits at manager.py:120 `with self._stats_lock:` in get_stats")
    assert hang.text().splitlines() == [
        "HANGS: your code did not finish within 10 s (stress on real threads)",
        "  thread worker-0", "    waits at manager.py:97 `with self._lock:` in update_session",
        "  thread worker-1", "    waits at manager.py:120 `with self._stats_lock:` in get_stats",
    ]
    assert hang.as_json()["waits"][1]["line"] == 120
    copy = pickle.loads(pickle.dumps(Hang(None, "x", hang.waits, deadlock=True)))
    assert (copy.deadlock, copy.waits, str(copy).split(":")[0]) == (True, hang.waits, "your code deadlocks")


# -- Real threads ------------------------------------------------------------------------


def test_run_bounded_returns_the_result_or_raises_the_error():
    assert run_bounded(lambda: 42, seconds=1, label="answer") == 42
    error = KeyError("sess-1")

    def fail():
        raise error

    with pytest.raises(KeyError) as raised:
        run_bounded(fail, seconds=1, label="failing")
    assert raised.value is error


def test_a_lock_taken_twice_by_one_thread_is_a_hang_at_the_second_take():
    manager = Reentered()
    started = time.monotonic()
    with pytest.raises(Hang) as raised:
        run_bounded(lambda: manager.update("theme", "dark"), seconds=1, label="update", files=[HERE])
    assert time.monotonic() - started < 2
    assert raised.value.waits == (wait_at("main", "# _touch takes the lock again", "_touch", waits_for="self._lock",
                                          holds=(held_at("self._lock", "# update takes the lock", "update"),)),)
    assert raised.value.deadlock  # the code shows the thread holds the lock it waits for
    number, text = line("# _touch takes the lock again")
    taken, took = line("# update takes the lock")
    assert str(raised.value) == (f"your code deadlocks: thread main holds self._lock (taken at test_bounded.py:"
                                 f"{taken} `{took}` in update) and waits for self._lock at test_bounded.py:{number} "
                                 f"`{text}` in _touch")
    stuck = [t for t in threading.enumerate() if t.name == "main"]
    manager._lock.release()  # let the stuck thread through, so it ends
    finish(stuck)


def test_a_lock_cycle_that_stays_is_a_hang_before_the_bound_runs_out():
    manager = Reentered()
    with pytest.raises(Hang) as raised:  # a bound no test waits for: the cycle is proven first
        run_bounded(lambda: manager.update("theme", "dark"), seconds=600, label="update", files=[HERE], cycles=True)
    assert raised.value.deadlock and raised.value.seconds is None, raised.value  # proven, not timed out
    assert raised.value.waits[0].waits_for == "self._lock" and raised.value.waits[0].holds[0].lock == "self._lock"
    stuck = [t for t in threading.enumerate() if t.name == "main"]
    manager._lock.release()
    finish(stuck)


def test_without_cycles_a_bound_waits_until_it_runs_out():
    manager = Reentered()
    with pytest.raises(Hang) as raised:
        run_bounded(lambda: manager.update("theme", "dark"), seconds=0.5, label="update", files=[HERE])
    assert raised.value.deadlock and raised.value.seconds == 0.5, raised.value
    stuck = [t for t in threading.enumerate() if t.name == "main"]
    manager._lock.release()
    finish(stuck)


def test_threads_started_inside_are_named_and_made_daemons():
    manager, workers = TwoLocks(), []
    taken = threading.Barrier(2)

    def worker(first, second):
        try:
            with first:  # a worker holds its first lock
                taken.wait()
                with second:  # a worker waits here
                    manager.moves += 1
        except RuntimeError:  # the test releases a lock from outside to end the thread
            pass

    def scenario():
        workers.extend([threading.Thread(target=worker, args=(manager._a, manager._b), name="worker-0"),
                        threading.Thread(target=worker, args=(manager._b, manager._a), name="worker-1")])
        for thread in workers:
            thread.start()
        join_all(workers, 30, "inner")

    with pytest.raises(Hang) as raised:
        run_bounded(scenario, seconds=1, label="two threads", files=[HERE])
    waits = {wait.thread: wait for wait in raised.value.waits}
    assert set(waits) == {"main", "worker-0", "worker-1"}
    for name in ("worker-0", "worker-1"):  # each holds its `first` and waits for its `second`
        assert waits[name] == wait_at(name, "# a worker waits here", "worker", waits_for="second",
                                      holds=(held_at("first", "# a worker holds its first lock", "worker"),))
    assert all(thread.daemon for thread in workers)  # abandoned: the interpreter will not wait for them
    manager._a.release()
    manager._b.release()
    finish(workers)


def test_join_all_returns_when_the_threads_finish():
    threads = [threading.Thread(target=time.sleep, args=(0.01,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    join_all(threads, 5, "short sleeps")
    assert abandon(threads)  # nothing left to abandon


def test_the_process_exits_promptly_after_a_hang(tmp_path):
    """Non-daemon threads stuck on locks would keep the interpreter alive at exit."""
    script = tmp_path / "hang.py"
    script.write_text(textwrap.dedent("""
        import threading
        from sessionlab.engines.bounded import Hang, join_all, run_bounded

        a, b, barrier = threading.Lock(), threading.Lock(), threading.Barrier(2)

        def worker(first, second):
            with first:  # holds its first lock
                barrier.wait()
                with second:  # waits here for good
                    pass

        threads = [threading.Thread(target=worker, args=(a, b), name="worker-0"),
                   threading.Thread(target=worker, args=(b, a), name="worker-1")]
        for thread in threads:
            thread.start()  # not daemons, as threading.Thread makes them by default
        try:
            join_all(threads, 1, "two workers")
        except Hang as hang:
            print(hang)
        lock = threading.Lock()

        def take_twice():
            lock.acquire()
            lock.acquire()  # the second take

        try:
            run_bounded(take_twice, seconds=0.5, label="second take")
        except Hang as hang:
            print(hang)
    """))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert time.monotonic() - started < 6, "the interpreter waited for the stuck threads"
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    waits, take = line("# waits here for good", script)[0], line("# the second take", script)[0]
    held = line("# holds its first lock", script)[0]
    each = (f"holds first (taken at hang.py:{held} `with first:  # holds its first lock` in worker) and waits for second at "
            f"hang.py:{waits} `with second:  # waits here for good` in worker")
    assert first == f"your code did not finish within 1 s: thread worker-0 {each}; thread worker-1 {each}"
    assert second == (f"your code did not finish within 0.5 s: thread main waits for lock at hang.py:{take} "
                      f"`lock.acquire()  # the second take` in take_twice")


# -- Under frontrun ----------------------------------------------------------------------


def test_two_locks_in_opposite_orders_name_who_holds_what_and_where():
    found = []
    started = time.monotonic()
    with pytest.raises(Hang) as raised:
        explore_bounded(lambda: found.append(explore(TwoLocks, [TwoLocks.a_then_b, TwoLocks.b_then_a])),
                        seconds=10, label="every interleaving", files=[HERE], names=["mover-ab", "mover-ba"])
    assert time.monotonic() - started < 3
    hang = raised.value
    assert hang.deadlock and hang.seconds is None
    assert hang.waits == (
        wait_at("mover-ab", "# a_then_b takes b", "a_then_b", waits_for="self._b",
                holds=(held_at("self._a", "# a_then_b takes a", "a_then_b"),)),
        wait_at("mover-ba", "# b_then_a takes a", "b_then_a", waits_for="self._a",
                holds=(held_at("self._b", "# b_then_a takes b", "b_then_a"),)),
    )
    taken, waits = line("# a_then_b takes a")[0], line("# a_then_b takes b")[0]
    assert str(hang).startswith(f"your code deadlocks: thread mover-ab holds self._a (taken at test_bounded.py:{taken} "
                                f"`with self._a:  # a_then_b takes a` in a_then_b) and waits for self._b at "
                                f"test_bounded.py:{waits} `with self._b:  # a_then_b takes b` in a_then_b; ")

    # What frontrun itself reports: a failed property and the cycle, lock ids and no lines.
    result = found[0]
    assert result.property_holds is False
    assert result.explanation.startswith("Deadlock detected after ")
    cycle = result.explanation.splitlines()[-1]
    assert cycle.startswith("thread ") and cycle.count(" -> ") == 4
    plain = describe_deadlock(result)
    assert [(w.thread, w.file, w.waits_for.split()[0], w.holds[0].lock.split()[0]) for w in plain] == [
        ("thread 0", "", "lock", "lock"), ("thread 1", "", "lock", "lock")]


def test_a_lock_taken_twice_under_frontrun_is_a_cycle_of_one_thread():
    with pytest.raises(Hang) as raised:
        explore_bounded(lambda: explore(Reentered, [lambda m: m.update("theme", "dark")]),
                        seconds=10, label="update", files=[HERE], names=["updater"])
    assert raised.value.deadlock
    assert raised.value.waits == (
        wait_at("updater", "# _touch takes the lock again", "_touch", waits_for="self._lock",
                holds=(held_at("self._lock", "# update takes the lock", "update"),)),
    )


def test_a_wait_frontrun_does_not_control_is_bounded_by_its_timeout_per_run():
    found = []
    started = time.monotonic()
    with pytest.raises(Hang) as raised:
        explore_bounded(lambda: found.append(explore(Waiter, [Waiter.wait], per_run=0.5)) or found[0],
                        seconds=10, label="wait", files=[HERE], names=["waiter"], per_run=0.5)
    assert time.monotonic() - started < 3
    assert not raised.value.deadlock and raised.value.seconds == 0.5
    assert raised.value.waits == (wait_at("waiter", "# waits for an event nobody sets", "wait"),)
    assert found[0].property_holds is None and "timed out" in found[0].inconclusive_reason


def test_the_witness_leaves_the_exploration_as_it_was():
    from frontrun._deadlock import WaitForGraph

    original = WaitForGraph.add_holding
    workers = [TwoLocks.a_then_b, TwoLocks.a_then_b, TwoLocks.a_then_b]
    plain = explore(TwoLocks, workers)
    with Witness([HERE]) as witness:
        watched = explore(TwoLocks, workers)
    assert plain.property_holds and watched.property_holds
    assert watched.num_explored == plain.num_explored > 1
    assert not witness.cycle and not witness.stalled
    assert WaitForGraph.add_holding is original


def test_an_exploration_stuck_outside_the_workers_is_bounded_as_a_whole(tmp_path):
    """A deadlock in setup() blocks frontrun's own thread for good: run_bounded is the only bound."""
    pytest.importorskip("frontrun")
    (tmp_path / "stuckdemo.py").write_text(textwrap.dedent("""
        import threading

        class Reentered:
            def __init__(self):
                self._lock = threading.Lock()

            def update(self):
                with self._lock:  # taken first
                    self.touch()

            def touch(self):
                with self._lock:  # taken again
                    pass
    """))
    script = tmp_path / "explore.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import frontrun, stuckdemo
        from frontrun._cooperative import patch_locks, unpatch_locks
        from sessionlab.engines.bounded import Hang
        from sessionlab.engines.exploration.witness import explore_bounded

        def setup():
            manager = stuckdemo.Reentered()
            manager.update()
            return manager

        def run():
            patch_locks()
            try:
                return frontrun.explore(setup=setup, workers=[lambda m: None], invariant=lambda m: True,
                                        preemption_bound=None, detect_io=False, trace_packages=["stuckdemo"])
            finally:
                unpatch_locks()
        try:
            explore_bounded(run, seconds=1, label="setup", files=[stuckdemo.__file__])
        except Hang as hang:
            print(hang)
    """))
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert time.monotonic() - started < 8
    assert done.returncode == 0, done.stderr
    taken = line("# taken again", tmp_path / "stuckdemo.py")[0]
    update = line("# taken first", tmp_path / "stuckdemo.py")[0]
    assert done.stdout.strip() == (f"your code deadlocks: thread main holds self._lock (taken at stuckdemo.py:"
                                   f"{update} `with self._lock:  # taken first` in update) and waits for self._lock at "
                                   f"stuckdemo.py:{taken} `with self._lock:  # taken again` in touch")
