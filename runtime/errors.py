"""The one exception type for user errors, and the CLI wrapper that prints it as one line."""
from __future__ import annotations

import difflib
import functools
import logging
import os
import sys
from typing import Callable, Iterable, Sequence


class EdgemarkError(Exception):
    """A problem with the user's input: says what was received, what was expected and the fix.

    Command modules print it as one line without a traceback and exit with ``exit_code``.
    """

    exit_code = 1


class UsageError(EdgemarkError):
    """A bad flag or argument value (exit status 2, like argparse)."""

    exit_code = 2


def first_line(error: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an error's text (the type's name when it has none), cut to ``limit``.

    Engines (ONNX Runtime, OpenVINO, TensorRT, NNCF) raise multi-line C++ traces; a one-line user
    error quotes their first line.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[0] if lines else type(error).__name__)[:limit]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name(kind: str, name: str, choices: Sequence[str]) -> UsageError:
    """Build the standard error for a name that is not in a registry."""
    valid = ", ".join(sorted(choices))
    return UsageError(f"Unknown {kind} '{name}'. Valid: {valid}.{did_you_mean(name, choices)}")


def os_error_line(error: OSError) -> str:
    """One line for a file the system refused: which path, why, and what to do."""
    path = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
    reason = error.strerror or type(error).__name__
    hints = {
        PermissionError: "choose a folder you can write to, or fix its permissions",
        FileExistsError: "a file is in the way of a folder there: choose another path",
        NotADirectoryError: "a part of that path is a file, not a folder: choose another path",
        IsADirectoryError: "that is a folder: give a file name",
        FileNotFoundError: "check the path",
    }
    hint = next((text for kind, text in hints.items() if isinstance(error, kind)), "check the path and the disk")
    return f"{path}: {reason}; {hint}"


# Optional packages -> the extra that installs them (pyproject.toml); the one place that names them.
EXTRAS = {
    "torch": "train",
    "yaml": "train",
    "matplotlib": "report",
    "openvino": "openvino",
    "nncf": "openvino",
    "tensorrt": "trt",
    "cuda": "trt",
    "pytest": "dev",
}


def missing_extra_line(error: ModuleNotFoundError) -> str | None:
    """One line for an optional package that is not installed, naming the extra; ``None`` for any other
    missing module (a bug, whose traceback is kept)."""
    package = (error.name or "").partition(".")[0]
    if package not in EXTRAS:
        return None
    extra = EXTRAS[package]
    torch_note = " (with torch==2.13.0 for the CPU build, see README: Install)" if extra == "train" else ""
    return f"this needs the `{package}` package, which is not installed: pip install 'edgemark[{extra}]'{torch_note}"


def _secondary_worker() -> bool:
    """True in a DDP worker other than rank 0 (under torchrun every worker meets the same usage error)."""
    return os.environ.get("RANK", "0") != "0" and "WORLD_SIZE" in os.environ


def cli_main(main: Callable[[Sequence[str] | None], int]) -> Callable[[Sequence[str] | None], int]:
    """Decorate a command's ``main(argv) -> int`` so an :class:`EdgemarkError` becomes one line on stderr.

    Tests call the decorated ``main([...])`` and read its exit status.
    """

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
        try:
            return main(argv)
        except EdgemarkError as error:
            if not (isinstance(error, UsageError) and _secondary_worker()):  # N workers, one line
                print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        except OSError as error:
            if error.filename is None:  # not about a path the user gave: a bug, keep its traceback
                raise
            print(f"error: {os_error_line(error)}", file=sys.stderr)
            return 1
        except ModuleNotFoundError as error:
            line = missing_extra_line(error)
            if line is None:
                raise
            print(f"error: {line}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return wrapper
