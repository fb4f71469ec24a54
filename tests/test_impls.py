"""--impl: finding an implementation by name or path."""

import os
import shutil
from pathlib import Path

import pytest

from sessionlab import implementations

ROOT = Path(__file__).resolve().parent.parent


def test_names_load_the_packages():
    assert implementations.load("fixed").module.__name__ == "fixed"
    assert implementations.load("buggy").new_manager().create_session("u", "n").startswith("sess-")


def test_a_folder_loads_beside_the_original_and_reloads_when_edited(tmp_path):
    copy = tmp_path / "mine"
    shutil.copytree(ROOT / "buggy", copy, ignore=shutil.ignore_patterns("__pycache__"))
    first = implementations.load(str(copy))
    assert first.module is not implementations.load("buggy").module
    assert implementations.load(str(copy)).module is first.module  # unchanged: the same import
    manager = copy / "manager.py"
    manager.write_text(manager.read_text().replace('"sess-{:06d}"', '"mine-{:06d}"'))
    os.utime(manager, ns=(manager.stat().st_atime_ns, manager.stat().st_mtime_ns + 1_000_000))
    again = implementations.load(str(copy))
    assert again.new_manager().create_session("u", "n") == "mine-000001"


@pytest.mark.parametrize("spec, message", [
    ("no_such_module_anywhere", "no implementation"),
    ("sessionlab.api", "defines no SessionManager class"),
    ("./no/such/folder", "no such file or folder"),
])
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(implementations.ImplementationError, match=message):
        implementations.load(spec)


def test_a_folder_must_be_a_package(tmp_path):
    (tmp_path / "loose").mkdir()
    with pytest.raises(implementations.ImplementationError, match="without __init__.py"):
        implementations.load(str(tmp_path / "loose"))


@pytest.mark.parametrize("name", ["email", "json", "fixed"])
def test_a_folder_here_wins_over_a_module_of_the_same_name(tmp_path, monkeypatch, name):
    # A learner's copy saved as ./email must not load the standard library's email package,
    # and a copy of buggy/ saved as ./fixed must not load the reference.
    shutil.copytree(ROOT / "buggy", tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.chdir(tmp_path)
    loaded = implementations.load(name)
    assert loaded.origin == str(tmp_path / name / "__init__.py"), loaded.origin
    assert loaded.module.SessionManager.__module__ != "fixed.manager"
