"""The one output policy of every command: never replace an earlier result unless ``--force``; say where
everything went.

A command lists every file it is about to write (the artifact, its card, its range table, a script)
and calls :func:`refuse_overwrite` before any work: an existing file stops the run with one line
naming it (exit 2), so a 30-frame trial cannot silently replace a full-video result. ``--force``
(:func:`add_force_flag`) replaces them. After the work, :func:`report_written` prints one
``wrote PATH`` line per file that is there. A command that writes a folder (a styled set) needs a new
one (:func:`refuse_nonempty_folder`) and fills it whole or not at all (:func:`folder_when_complete`).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from runtime.errors import UsageError

FORCE_HELP = "replace outputs that already exist (default: refuse, naming them, exit 2)"


class OutputExists(UsageError):
    """An output the command would write is already there and ``--force`` was not given."""


def add_force_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--force`` (replace existing outputs) to a command's parser."""
    parser.add_argument("--force", action="store_true", help=FORCE_HELP)


def refuse_overwrite(paths: Iterable[str | Path | None], force: bool) -> list[Path]:
    """Check, before any work, that none of ``paths`` exists unless ``force``.

    Args:
        paths: every file the command will write (``None`` and empty entries are skipped).
        force: the command's ``--force``.

    Returns:
        The paths checked, as :class:`Path`.

    Raises:
        OutputExists: some exist and ``force`` is False; the line names them and the two ways on.
    """
    checked = [Path(path) for path in paths if path]
    existing = [path for path in checked if path.exists() and not path.is_dir()]
    if existing and not force:
        shown = ", ".join(str(path) for path in existing[:4]) + (f" and {len(existing) - 4} more" if len(existing) > 4 else "")
        verb, it = ("exists", "it") if len(existing) == 1 else ("exist", "them")
        raise OutputExists(
            f"{shown} already {verb} (an earlier result); pass --force to replace {it}, or choose another output name"
        )
    return checked


def report_written(paths: Iterable[str | Path | None]) -> list[Path]:
    """Print ``wrote PATH`` for each of ``paths`` that exists (in order, once each); returns those paths."""
    seen: list[Path] = []
    for path in paths:
        if path and Path(path).exists() and Path(path) not in seen:
            seen.append(Path(path))
            print(f"wrote {path}")
    return seen


def refuse_nonempty_folder(folder: Path, flag: str = "--out") -> None:
    """A folder output must be new: absent, or an empty folder (checked before any work).

    Raises:
        OutputExists: ``folder`` is a file or a folder with something in it.
    """
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise OutputExists(f"{flag} {folder}: already exists and is not an empty folder; choose a new folder")


@contextlib.contextmanager
def folder_when_complete(folder: Path) -> Iterator[Path]:
    """Yield a hidden sibling ``.NAME.partial-PID`` to fill; renamed to ``folder`` when the block ends
    without an error, removed otherwise, so a killed or failed run leaves no half-written folder."""
    partial = folder.parent / f".{folder.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        if folder.is_dir():
            folder.rmdir()  # empty: refuse_nonempty_folder checked it up front
        os.replace(partial, folder)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
