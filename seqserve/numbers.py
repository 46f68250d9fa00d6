"""Number parsers for command-line flags and environment variables, shared by every `seqserve` command.

A bad value raises `InvalidNumber`, which is both an `argparse.ArgumentTypeError` (argparse shows its
message as it is) and a `ValueError` (what code parsing environment variables catches).
"""

from __future__ import annotations

import argparse


class InvalidNumber(argparse.ArgumentTypeError, ValueError):
    """A number outside the range the option accepts."""


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidNumber(f"{text!r} is not a whole number") from None


def positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise InvalidNumber(f"{value} is not positive")
    return value


def non_negative_int(text: str) -> int:
    value = _int(text)
    if value < 0:
        raise InvalidNumber(f"{value} is negative")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise InvalidNumber(f"{value} is negative")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # NaN is refused too
        raise InvalidNumber(f"{value} is not positive")
    return value


def open_fraction(text: str) -> float:
    """A share strictly between 0 and 1, e.g. 0.1."""
    value = float(text)
    if not 0 < value < 1:
        raise InvalidNumber(f"{value} is not strictly between 0 and 1")
    return value
