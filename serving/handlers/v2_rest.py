"""KServe V2 REST (the Open Inference Protocol over HTTP/JSON) on the server's HTTP port.

The routes of the protocol's HTTP binding, as Triton serves them (so `tritonclient.http`, curl and
any JSON client work): server and model health and metadata, `infer`, model `config` and `stats`, and
the repository extension. Tensor semantics and documents are the ones the gRPC handler uses
(serving.handlers.v2_tensors, serving.handlers.v2_documents); inference goes through the same
`InferenceService.classify` (limits, batcher, metrics).

Binary tensor data extension: with the header `Inference-Header-Content-Length: n`, the first n bytes
of the body are the JSON request and the rest are the inputs' binary data, in input order, each input
saying its size in `parameters.binary_data_size`. An output is returned the same way when its
`binary_data` parameter (or the request's `binary_data_output`) is true; otherwise as JSON `data`.
A request's `parameters.timeout` (microseconds, as Triton's) is its deadline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from serving.handlers.v2_documents import (
    V2Repository,
    model_config,
    model_metadata,
    model_statistics,
    server_metadata,
)
from serving.handlers.v2_tensors import (
    InputTensor,
    OutputRequest,
    OutputTensor,
    decode_texts,
    invalid,
    output_tensors,
    parse_version,
    requested_outputs,
)
from serving.health import SERVING, HealthService
from serving.http_server import error_response, json_response
from serving.inference import Classification, InferenceService, ServingError
from serving.registry import ModelRegistry
from serving.settings import Settings

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_DATA_SIZE = "binary_data_size"
TIMEOUT_PARAMETER = "timeout"  # microseconds


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    if not data.strip():
        return {}
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid(f"{what} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise invalid(f"{what} must be a JSON object, not {type(document).__name__}")
    return document


def _field(document: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    """document[name], which must be there and be a `kind` (JSON's true/false are no numbers here)."""
    value = document.get(name)
    if value is None:
        raise invalid(f"{where} has no {name!r}")
    if not isinstance(value, kind) or isinstance(value, bool) is not (kind is bool):
        raise invalid(f"{where}: {name!r} must be a JSON {kind.__name__}, not {type(value).__name__}")
    return value


def _parameters(document: Mapping[str, Any], where: str) -> dict[str, Any]:
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise invalid(f"{where}: 'parameters' must be a JSON object")
    return parameters


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """(the JSON request, the binary data after it)."""
    if header_length is None:
        return _json_object(body, "the request body"), b""
    if not header_length.isdigit() or int(header_length) > len(body):
        raise invalid(
            f"{HEADER_LENGTH} is {header_length[:32]!r}; it must be the byte length of the JSON request at "
            f"the start of the body, at most the body's {len(body)} bytes"
        )
    length = int(header_length)
    return _json_object(body[:length], f"the first {length} bytes of the body ({HEADER_LENGTH})"), body[
        length:
    ]


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


def input_tensors(request: Mapping[str, Any], binary: bytes) -> list[InputTensor]:
    inputs = _field(request, "inputs", list, "the request")
    tensors, offset = [], 0
    for index, tensor in enumerate(inputs):
        where = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise invalid(f"{where} must be a JSON object")
        name = _field(tensor, "name", str, where)
        where = f"input {name!r}"
        shape = _field(tensor, "shape", list, where)
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
            raise invalid(f"{where}: 'shape' must be a list of integers, got {json.dumps(shape)[:64]}")
        datatype = _field(tensor, "datatype", str, where)
        size = _parameters(tensor, where).get(BINARY_DATA_SIZE)
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
            data = _field(tensor, "data", list, where)
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


def output_requests(request: Mapping[str, Any]) -> list[OutputRequest]:
    outputs = request.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise invalid("'outputs' must be a list of JSON objects")
    return [
        OutputRequest(_field(o, "name", str, f"outputs[{i}]"), _parameters(o, f"outputs[{i}]"))
        for i, o in enumerate(outputs)
    ]


def time_remaining(parameters: Mapping[str, Any]) -> float | None:
    timeout = parameters.get(TIMEOUT_PARAMETER)
    if timeout is None:
        return None
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0:
        raise invalid(f"parameter {TIMEOUT_PARAMETER} must be a positive integer of microseconds")
    return timeout / 1e6


def _json_tensor(tensor: OutputTensor) -> dict[str, Any]:
    document: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
    if isinstance(tensor.values, list):
        document["data"] = [value.decode("utf-8") for value in tensor.values]
    else:
        document["data"] = tensor.values.ravel().tolist()
    return document


def infer_response(
    request_id: Any, result: Classification, outputs: Sequence[tuple[str, bool]]
) -> web.Response:
    raw = dict(outputs)
    document: dict[str, Any] = {"model_name": result.model.name, "model_version": str(result.model.version)}
    if request_id is not None:
        document["id"] = request_id
    tensors, binary = [], []
    for tensor in output_tensors(result, [name for name, _ in outputs]):
        if raw[tensor.name]:
            data = tensor.raw()
            binary.append(data)
            tensors.append(
                {
                    "name": tensor.name,
                    "datatype": tensor.datatype,
                    "shape": list(tensor.shape),
                    "parameters": {BINARY_DATA_SIZE: len(data)},
                }
            )
        else:
            tensors.append(_json_tensor(tensor))
    document["outputs"] = tensors
    if not binary:
        return json_response(document)
    header = json.dumps(document, separators=(",", ":")).encode()
    return web.Response(
        body=b"".join([header, *binary]),
        content_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


class V2RestHandler:
    def __init__(
        self, service: InferenceService, registry: ModelRegistry, health: HealthService, settings: Settings
    ) -> None:
        self._service = service
        self._registry = registry
        self._health = health
        self._settings = settings
        self._repository = V2Repository(registry, settings)

    def routes(self) -> list[web.RouteDef]:
        model = "/v2/models/{model}"
        versioned = "/v2/models/{model}/versions/{version}"
        routes = [
            web.get("/v2", self.server_metadata),
            web.get("/v2/health/live", self.live),
            web.get("/v2/health/ready", self.ready),
            web.get("/v2/models/stats", self.statistics),
            web.post("/v2/repository/index", self.repository_index),
            web.post("/v2/repository/models/{model}/load", self.load),
            web.post("/v2/repository/models/{model}/unload", self.unload),
        ]
        for prefix in (model, versioned):
            routes += [
                web.get(prefix, self.model_metadata),
                web.get(prefix + "/ready", self.model_ready),
                web.get(prefix + "/config", self.model_config),
                web.get(prefix + "/stats", self.statistics),
                web.post(prefix + "/infer", self.infer),
            ]
        return routes

    def _lookup(self, request: web.Request) -> Any:
        return self._service.lookup(request.match_info["model"], self._version(request))

    @staticmethod
    def _version(request: web.Request) -> int:
        return parse_version(request.match_info.get("version", ""))

    async def server_metadata(self, request: web.Request) -> web.Response:
        return json_response(server_metadata())

    async def live(self, request: web.Request) -> web.Response:
        return json_response({"live": True})

    async def ready(self, request: web.Request) -> web.Response:
        """200 exactly when the overall health says SERVING (models loaded, not stopping), else 503."""
        ready = self._health.status("") == SERVING
        return json_response({"ready": ready}, 200 if ready else 503)

    async def model_ready(self, request: web.Request) -> web.Response:
        self._lookup(request)  # unknown model or version: 404
        return json_response({"name": request.match_info["model"], "ready": True})

    async def model_metadata(self, request: web.Request) -> web.Response:
        model = self._lookup(request)
        return json_response(
            model_metadata(model, sorted(self._registry.snapshot.models[model.name].versions))
        )

    async def model_config(self, request: web.Request) -> web.Response:
        return json_response(model_config(self._lookup(request), self._settings))

    async def statistics(self, request: web.Request) -> web.Response:
        name = request.match_info.get("model", "")
        return json_response(model_statistics(self._service, self._registry, name, self._version(request)))

    async def infer(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        version = 0
        try:
            version = self._version(request)
            document, binary = split_body(await request.read(), request.headers.get(HEADER_LENGTH))
            texts = decode_texts(input_tensors(document, binary), self._service.check_text_count)
            parameters = _parameters(document, "the request")
            outputs = requested_outputs(output_requests(document), parameters, binary_default=False)
            remaining = time_remaining(parameters)
        except ServingError as error:
            raise self._service.refuse(name, version, error) from None
        result = await self._service.classify(name, version, texts, remaining)
        return infer_response(document.get("id"), result, outputs)

    async def repository_index(self, request: web.Request) -> web.Response:
        document = _json_object(await request.read(), "the request body")
        ready = document.get("ready", False)
        if not isinstance(ready, bool):
            return error_response(400, "'ready' must be a JSON boolean")
        return json_response(self._repository.index("", ready)["models"])

    async def load(self, request: web.Request) -> web.Response:
        document = _json_object(await request.read(), "the request body")
        await self._repository.load("", request.match_info["model"], _parameters(document, "the request"))
        return json_response({})

    async def unload(self, request: web.Request) -> web.Response:
        document = _json_object(await request.read(), "the request body")
        await self._repository.unload("", request.match_info["model"], _parameters(document, "the request"))
        return json_response({})
