"""Bounds count fair seconds: a busy machine slows a check down, it does not make it hang."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from wild_fixes import FIXES, WRONG_FIXES, django_cache_fix

from sessionlab.engines import fair_time
from sessionlab.engines.fair_time import WALL_CAP, FairClock


class Machine:
    """A machine with two cores whose clocks the test moves: wall, this process's CPU, idle."""

    def __init__(self, monkeypatch):
        self.wall = self.cpu = self.idle = 0.0
        monkeypatch.setattr(fair_time, "_monotonic", lambda: self.wall)
        monkeypatch.setattr(fair_time.time, "process_time", lambda: self.cpu)
        monkeypatch.setattr(fair_time, "_idle_seconds", lambda: self.idle)
        self.ready = True  # whether a thread of the lab is ready to run
        monkeypatch.setattr(fair_time, "_others_ready", lambda: self.ready)

    def second(self, *, cpu: float, idle: float) -> None:
        self.wall += 1.0
        self.cpu += cpu
        self.idle += idle


def test_a_quiet_machine_counts_every_second(monkeypatch):
    machine = Machine(monkeypatch)
    clock = FairClock()
    for _ in range(4):
        machine.second(cpu=1.0, idle=1.0)  # the lab on one core, the other idle
    for _ in range(4):
        machine.second(cpu=0.0, idle=2.0)  # the lab waits on a lock: both cores idle
    assert clock.elapsed() == pytest.approx(8.0)


def test_a_machine_kept_busy_by_others_counts_only_the_time_the_lab_ran(monkeypatch):
    machine = Machine(monkeypatch)
    clock = FairClock()
    for _ in range(10):
        machine.second(cpu=0.4, idle=0.0)  # three other programs share the two cores
        clock.elapsed()
    assert clock.elapsed() == pytest.approx(4.0)
    assert not clock.past(5.0)
    machine.second(cpu=0.0, idle=0.0)  # and past WALL_CAP times the bound, it runs out anyway
    machine.wall = 5.0 * WALL_CAP
    assert clock.past(5.0)


def test_while_every_thread_of_the_lab_waits_a_second_is_a_second_at_any_load(monkeypatch):
    machine = Machine(monkeypatch)
    clock = FairClock()
    machine.ready = False  # a deadlock: each thread waits for the other's lock
    for _ in range(3):
        machine.second(cpu=0.0, idle=0.0)  # while other programs keep both cores busy
    assert clock.elapsed() == pytest.approx(3.0)


def _ticks(count=50):
    for _ in range(count):
        yield
        time.sleep(0.01)


def test_the_state_of_the_labs_threads_is_read_from_the_system():
    if fair_time._others_ready() is None:
        pytest.skip("this system shows no /proc/self/task")
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [None for _ in iter(stop.is_set, True)], daemon=True)
    sleeper = threading.Thread(target=stop.wait, daemon=True)
    sleeper.start()
    try:
        # The sleeper waits once it has started; the caller itself is not counted.
        assert any(fair_time._others_ready() is False for _ in _ticks())
        spinner.start()
        assert all(fair_time._others_ready() for _ in _ticks(5))
    finally:
        stop.set()


def test_threads_of_the_lab_on_both_cores_count_no_faster_than_the_wall(monkeypatch):
    machine = Machine(monkeypatch)
    clock = FairClock()
    machine.second(cpu=2.0, idle=0.0)
    assert clock.elapsed() == pytest.approx(1.0)


def test_without_proc_stat_the_clock_is_the_wall_clock(monkeypatch):
    machine = Machine(monkeypatch)
    monkeypatch.setattr(fair_time, "_idle_seconds", lambda: None)
    clock = FairClock()
    machine.second(cpu=0.1, idle=0.0)
    assert clock.elapsed() == pytest.approx(1.0)


def test_a_thread_that_never_ends_is_given_up_on_by_the_real_clock():
    stop = threading.Event()
    stuck = threading.Thread(target=stop.wait, daemon=True)
    stuck.start()
    try:
        assert fair_time.join([stuck], 0.2) == [stuck]
    finally:
        stop.set()


def _judged(tmp_path, name, *, stress_too=False):
    from sessionlab import catalogue
    from sessionlab.judge import checks

    return checks.judge(catalogue.find("lost-updates"), django_cache_fix(tmp_path, name), stress_too=stress_too)


@pytest.mark.parametrize("name", ["a dict of per-key locks with reference counts", "a spin lock on the cache's atomic add"])
def test_the_search_proves_correct_fixes_of_a_framework_store(tmp_path, name):
    """Shapes once judged a deadlock (one lock shown as two) or HANGS (a spin that sleeps between
    tries, on the real clock): the exploration holds, complete under its bound."""
    from sessionlab import catalogue
    from sessionlab.judge import checks

    bug = catalogue.find("lost-updates")
    race = next(c for c in checks.checks_for(catalogue.home(bug)) if c.name == "every interleaving (frontrun)")
    result = checks.run_check(race, django_cache_fix(tmp_path, name))
    assert result.outcome == checks.HELD, result.message
    assert "explored" in result.message, result.message


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FIXES))
def test_correct_fixes_of_a_framework_store_are_fixed(tmp_path, name):
    verdict = _judged(tmp_path, name, stress_too=True)
    assert verdict.fixed, [r.message for r in verdict.results]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(WRONG_FIXES))
def test_wrong_fixes_of_a_framework_store_are_still_buggy(tmp_path, name):
    verdict = _judged(tmp_path, name, stress_too=True)
    assert not verdict.fixed, [r.message for r in verdict.results]
    assert verdict.results[-1].outcome == "broke", verdict.results[-1].message


@pytest.mark.slow
@pytest.mark.timeout(900)  # four verdicts, each slowed down by the programs that keep the cores busy
def test_correct_fixes_of_a_framework_store_are_fixed_with_every_core_busy(tmp_path):
    """The same verdicts with every core kept busy by other programs as on a quiet machine."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3)]
    try:
        for name in FIXES:
            verdict = _judged(tmp_path, name)
            assert verdict.fixed, (name, [r.message for r in verdict.results])
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def _steps(count: int, every: float, done: threading.Event, progress: list[int]) -> str:
    for _ in range(count):
        if done.is_set():
            break
        progress[0] += 1
        time.sleep(every)
    done.wait(5)
    return "finished"


def test_code_that_keeps_making_progress_is_cut_short_not_called_a_hang():
    from sessionlab.engines.bounded import OutOfTime, run_bounded

    progress, done = [0], threading.Event()
    try:
        with pytest.raises(OutOfTime) as slow:
            run_bounded(lambda: _steps(200, 0.02, done, progress), seconds=0.3, label="a slow search",
                        progress=lambda: progress[0], most=0.6)
    finally:
        done.set()
    assert slow.value.seconds == 0.6 and slow.value.progress >= 10, slow.value


def test_code_whose_progress_stops_is_a_hang_after_the_bound_without_progress():
    from sessionlab.engines.bounded import Hang, run_bounded

    progress, done = [0], threading.Event()
    try:
        with pytest.raises(Hang) as stuck:
            run_bounded(lambda: _steps(5, 0.02, done, progress), seconds=0.3, label="a stalled search",
                        progress=lambda: progress[0], most=30)
    finally:
        done.set()
    assert progress[0] == 5 and stuck.value.seconds == 0.3, stuck.value
