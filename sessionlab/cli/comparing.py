"""The learner's commands that compare and restore code: diff (against fixed/) and reset (to buggy/)."""

from __future__ import annotations

import argparse
from pathlib import Path

from sessionlab import catalogue
from sessionlab.bug import Bug
from sessionlab.cli import output
from sessionlab.cli.common import EXIT_OK, CommandError, follow, source_file, space
from sessionlab.cli.learner import current_exercise
from sessionlab.cli.output import wrap
from sessionlab.learner import exercises, workspace


def _target(args: argparse.Namespace, bug: catalogue.Bug) -> tuple[Path, str]:
    """The file holding a bug's code: in --impl, or in the working copy; and how to name it."""
    here = space()
    if args.impl:
        path = source_file(args.impl, bug.module)
        label = args.impl if Path(args.impl).suffix == ".py" else f"{args.impl.rstrip('/')}/{bug.module}"
        return path, label
    here.require()
    return here.path / bug.module, f"{workspace.WORKSPACE}/{bug.module}"


def _bug_or_current(args: argparse.Namespace) -> catalogue.Bug:
    if args.bug:
        return catalogue.find(args.bug)
    return current_exercise(exercises.load(space().root), getattr(args, "impl", None)).bug


def cmd_diff(args: argparse.Namespace) -> int:
    bug = _bug_or_current(args)
    mine, label = _target(args, bug)
    if not mine.exists():
        raise CommandError(f"{label}: no such file", kind="implementation")
    store = workspace.wild_store(mine)
    root = space().root
    original = root / "buggy" / (f"{workspace.WILD}/{mine.name}" if store is not None else bug.module)
    if not getattr(args, "yes", False) and not _attempted(bug, mine, original, store) and not _confirmed(args, bug,
                                                                                                       store):
        return EXIT_OK
    columns = output.width()
    if store is not None:  # track 3: the whole store against fixed/wild, its fixes all together
        reference = root / "fixed" / workspace.WILD / mine.name
        text = workspace.whole_file_diff(mine, reference, label, f"fixed/wild/{mine.name}")
        print(f"{store}: your store against the reference, fixed/wild/{mine.name}\n")
        print("\n".join(_fitted(text, columns)) if text else f"{label}: identical to the reference.\n")
    else:
        reference = root / "fixed" / bug.module
        parts = workspace.diff(bug, mine, reference, label, f"fixed/{bug.module}")
        print("\n".join(wrap(f"{bug.number}. {bug.slug}: your code against the reference, in "
                             f"{', '.join(bug.functions)}", columns)) + "\n")
        for name, text in parts:
            print("\n".join(_fitted(text, columns)) if text else f"{name}: identical to the reference.\n")
    print("\n".join(wrap("The reference's FIX comments say what each change restores. A different fix is "
                         f"fine if it passes: {follow(args, 'check', bug.slug)}", columns)))
    return EXIT_OK


def _attempted(bug: Bug, mine: Path, original: Path, store: str | None) -> bool:
    """Whether the learner changed the bug's code (a store's whole file) from what buggy/ holds."""
    if not original.exists():
        return True
    if store is not None:
        return mine.read_bytes() != original.read_bytes()
    have, was = workspace.functions(mine), workspace.functions(original)
    return any(name not in have or name not in was or have[name].text != was[name].text for name in bug.functions)


def _confirmed(args: argparse.Namespace, bug: Bug, store: str | None) -> bool:
    """Before any attempt the diff is the whole fix: the hints come first, and it is shown if asked for."""
    import sys

    here = space()
    hints = exercises.HintProgress(here.state / "hints.json")
    if store is not None:
        wild = exercises.find_wild(exercises.load_wild(here.root), store)
        slug, total, hint = (wild.slug, len(wild.hints), follow(args, "hint")) if wild else (bug.slug, 0, "")
    else:
        exercise = exercises.find(exercises.load(here.root), bug.slug)
        slug, total, hint = bug.slug, len(exercise.hints), f"sessionlab hint {bug.slug}"
    what = "this store" if store is not None else ", ".join(bug.functions)
    columns = output.width()
    text = f"You have not changed {what} yet, so the diff would be the whole reference fix."
    if total:
        text += f" The hints lead there a step at a time ({hints.seen(slug)} of {total} seen): {hint}"
    print("\n".join(wrap(text, columns)))
    if sys.stdin.isatty() and sys.stdout.isatty():
        try:
            answer = input("Show the reference fix anyway? [y/N] ")
        except EOFError:
            answer = ""
        print()
        return answer.strip().lower() in ("y", "yes")
    print(f"To see it anyway: {follow(args, 'diff', *([] if store else [bug.slug]), '--yes')}")
    return False


def _fitted(diff: str, columns: int) -> list[str]:
    """A unified diff within the width: a longer line goes on below its sign, indented as it was and more."""
    lines = []
    for line in diff.splitlines():
        if len(line) <= columns or not line[1:].strip() or line.startswith(("---", "+++")):
            lines.append(line)
            continue
        sign, code = line[:1], line[1:]
        lead = code[: len(code) - len(code.lstrip())]
        comment = code.strip().startswith("#")
        text = code.strip().removeprefix("#").strip() if comment else code.strip()
        first, rest = (sign + lead + "# ", sign + lead + "# ") if comment else (sign + lead, sign + lead + "    ")
        lines += wrap(text, columns, rest, first)
    return lines


def _exhibits() -> list[Path]:
    """The folders reset must never write to: buggy/ and fixed/, where the lab and Python find them."""
    import importlib.util

    folders = [space().root / "buggy", space().root / "fixed"]
    for name in ("buggy", "fixed"):
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = None
        if found is not None and found.origin:
            folders.append(Path(found.origin).parent)
    return [folder.resolve() for folder in folders]


def cmd_reset(args: argparse.Namespace) -> int:
    here = space()
    bug = catalogue.find(args.bug)
    if args.impl and not Path(args.impl).exists():
        raise CommandError(f"reset --impl takes the path of a folder or .py file, and {args.impl!r} is neither "
                           "(reset writes to it, so it must be a copy of your own)", kind="implementation")
    target, label = _target(args, bug)
    if set(target.resolve().parents) & set(_exhibits()):
        raise CommandError(f"{label} is in buggy/ or fixed/, which the lab keeps as they are; reset works on "
                           "a copy (your working copy, or --impl PATH)")
    if workspace.wild_store(target) is not None:  # track 3: the whole store as buggy/wild has it
        original = here.root / "buggy" / workspace.WILD / target.name
        saved = workspace.reset_file(here, target, original, workspace.wild_store(target) or "")
        if saved is None:
            print("\n".join(wrap(f"{label} is already as buggy/wild/{target.name} has it: nothing was changed or "
                                 "saved.", output.width())))
            return EXIT_OK
        print("\n".join(wrap(f"Put buggy/wild/{target.name} back in {label}; your version was saved as "
                             f"{saved.relative_to(here.root)}", output.width())))
        print("\n".join(wrap(f"Check that the bugs are back: {follow(args, 'check', bug.slug)}", output.width())))
        return EXIT_OK
    saved = workspace.reset(bug, here, target)
    where = ", ".join(bug.functions)
    if saved is None:
        print("\n".join(wrap(f"{label} already has the original {bug.slug} code ({where}): nothing was changed "
                             "or saved.", output.width())))
        return EXIT_OK
    print(f"Put the original {bug.slug} code back in {label}")
    print(f"  ({where}); your version was saved as {saved.relative_to(here.root)}")
    print("\n".join(wrap(f"Check that the bug is back: {follow(args, 'check', bug.slug)}", output.width())))
    return EXIT_OK
