"""Version numbers read from text, in one place: request paths and fields, the repository's
directory names, and the byte counts clients put in headers.

Only ASCII digits count. `str.isdigit()` also accepts '²' and other Unicode digits, which `int()`
then refuses (or, for '٣', reads as 3), and `int()` refuses more than 4,300 digits; so a number is at
most MAX_DIGITS ASCII digits (an int64 holds 18 of them with room to spare), and anything else is the
client's error, or for a directory not a version at all.
"""

from __future__ import annotations

import re

MAX_DIGITS = 18
_NUMBER = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")
# a version directory: a positive number written without leading zeros ('01' is not version 1)
_VERSION_DIRECTORY = re.compile(rf"[1-9][0-9]{{0,{MAX_DIGITS - 1}}}")


def parse_number(text: str) -> int | None:
    """The non-negative integer `text` spells in ASCII digits; None for anything else."""
    return int(text) if _NUMBER.fullmatch(text) else None


def directory_version(name: str) -> int | None:
    """The version a directory name stands for; None when it is not a version directory."""
    return int(name) if _VERSION_DIRECTORY.fullmatch(name) else None
