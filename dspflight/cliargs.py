"""The CLI's argument parsing: one-line errors, defaults in every help line,
`--debug` accepted anywhere, and value types that refuse bad numbers up front."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from dspflight.catalog import DESIGNS, builtins, gpu_presets
from hwmodel.energy_table import load_energy_table
from hwmodel.errors import DspflightError


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends `(default: X)` unless the help already says its default (or there is none to say)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if "default" in help_text or any(action.default is d for d in (None, False, argparse.SUPPRESS)):
            return help_text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """Every (sub)command's parser: accepts `--debug` and reports a bad argument in one line."""

    def __init__(self, **kwargs):
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(**kwargs)
        self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                          help="show a traceback instead of a one-line error (default: off)")

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _integer(text: str, lo: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < lo:
        raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {text!r}")
    return value


def positive(text: str) -> int:
    return _integer(text, 1)


def non_negative(text: str) -> int:
    return _integer(text, 0)


def token_ids(text: str) -> list[int]:
    """`1,2,3` -> [1, 2, 3]; every id an integer >= 0 (the vocabulary is checked once the model is known)."""
    try:
        ids = [int(t) for t in text.split(",")]
    except ValueError:
        ids = None
    if not ids or any(t < 0 for t in ids):
        raise argparse.ArgumentTypeError(f"expected comma-separated token ids (integers >= 0), got {text!r}")
    return ids


def design(text: str) -> str:
    """A hardware design's name or path. A name that is no design is refused here,
    and a GPU preset's with what presets are for: the loader would find its file."""
    path = Path(text)
    designs = builtins(DESIGNS)
    if path.suffix or path.exists() or text in designs:
        return text
    known = f"designs: {', '.join(designs)}, or a YAML path; `dspflight list` shows all"
    if text in gpu_presets():
        raise argparse.ArgumentTypeError(f"{text!r} is a GPU preset: GPUs are roofline-only devices that every "
                                         f"report compares against, not designs to compile for ({known})")
    raise argparse.ArgumentTypeError(f"unknown design {text!r} ({known})")


def energy_table(text: str) -> str:
    """An energy table's name or path, loaded and validated here, before any work
    (its use comes after compiling and simulating)."""
    try:
        load_energy_table(text)
    except DspflightError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
