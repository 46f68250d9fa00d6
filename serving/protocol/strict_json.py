"""Strict JSON reading for every REST body: what a lenient parser lets through, or fails on with an
internal error, is refused with a message naming the problem (a 400, never a 500).

- nesting deeper than MAX_DEPTH (Python's parser would hit its recursion limit: a 500);
- more than MAX_VALUES values, keys included (a 4 MB body of `[],` or `1.5,` takes Python's parser
  a third of a second: far beyond any request the server's limits let through, and time the event
  loop owes every other client);
- NaN, Infinity and -Infinity (not JSON, though Python's parser accepts them);
- numbers beyond a double's range (1e400 would become inf) or with more digits than Python converts;
- an object with the same key twice (which one would count is anyone's guess);
- bytes that are not UTF-8 JSON.

The shape (depth and value count) is checked before parsing, without a Python loop over the body's
bytes: bytes operations written in C strip the strings' contents (escapes first, so that an escaped
quote is no delimiter), count the separators that remain, and numpy takes the running depth of the
brackets. On a valid document this sees exactly what the parser will; a body that is no valid JSON
fails the parse, which stops at its first error, so a wrong count there costs nothing.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from serving.errors import invalid

MAX_DEPTH = 64
MAX_VALUES = 32_768
_STRUCTURE = b"[]{},:"
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(_STRUCTURE)))
_STEP = np.zeros(256, dtype=np.int8)  # a bracket's change of depth
_STEP[list(b"[{")] = 1
_STEP[list(b"]}")] = -1


class JsonError(ValueError):
    """A body that strict reading refuses; the message says why."""


def _check_shape(data: bytes) -> None:
    """Refuse a document nested deeper than MAX_DEPTH or holding more than MAX_VALUES values."""
    if b"\\" in data:  # escapes go first: `\\` pairs, then escaped quotes
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    strings = data.count(b'"') // 2
    if strings > MAX_VALUES:
        raise JsonError(f"it holds more than {MAX_VALUES} values")
    outside = b"".join(data.split(b'"')[::2]) if strings else data  # what lies outside strings
    structure = outside.translate(None, _NOT_STRUCTURE)  # one pass over the body; the rest is small
    # a valid document has at most 2 * MAX_VALUES of these: the depth of a longer one is in its start
    if len(structure) > MAX_DEPTH and _depth(structure[: 4 * MAX_VALUES]) > MAX_DEPTH:
        raise JsonError(f"it nests arrays and objects deeper than {MAX_DEPTH} levels")
    # past the first, every value follows an opening bracket or a comma, and every key a colon too
    if 1 + len(structure) - structure.count(b"]") - structure.count(b"}") > MAX_VALUES:
        raise JsonError(f"it holds more than {MAX_VALUES} values")


def _depth(structure: bytes) -> int:
    """The deepest nesting of the brackets in `structure` (numpy: no Python loop over its bytes)."""
    return int(np.cumsum(_STEP[np.frombuffer(structure, dtype=np.uint8)], dtype=np.int32).max(initial=0))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:32]} is beyond the range of a double")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ValueError(f"the key {key[:64]!r} appears twice in one object")
        document[key] = value
    return document


def parse(data: bytes) -> Any:
    """The JSON document in `data`, or JsonError."""
    _check_shape(data)
    try:  # decoded first: Python's parser would also take UTF-16 and UTF-32, which the check misreads
        return json.loads(
            data.decode("utf-8"),
            parse_constant=_no_constant,
            parse_float=_finite,
            object_pairs_hook=_unique_keys,
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise JsonError(str(error)) from None


def loads(data: bytes, what: str) -> Any:
    """The JSON document in `data`; a ServingError (INVALID_ARGUMENT) naming `what` otherwise."""
    try:
        return parse(data)
    except JsonError as error:
        raise invalid(f"{what} is not valid JSON: {error}") from None
