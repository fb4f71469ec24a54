"""sessionlab: a lab for learning why threaded session code loses data, and how to prove it doesn't.

The lab in packages by role, from the command line down to the contract (each
imports only what is below it; tests/test_layout.py holds it to that):

cli/, pytest_plugin   the sessionlab command, and --impl under pytest
bench/, web/          the price of correctness; the web demo
judge/                where verdicts are made: every check of one bug, the contract, every pair
learner/              the working copy and the exercises
catalogue             the list of bugs, and each bug's Home: what exposes it
bugs/                 one home per bug: its entry, its scenarios, its checks
engines/              stress, exploration (threads, processes), linearizability, the id attacker
reports/              what the engines found, drawn for a learner
bug, figure, implementations, api   a bug's entry, what a check measured, --impl, the contract
"""

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
