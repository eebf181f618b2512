"""Command-line value types and checks made before the long work starts.

A float flag that is not a finite number (`nan`, `inf`) or out of range is a usage error (exit 2, from
argparse), and an output place that cannot be written is reported before minutes of evaluation.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from quantize.errors import QuantizeError


def finite_float(text: str) -> float:
    """A finite float; argparse reports anything else (nan, inf, words) as a usage error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite float >= 0."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def nonzero_float(text: str) -> float:
    """A finite float other than 0 (an input scale of 0 would feed the model a constant)."""
    value = finite_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must not be 0 (every pixel would become the same value)")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return value


def percent(text: str) -> float:
    """A finite float in 0..100."""
    value = finite_float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a percentage 0-100, got {text!r}")
    return value


def writable_dir(directory: Path, flag: str, named: Path | None = None) -> None:
    """Create `directory` if needed and prove a file can be written in it.

    Raises QuantizeError naming the flag and `named` (default: the directory) with the reason.
    """
    named = named or directory
    existing = next((p for p in (directory, *directory.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise QuantizeError(f"{flag} {named}: cannot write there ({existing} is a file, not a folder)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise QuantizeError(f"{flag} {named}: cannot write there ({exc.strerror or exc})") from None


def writable_file(path: Path, flag: str) -> None:
    """Check that `path` (a file to be written later) can be: not a directory, in a writable directory."""
    if path.is_dir():
        raise QuantizeError(f"{flag} {path}: is a directory, expected a file name")
    writable_dir(path.parent, flag, named=path)
