"""KServe V2 requests and responses, once, for both wire formats (gRPC `inference.GRPCInferenceService`
and REST), as KServe's own `InferRequest` serves both.

`InferRequest.from_grpc` / `from_rest` turn a wire message into one protocol-neutral request, and
`InferResponse.to_grpc` / `to_rest` turn the answer back; everything in between (names, datatypes,
shapes, the decoding of BYTES, which outputs to return and how) is decided here, so the two wires
cannot drift apart. The data plane (serving.protocol.v2_dataplane) works on these types only.

Tensors of every model:
- input `text`, BYTES [N]: UTF-8 texts, typed (gRPC `contents.bytes_contents`, REST JSON `data`) or
  raw (gRPC `raw_input_contents`, REST binary data): each element a 4-byte little-endian length
  followed by that many bytes, elements back to back, as Triton and its clients write them.
- output `probabilities`, FP32 [N, number of labels]: one probability per label, in config order.
- output `label`, BYTES [N]: the most probable label.

Outputs go to raw contents by default on gRPC (as Triton answers, and as tritonclient's `as_numpy`
needs) and as JSON `data` on REST, unless an output's `binary_data` parameter (or the request's
`binary_data_output`) says otherwise. A gRPC response holds either all outputs or none in raw contents,
because raw contents are matched to outputs by position.

REST's binary tensor data extension: with the header `Inference-Header-Content-Length: n`, the first n
bytes of the body are the JSON request and the rest are the inputs' binary data, in input order, each
input saying its size in `parameters.binary_data_size`. A request's `parameters.timeout`
(microseconds, as Triton's) is its deadline.

Decoding is strict: a length running past the end, or a count other than the one the shape declares,
is an error rather than a silently shorter tensor.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2

from serving.errors import invalid
from serving.inference import Classification
from serving.protocol import strict_json
from serving.versions import MAX_DIGITS, parse_number

TEXT_INPUT = "text"
PROBABILITIES_OUTPUT = "probabilities"
LABEL_OUTPUT = "label"
OUTPUT_NAMES = (PROBABILITIES_OUTPUT, LABEL_OUTPUT)
OUTPUTS_HELP = f"{PROBABILITIES_OUTPUT!r} (FP32 [N, labels]) and {LABEL_OUTPUT!r} (BYTES [N])"
# The per-output parameter choosing raw (binary) contents, and the request-wide default for it.
BINARY_DATA = "binary_data"
BINARY_DATA_OUTPUT = "binary_data_output"
# REST's binary tensor data extension.
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_DATA_SIZE = "binary_data_size"
TIMEOUT_PARAMETER = "timeout"  # microseconds

# What a gRPC request naming no outputs and no parameters gets: every output, in raw contents.
ALL_OUTPUTS_RAW = tuple((name, True) for name in OUTPUT_NAMES)

_LENGTH = struct.Struct("<I")
_FP32 = np.dtype("<f4")


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
    number = parse_number(text)
    if not number:
        raise invalid(
            f"model version {text[:32]!r} is not a positive integer of at most {MAX_DIGITS} ASCII digits; "
            "empty means the latest"
        )
    return number


# Built per request: plain slotted dataclasses (a frozen one's __init__ costs several times more).


@dataclass(slots=True)
class InputTensor:
    """One input as a wire format delivered it: typed elements, or raw bytes."""

    name: str
    datatype: str
    shape: Sequence[int]
    # Typed elements, undecoded: read only when `raw` is None. A callable, so that a wire format's
    # element checks run after the shape's count has been checked.
    elements: Callable[[], Sequence[bytes]]
    raw: bytes | None = None
    # how the wire format calls each kind of contents, for messages
    raw_source: str = "raw contents"
    typed_source: str = "contents"


@dataclass(slots=True)
class OutputRequest:
    name: str
    parameters: Mapping[str, Any]  # wire parameters as Python values (bool, int, str)


def _bool_parameter(parameters: Mapping[str, Any], name: str, where: str) -> bool | None:
    if name not in parameters:
        return None
    value = parameters[name]
    if not isinstance(value, bool):
        raise invalid(f"{where} parameter {name} must be a boolean, not {type(value).__name__}")
    return value


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


# gRPC's names for the two kinds of contents (raw_source, typed_source of InputTensor), for messages
_GRPC_SOURCES = ("raw_input_contents", "contents.bytes_contents")


def _never_read() -> Sequence[bytes]:
    """The typed elements of an input sent as raw contents: never read (`texts` reads `raw`)."""
    return ()


def _typed_elements(tensor: Any) -> Callable[[], Sequence[bytes]]:
    """A typed input's elements, read only when called: after its shape's count has passed the limit."""
    return lambda: tensor.contents.bytes_contents


@dataclass(slots=True)
class InferRequest:
    """One V2 inference request, whichever wire it came on. Built by `from_grpc` / `from_rest`, which
    check the structure and raise `ServingError`; the texts are decoded by `texts`, after the count
    the shape declares has passed the server's limit."""

    model_name: str
    model_version: int  # 0 = the latest
    id: str | None  # echoed in the response (None: not sent)
    inputs: Sequence[InputTensor]
    outputs: Sequence[tuple[str, bool]]  # (output name, raw?) in response order
    timeout_s: float | None = None  # REST's `timeout` parameter; gRPC requests carry a deadline instead

    def texts(self, check_count: Callable[[int], None] | None = None) -> list[str]:
        """The `text` input tensor, from either kind of contents, as Python strings.

        `check_count` sees the count the shape declares before any element is decoded, so that a
        message of a million empty elements is refused as cheaply as one of ten."""
        names = [tensor.name for tensor in self.inputs]
        if TEXT_INPUT not in names:
            raise invalid(
                f"missing input {TEXT_INPUT!r} (got {names}): send one BYTES tensor {TEXT_INPUT!r} of shape "
                "[N] holding UTF-8 texts"
            )
        if len(names) != 1:
            raise invalid(f"inputs {names}: the model takes exactly one input, {TEXT_INPUT!r}")
        tensor = self.inputs[0]
        if tensor.datatype != "BYTES":
            raise invalid(
                f"input {TEXT_INPUT!r} has datatype {tensor.datatype!r}; expected BYTES (UTF-8 texts)"
            )
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
        texts: list[str] = []
        try:
            texts.extend(element.decode("utf-8") for element in elements)
        except UnicodeDecodeError as error:  # the texts before it are in `texts`: its index is their count
            raise invalid(
                f"input {TEXT_INPUT!r} element {len(texts)} is not valid UTF-8 "
                f"({error.reason} at byte {error.start})"
            ) from None
        return texts

    @classmethod
    def from_grpc(cls, message: service_pb2.ModelInferRequest) -> InferRequest:
        raw = message.raw_input_contents
        if raw and len(raw) != len(message.inputs):
            raise invalid(
                f"{len(raw)} raw_input_contents for {len(message.inputs)} input; raw contents hold one "
                "entry per input"
            )
        if raw:
            for tensor in message.inputs:
                if tensor.HasField("contents"):
                    raise invalid(
                        f"input {tensor.name!r} has both contents and raw_input_contents; send one of them"
                    )
            inputs = [
                InputTensor(t.name, t.datatype, t.shape, _never_read, contents, *_GRPC_SOURCES)
                for t, contents in zip(message.inputs, raw, strict=True)
            ]
        else:
            inputs = [
                InputTensor(t.name, t.datatype, t.shape, _typed_elements(t), None, *_GRPC_SOURCES)
                for t in message.inputs
            ]
        outputs: Sequence[tuple[str, bool]] = ALL_OUTPUTS_RAW
        if message.outputs or message.parameters:
            requests = [OutputRequest(o.name, _grpc_parameters(o.parameters)) for o in message.outputs]
            outputs = requested_outputs(requests, _grpc_parameters(message.parameters), binary_default=True)
            if len({raw for _, raw in outputs}) > 1:
                raise invalid(
                    "binary_data differs between outputs; raw_output_contents holds every output or none"
                )
        return cls(message.model_name, parse_version(message.model_version), message.id, inputs, outputs)

    @classmethod
    def from_rest(cls, name: str, version: str, body: bytes, header_length: str | None) -> InferRequest:
        """A request to POST /v2/models/{name}[/versions/{version}]/infer."""
        model_version = parse_version(version)
        document, binary = split_body(body, header_length)
        parameters = json_parameters(document, "the request")
        outputs = requested_outputs(_rest_output_requests(document), parameters, binary_default=False)
        request_id = document.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise invalid(f"the request's 'id' must be a JSON string, not {type(request_id).__name__}")
        return cls(
            name,
            model_version,
            request_id,
            _rest_input_tensors(document, binary),
            outputs,
            _timeout_s(parameters),
        )


def _grpc_parameters(parameters: Any) -> dict[str, Any]:
    """A map of InferParameter -> plain Python values (bool, int, str, float)."""
    return {
        name: getattr(parameter, parameter.WhichOneof("parameter_choice") or "bool_param")
        for name, parameter in parameters.items()
    }


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """A REST body that must be a JSON object (empty: {})."""
    if not data.strip():
        return {}
    document = strict_json.loads(data, what)
    if not isinstance(document, dict):
        raise invalid(f"{what} must be a JSON object, not {type(document).__name__}")
    return document


def json_field(document: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    """document[name], which must be there and be a `kind` (JSON's true/false are no numbers here)."""
    value = document.get(name)
    if value is None:
        raise invalid(f"{where} has no {name!r}")
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise invalid(f"{where}: {name!r} must be a JSON {kind.__name__}, not {type(value).__name__}")
    return value


def json_parameters(document: Mapping[str, Any], where: str) -> dict[str, Any]:
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise invalid(f"{where}: 'parameters' must be a JSON object")
    return parameters


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """(the JSON request, the binary data after it)."""
    if header_length is None:
        return json_object(body, "the request body"), b""
    length = parse_number(header_length)
    if length is None or length > len(body):
        raise invalid(
            f"{HEADER_LENGTH} is {header_length[:32]!r}; it must be the byte length (ASCII digits) of the "
            f"JSON request at the start of the body, at most the body's {len(body)} bytes"
        )
    document = json_object(body[:length], f"the first {length} bytes of the body ({HEADER_LENGTH})")
    return document, body[length:]


def _text_elements(data: list[Any]) -> list[bytes]:
    elements = []
    for index, element in enumerate(data):
        if not isinstance(element, str):
            raise invalid(
                f"input 'text' data element {index} is a JSON {type(element).__name__}; BYTES data is a flat "
                "list of strings, one text each"
            )
        try:
            elements.append(element.encode("utf-8"))
        except UnicodeEncodeError as error:
            raise invalid(f"input 'text' data element {index} is not valid Unicode: {error.reason}") from None
    return elements


def _rest_input_tensors(request: Mapping[str, Any], binary: bytes) -> list[InputTensor]:
    inputs = json_field(request, "inputs", list, "the request")
    tensors, offset = [], 0
    for index, tensor in enumerate(inputs):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise invalid(f"{where} must be a JSON object")
        name = json_field(tensor, "name", str, where)
        where = f"input {name!r}"
        shape = json_field(tensor, "shape", list, where)
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise invalid(f"{where}: 'shape' must be a list of integers, got {json.dumps(shape)[:64]}")
        datatype = json_field(tensor, "datatype", str, where)
        size = json_parameters(tensor, where).get(BINARY_DATA_SIZE)
        raw = None
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise invalid(f"{where}: parameter {BINARY_DATA_SIZE} must be a non-negative integer")
            if "data" in tensor:
                raise invalid(f"{where} has both 'data' and parameter {BINARY_DATA_SIZE}; send one of them")
            if offset + size > len(binary):
                raise invalid(
                    f"{where}: {BINARY_DATA_SIZE} {size} runs past the binary data "
                    f"({len(binary) - offset} bytes left after {HEADER_LENGTH})"
                )
            raw, offset = binary[offset : offset + size], offset + size
            data: list[Any] = []
        else:
            data = json_field(tensor, "data", list, where)
        tensors.append(
            InputTensor(
                name=name,
                datatype=datatype,
                shape=shape,
                elements=lambda data=data: _text_elements(data),
                raw=raw,
                raw_source="binary data",
                typed_source="data",
            )
        )
    if offset != len(binary):
        raise invalid(
            f"the body holds {len(binary)} bytes of binary data after the JSON request, but the inputs' "
            f"{BINARY_DATA_SIZE} add up to {offset}"
        )
    return tensors


def _rest_output_requests(request: Mapping[str, Any]) -> list[OutputRequest]:
    outputs = request.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise invalid("'outputs' must be a list of JSON objects")
    return [
        OutputRequest(json_field(o, "name", str, f"outputs[{i}]"), json_parameters(o, f"outputs[{i}]"))
        for i, o in enumerate(outputs)
    ]


def _timeout_s(parameters: Mapping[str, Any]) -> float | None:
    timeout = parameters.get(TIMEOUT_PARAMETER)
    if timeout is None:
        return None
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
        raise invalid(f"parameter {TIMEOUT_PARAMETER} must be a positive integer of microseconds")
    return timeout / 1e6


@dataclass(slots=True)
class OutputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray | list[bytes]  # FP32 array, or BYTES elements
    raw: bool  # sent as raw (binary) contents rather than typed / JSON data

    def raw_bytes(self) -> bytes:
        if isinstance(self.values, np.ndarray):
            return self.values.astype(_FP32, copy=False).tobytes()
        return encode_bytes_elements(self.values)


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str | None
    outputs: Sequence[OutputTensor]

    @classmethod
    def of(cls, request: InferRequest, result: Classification) -> InferResponse:
        probabilities = np.asarray(result.probabilities, dtype=np.float32)
        tensors = []
        for name, raw in request.outputs:
            if name == PROBABILITIES_OUTPUT:
                tensors.append(OutputTensor(name, "FP32", probabilities.shape, probabilities, raw))
            else:
                labels = result.model.utf8_labels
                best = [labels[i] for i in probabilities.argmax(axis=1).tolist()]
                tensors.append(OutputTensor(name, "BYTES", (len(best),), best, raw))
        return cls(result.model.name, str(result.model.version), request.id, tensors)

    def to_grpc(self) -> service_pb2.ModelInferResponse:
        response = service_pb2.ModelInferResponse(
            model_name=self.model_name, model_version=self.model_version, id=self.id
        )
        for tensor in self.outputs:
            message = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
            if tensor.raw:
                response.raw_output_contents.append(tensor.raw_bytes())
            elif isinstance(tensor.values, np.ndarray):
                message.contents.fp32_contents.extend(tensor.values.ravel().tolist())
            else:
                message.contents.bytes_contents.extend(tensor.values)
        return response

    def to_rest(self) -> tuple[dict[str, Any], bytes]:
        """The JSON response and the binary data after it (empty: a plain JSON response)."""
        document: dict[str, Any] = {"model_name": self.model_name, "model_version": self.model_version}
        if self.id is not None:
            document["id"] = self.id
        tensors, binary = [], []
        for tensor in self.outputs:
            entry: dict[str, Any] = {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": list(tensor.shape),
            }
            if tensor.raw:
                data = tensor.raw_bytes()
                binary.append(data)
                entry["parameters"] = {BINARY_DATA_SIZE: len(data)}
            elif isinstance(tensor.values, np.ndarray):
                entry["data"] = tensor.values.ravel().tolist()
            else:
                entry["data"] = [value.decode("utf-8") for value in tensor.values]
            tensors.append(entry)
        document["outputs"] = tensors
        return document, b"".join(binary)
