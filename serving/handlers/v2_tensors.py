"""KServe V2 tensor semantics, shared by both wire formats (gRPC `inference.GRPCInferenceService` and REST).

A wire handler turns its message into `InputTensor`s and output requests; everything after that (names,
datatypes, shapes, the decoding of BYTES, which outputs to return and how) is decided here, once, so
the two protocols cannot drift apart.

Tensors of every model:
- input `text`, BYTES [N]: UTF-8 texts, typed (gRPC `contents.bytes_contents`, REST JSON `data`) or
  raw (gRPC `raw_input_contents`, REST binary data): each element a 4-byte little-endian length
  followed by that many bytes, elements back to back, as Triton and its clients write them.
- output `probabilities`, FP32 [N, number of labels]: one probability per label, in config order.
- output `label`, BYTES [N]: the most probable label.

Decoding is strict: a length running past the end, or a count other than the one the shape declares,
is an error rather than a silently shorter tensor.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from serving.inference import Classification, ServingError

TEXT_INPUT = "text"
PROBABILITIES_OUTPUT = "probabilities"
LABEL_OUTPUT = "label"
OUTPUT_NAMES = (PROBABILITIES_OUTPUT, LABEL_OUTPUT)
OUTPUTS_HELP = f"{PROBABILITIES_OUTPUT!r} (FP32 [N, labels]) and {LABEL_OUTPUT!r} (BYTES [N])"
# The per-output parameter choosing raw (binary) contents, and the request-wide default for it.
BINARY_DATA = "binary_data"
BINARY_DATA_OUTPUT = "binary_data_output"

_LENGTH = struct.Struct("<I")
_VERSION = re.compile(r"[0-9]+")


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


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


def parse_version(text: str) -> int:
    """V2 carries versions as strings: '' is the latest version (0 for `lookup`), else a positive integer."""
    if text == "":
        return 0
    if not _VERSION.fullmatch(text) or int(text) == 0:
        raise invalid(f"model version {text[:32]!r} is not a positive integer; empty means the latest")
    return int(text)


@dataclass(frozen=True)
class InputTensor:
    """One input as a wire format delivered it: typed elements, or raw bytes, or neither yet."""

    name: str
    datatype: str
    shape: Sequence[int]
    # Typed elements, undecoded: read only when `raw` is None. A callable, so that a handler's
    # element checks run after the shape's count has been checked.
    elements: Callable[[], Sequence[bytes]]
    raw: bytes | None = None
    # how the wire format calls each kind of contents, for messages
    raw_source: str = "raw contents"
    typed_source: str = "contents"


def decode_texts(
    inputs: Sequence[InputTensor], check_count: Callable[[int], None] | None = None
) -> list[str]:
    """The `text` input tensor, from either kind of contents, as Python strings.

    `check_count` sees the count the shape declares before any element is decoded, so that a message
    of a million empty elements is refused as cheaply as one of ten."""
    names = [tensor.name for tensor in inputs]
    if TEXT_INPUT not in names:
        raise invalid(
            f"missing input {TEXT_INPUT!r} (got {names}): send one BYTES tensor {TEXT_INPUT!r} of shape [N] "
            "holding UTF-8 texts"
        )
    if len(names) != 1:
        raise invalid(f"inputs {names}: the model takes exactly one input, {TEXT_INPUT!r}")
    tensor = inputs[0]
    if tensor.datatype != "BYTES":
        raise invalid(f"input {TEXT_INPUT!r} has datatype {tensor.datatype!r}; expected BYTES (UTF-8 texts)")
    shape = list(tensor.shape)
    if len(shape) != 1 or shape[0] < 0:
        raise invalid(f"input {TEXT_INPUT!r} has shape {shape}; expected [N], one text per element")
    count = shape[0]
    if check_count is not None:
        check_count(count)
    if tensor.raw is not None:
        try:
            elements = decode_bytes_elements(tensor.raw, count)
        except BytesTensorError as error:
            raise invalid(f"{tensor.raw_source} of input {TEXT_INPUT!r}: {error}") from None
    else:
        elements = tensor.elements()
        if len(elements) != count:
            raise invalid(
                f"input {TEXT_INPUT!r} has {len(elements)} elements in {tensor.typed_source}; "
                f"its shape declares {count}"
            )
    texts = []
    for index, element in enumerate(elements):
        try:
            texts.append(element.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise invalid(
                f"input {TEXT_INPUT!r} element {index} is not valid UTF-8 "
                f"({error.reason} at byte {error.start})"
            ) from None
    return texts


def _bool_parameter(parameters: Mapping[str, Any], name: str, where: str) -> bool | None:
    if name not in parameters:
        return None
    value = parameters[name]
    if not isinstance(value, bool):
        raise invalid(f"{where} parameter {name} must be a boolean, not {type(value).__name__}")
    return value


@dataclass(frozen=True)
class OutputRequest:
    name: str
    parameters: Mapping[str, Any]  # wire parameters as Python values (bool, int, str)


def requested_outputs(
    outputs: Sequence[OutputRequest], parameters: Mapping[str, Any], binary_default: bool
) -> list[tuple[str, bool]]:
    """(output name, raw?) in request order, every output when none is named.

    An output is raw when its `binary_data` parameter says so, else when the request's
    `binary_data_output` does, else by the wire format's default (gRPC raw, REST JSON)."""
    binary = _bool_parameter(parameters, BINARY_DATA_OUTPUT, "request")
    default = binary_default if binary is None else binary
    if not outputs:
        return [(name, default) for name in OUTPUT_NAMES]
    chosen: list[tuple[str, bool]] = []
    for output in outputs:
        if output.name not in OUTPUT_NAMES:
            raise invalid(f"unknown output {output.name!r}; the model's outputs are {OUTPUTS_HELP}")
        if any(output.name == name for name, _ in chosen):
            raise invalid(f"output {output.name!r} is requested twice")
        unsupported = sorted(set(output.parameters) - {BINARY_DATA})
        if unsupported:
            raise invalid(f"output {output.name!r}: parameters {unsupported} are not supported")
        own = _bool_parameter(output.parameters, BINARY_DATA, f"output {output.name!r}")
        chosen.append((output.name, default if own is None else own))
    return chosen


@dataclass(frozen=True)
class OutputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | list[bytes]  # FP32 array, or BYTES elements

    def raw(self) -> bytes:
        if isinstance(self.values, np.ndarray):
            return self.values.astype("<f4", copy=False).tobytes()
        return encode_bytes_elements(self.values)


def output_tensors(result: Classification, names: Iterable[str]) -> list[OutputTensor]:
    probabilities = np.asarray(result.probabilities, dtype=np.float32)
    labels = result.model.labels
    tensors = []
    for name in names:
        if name == PROBABILITIES_OUTPUT:
            tensors.append(OutputTensor(name, "FP32", probabilities.shape, probabilities))
        else:
            best = [labels[int(i)].encode("utf-8") for i in np.argmax(probabilities, axis=1)]
            tensors.append(OutputTensor(name, "BYTES", (len(best),), best))
    return tensors
