"""sessionlab: a lab for learning why threaded session code loses data, and how to prove it doesn't."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sessionlab")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"
