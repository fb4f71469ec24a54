"""Files as shared state of the search: what a store keeps in files is seen like a dict.

frontrun's I/O detection reports ``open()`` of a path, and nothing else a
store does to its files: ``os.replace`` of a temporary file over the session's
file (cachelib, Django's file engine), ``os.remove`` at a logout, ``os.stat``
behind ``os.path.exists``, ``os.open`` behind ``tempfile``. A race through those
calls is invisible to it: two logouts that both find the session's file, and
both count one logout, were "every interleaving held" (measured on Flask-Session's
file-system store, 2 interleavings). While a search runs, ``seeing_files()``
wraps those functions so each call reports the path it reads or writes to the
thread's frontrun reporter, under the resource name frontrun gives the file.
Outside a worker of the search (setup, invariant, the lab itself) no reporter
is set and the wrappers only call through.

A call the search cannot attribute to a path (a read or write on a bare file
descriptor, ``fcntl``, ``mmap``) is noted, so a search that held can say what
it did not see (``unseen()``).
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

try:
    from frontrun import _io_detection
except ImportError:  # no search runs without frontrun (search.frontrun_available says why)
    _io_detection = None

# What a call to each function does to the path it is given first (and second, for a move).
_READS = ("stat", "listdir", "scandir", "access")  # not lstat: os.path.realpath's, the lab's naming
_WRITES = ("remove", "unlink", "rmdir", "mkdir", "chmod", "utime", "truncate")
_MOVES = ("replace", "rename")
# Calls on a descriptor, not a path: the search cannot tell which file they touch.
_ON_DESCRIPTORS = ("fsync", "ftruncate", "lseek", "pwrite", "pread", "fdatasync")

# Guards _unseen: the calls a search ran that it could not attribute to a file.
_lock = threading.Lock()
_unseen: set[str] = set()
# Set while a thread names a path (os.path.realpath calls os.lstat): those calls are the lab's.
_naming = threading.local()


def _reporter() -> Callable[[str, str], None] | None:
    return _io_detection.get_io_reporter()


def _resource(path: Any) -> str | None:
    if isinstance(path, int):
        return None
    try:
        return _io_detection._file_resource_id(os.fsdecode(path))
    except TypeError:
        return None


def _report(path: Any, kind: str) -> None:
    if getattr(_naming, "busy", False):
        return
    reporter = _reporter()
    if reporter is None:
        return
    _naming.busy = True
    try:
        resource = _resource(path)
    finally:
        _naming.busy = False
    if resource is not None:
        reporter(resource, kind)


def _on_path(real: Callable[..., Any], kind: str) -> Callable[..., Any]:
    def seen(path: Any, *args: Any, **kwargs: Any) -> Any:
        _report(path, kind)
        return real(path, *args, **kwargs)

    return seen


def _moved(real: Callable[..., Any]) -> Callable[..., Any]:
    def seen(source: Any, destination: Any, *args: Any, **kwargs: Any) -> Any:
        _report(source, "write")
        _report(destination, "write")
        return real(source, destination, *args, **kwargs)

    return seen


def _opened(real: Callable[..., Any]) -> Callable[..., Any]:
    def seen(path: Any, flags: int, *args: Any, **kwargs: Any) -> Any:
        writes = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        _report(path, "write" if writes else "read")
        return real(path, flags, *args, **kwargs)

    return seen


def _opened_by_mode(real: Callable[..., Any]) -> Callable[..., Any]:
    def seen(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        _report(file, "write" if any(c in mode for c in "wax+") else "read")
        return real(file, mode, *args, **kwargs)

    return seen


def _unattributed(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
    def noted(*args: Any, **kwargs: Any) -> Any:
        if _reporter() is not None:
            with _lock:
                _unseen.add(f"os.{name}")
        return real(*args, **kwargs)

    return noted


@contextmanager
def seeing_files(enabled: bool = True) -> Iterator[None]:
    """While the block runs, the os module's file calls report what they touch."""
    if not enabled or _io_detection is None:
        yield
        return
    originals = {name: getattr(os, name) for name in (*_READS, *_WRITES, *_MOVES, "open", *_ON_DESCRIPTORS)
                 if hasattr(os, name)}
    wrapped: dict[str, Callable[..., Any]] = {}
    for name, real in originals.items():
        if name in _READS:
            wrapped[name] = _on_path(real, "read")
        elif name in _WRITES:
            wrapped[name] = _on_path(real, "write")
        elif name in _MOVES:
            wrapped[name] = _moved(real)
        elif name == "open":
            wrapped[name] = _opened(real)
        else:
            wrapped[name] = _unattributed(name, real)
    with _lock:
        _unseen.clear()
    for name, seen in wrapped.items():
        setattr(os, name, seen)
    # open() is reported by frontrun only once it has succeeded, so the open that finds no
    # file (the second of two logouts) is no read at all: the search never tries it before the
    # first logout's remove. Reported here before the file is opened, by frontrun's own open
    # (which calls _real_open) and by io.open (pathlib's), which frontrun does not patch.
    real_open = _io_detection._real_open
    _io_detection._real_open = io.open = _opened_by_mode(real_open)
    try:
        yield
    finally:
        _io_detection._real_open = io.open = real_open
        for name, real in originals.items():
            setattr(os, name, real)


def unseen() -> list[str]:
    """The calls the last search ran on descriptors, whose files it could not name."""
    with _lock:
        return sorted(_unseen)
