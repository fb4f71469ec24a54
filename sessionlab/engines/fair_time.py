"""Time that stops while the machine is too busy to run the lab, so a bound means the same at any load.

A check bounded by wall-clock seconds says HANGS on a busy machine for code that
finishes on a quiet one. ``FairClock`` counts a second only when the lab's
process ran for it, or did not want to: while none of its other threads is
ready to run (each waits on a lock, a sleep, a socket), a second is a second,
so a deadlock is found as soon as on a quiet machine; while one is ready, the
clock moves by the processor time the process got, plus the time a core stood
idle, so a search slowed by other programs that keep every core busy is
charged only for what it ran. Past ``WALL_CAP`` times the bound in wall-clock
seconds, a bound runs out whatever the load, so every check still ends.

The threads' states and the machine's idle time come from ``/proc`` (Linux);
where they cannot be read, the clock is the wall clock.
"""

from __future__ import annotations

import os
import threading
import time

# However busy the machine, a bound of s seconds runs out after s * WALL_CAP seconds of wall clock.
WALL_CAP = 6.0
# How often a waiter looks at the clock: the resolution of a bound.
TICK_SECONDS = 0.05


def _monotonic() -> float:
    # Not time.monotonic: a search on frontrun's virtual clock moves that one at will.
    return time.clock_gettime(time.CLOCK_MONOTONIC)


try:
    _CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):
    _CLOCK_TICKS = 0


def _idle_seconds() -> float | None:
    """Processor-seconds every core of the machine has stood idle since boot; None if unknown."""
    if not _CLOCK_TICKS:
        return None
    try:
        with open("/proc/stat", "rb") as stat:
            fields = stat.readline().split()
        return (int(fields[4]) + int(fields[5])) / _CLOCK_TICKS  # idle + iowait
    except (OSError, IndexError, ValueError):
        return None


def _others_ready() -> bool | None:
    """Whether a thread of this process other than the caller is running or ready to; None if unknown."""
    me = threading.get_native_id()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    for task in tasks:
        if task == str(me):
            continue
        try:
            with open(f"/proc/self/task/{task}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread has ended
        if state == b"R":
            return True
    return False


class FairClock:
    """Seconds the lab ran, or could have run, since it was made (see the module's docstring)."""

    def __init__(self) -> None:
        # Guards the samples and the sums below: any thread may read the clock.
        self._lock = threading.Lock()
        self._wall = self._started = _monotonic()
        self._cpu = time.process_time()
        self._idle = _idle_seconds()
        self._fair = 0.0

    def elapsed(self) -> float:
        """Fair seconds since the clock was made; never more than wall-clock seconds."""
        with self._lock:
            wall, cpu, idle = _monotonic(), time.process_time(), _idle_seconds()
            step = wall - self._wall
            if idle is not None and self._idle is not None and _others_ready() is not False:
                step = min(step, max(0.0, cpu - self._cpu) + max(0.0, idle - self._idle))
            self._wall, self._cpu, self._idle = wall, cpu, idle
            self._fair += max(0.0, step)
            return self._fair

    def wall(self) -> float:
        """Wall-clock seconds since the clock was made."""
        return _monotonic() - self._started

    def past(self, seconds: float) -> bool:
        """Whether a bound of seconds has run out: in fair seconds, or WALL_CAP times over in wall ones."""
        return self.elapsed() >= seconds or self.wall() >= seconds * WALL_CAP

    def left(self, seconds: float) -> float:
        """Wall-clock seconds to wait before looking again at a bound of seconds (at most TICK_SECONDS)."""
        return max(0.0, min(TICK_SECONDS, seconds - self.elapsed(), seconds * WALL_CAP - self.wall()))


def join(threads: list[threading.Thread], seconds: float) -> list[threading.Thread]:
    """Join threads against one bound of fair seconds; those still alive."""
    clock = FairClock()
    for thread in threads:
        while thread.is_alive() and not clock.past(seconds):
            thread.join(max(0.001, clock.left(seconds)))
    return [thread for thread in threads if thread.is_alive()]
