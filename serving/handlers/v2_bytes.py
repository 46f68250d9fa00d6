"""The KServe V2 wire format of a BYTES tensor in raw contents: each element is a 4-byte little-endian
length followed by that many bytes, elements back to back in row-major order (as Triton and its
clients write it). Decoding is strict: a length running past the end, or a count other than the one the
tensor's shape declares, is an error rather than a silently shorter tensor.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

_LENGTH = struct.Struct("<I")


class BytesTensorError(ValueError):
    """Raw contents that are not `count` length-prefixed elements."""


def encode_bytes_elements(elements: Iterable[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)


def decode_bytes_elements(raw: bytes, count: int) -> list[bytes]:
    """Exactly `count` elements filling `raw` completely; stops early when `raw` holds more."""
    elements: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if len(elements) == count:
            raise BytesTensorError(
                f"holds more than the {count} elements its shape declares "
                f"({len(raw) - offset} bytes left over)"
            )
        if offset + _LENGTH.size > len(raw):
            raise BytesTensorError(
                f"element {len(elements)}: {len(raw) - offset} bytes left, too few for its 4-byte length"
            )
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += _LENGTH.size
        if offset + length > len(raw):
            raise BytesTensorError(
                f"element {len(elements)}: length prefix says {length} bytes, only {len(raw) - offset} remain"
            )
        elements.append(raw[offset : offset + length])
        offset += length
    if len(elements) != count:
        raise BytesTensorError(f"holds {len(elements)} elements; its shape declares {count}")
    return elements
