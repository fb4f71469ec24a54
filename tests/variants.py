"""Variants of buggy/: a copy with some functions rewritten, as a learner's fix would be."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from sessionlab import implementations
from sessionlab.learner import workspace

ROOT = Path(__file__).resolve().parent.parent


def variant(tmp_path: Path, name: str, replacements: dict[str, str],
            module: str = workspace.MODULE) -> implementations.Implementation:
    """A copy of buggy/ named name, with functions ("Class.method") replaced by new source.

    Each source is written as if at the top level (one or more functions); it is
    indented to sit in its class.
    """
    folder = tmp_path / name
    shutil.copytree(ROOT / "buggy", folder, ignore=shutil.ignore_patterns("__pycache__"))
    workspace.replace_functions(folder / module, {
        qualified: textwrap.indent(textwrap.dedent(source), "    ") for qualified, source in replacements.items()})
    return implementations.load(str(folder))
