"""sessionlab: a lab for learning why threaded session code loses data, and how to prove it doesn't."""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sessionlab")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"

# Modules the documents once taught learners to import, and where they live now. The old
# names still import, with a DeprecationWarning, until the next release.
MOVED = {
    "sessionlab.impls": "sessionlab.implementations",
    "sessionlab.stress": "sessionlab.engines.stress",
}


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a moved module's old name as the module at its new place."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        warnings.warn(f"{spec.name} has moved to {MOVED[spec.name]}; the old name goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass  # the module at the new place has run already


if not any(isinstance(finder, _Moved) for finder in sys.meta_path):
    sys.meta_path.append(_Moved())
