"""Ctrl-C ends every command within a second, with one line and status 130.

The first SIGINT raises KeyboardInterrupt in the main thread, as usual, so the
command can tidy up (erase its progress line, restore the switch interval);
it also arms a watchdog that ends the process regardless a moment later, in
case the main thread is stuck behind a thread that never returns. The signal
is noticed through a wakeup fd as well, so the watchdog is armed even while
the main thread sits in C code that does not check for signals.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

STATUS = 130
GRACE_SECONDS = 0.6  # after Ctrl-C, tidying up may take this long before the process is ended anyway
MESSAGE = "sessionlab: interrupted"

_lock = threading.Lock()  # guards _said and _armed
_said = False
_armed = False
_interrupts = 0  # SIGINTs the main thread has seen


def say() -> None:
    """Print the one line, once (the watchdog and the main thread may both get here)."""
    global _said
    with _lock:
        if _said:
            return
        _said = True
    try:
        prefix = "\r\033[K" if sys.stderr.isatty() else ""
    except (AttributeError, ValueError):
        prefix = ""
    try:
        os.write(2, f"{prefix}{MESSAGE}\n".encode())  # not through sys.stderr: its lock may be held
    except OSError:
        pass


def _force_exit() -> None:
    say()
    os._exit(STATUS)


def arm() -> None:
    """End the process GRACE_SECONDS from now, whatever the main thread is doing."""
    global _armed
    with _lock:
        if _armed:
            return
        _armed = True
    timer = threading.Timer(GRACE_SECONDS, _force_exit)
    timer.daemon = True
    timer.start()


def _on_sigint(signum: int, frame: object) -> None:
    global _interrupts
    _interrupts += 1
    if _interrupts > 1:  # a second Ctrl-C: no more waiting
        _force_exit()
    arm()
    raise KeyboardInterrupt


def _watch_wakeups(fd: int) -> None:
    while True:
        try:
            data = os.read(fd, 64)
        except OSError:
            return
        if not data:
            return
        if signal.SIGINT in data:
            arm()


def install() -> None:
    """Take over SIGINT for this process (the command line only, never when imported as a library)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        read, write = os.pipe()
        os.set_blocking(write, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except (OSError, ValueError):
        return
    threading.Thread(target=_watch_wakeups, args=(read,), name="sessionlab-sigint", daemon=True).start()


def finish(status: int) -> None:
    """End the process now: flush what was printed, and do not wait for threads left stuck by a check."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)
