"""Strict JSON reading for every REST body: what a lenient parser lets through, or fails on with an
internal error, is refused with a message naming the problem (a 400, never a 500).

- nesting deeper than MAX_DEPTH (Python's parser would hit its recursion limit: a 500);
- NaN, Infinity and -Infinity (not JSON, though Python's parser accepts them);
- numbers beyond a double's range (1e400 would become inf) or with more digits than Python converts;
- an object with the same key twice (which one would count is anyone's guess);
- bytes that are not UTF-8 JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

from serving.errors import invalid

MAX_DEPTH = 64


def _depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data`, brackets inside strings not counted."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


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


class JsonError(ValueError):
    """A body that strict reading refuses; the message says why."""


def parse(data: bytes) -> Any:
    """The JSON document in `data`, or JsonError."""
    if _depth(data) > MAX_DEPTH:
        raise JsonError(f"it nests arrays and objects deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(
            data, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_unique_keys
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise JsonError(str(error)) from None


def loads(data: bytes, what: str) -> Any:
    """The JSON document in `data`; a ServingError (INVALID_ARGUMENT) naming `what` otherwise."""
    try:
        return parse(data)
    except JsonError as error:
        raise invalid(f"{what} is not valid JSON: {error}") from None
