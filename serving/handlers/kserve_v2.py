"""The KServe V2 Open Inference Protocol (`inference.GRPCInferenceService`) on the server's gRPC port.

Handlers know protocols, not models: this one turns V2 tensors into (model, version, texts), runs them
through the same `InferenceService.classify` as seqserve.v1 (limits, batcher, metrics), and turns the
probabilities back into tensors. The service stubs are the ones `tritonclient.grpc` ships, so the wire
contract is exactly the one Triton's clients speak.

Tensors of every model:
- input `text`, BYTES [N]: UTF-8 texts, in `contents.bytes_contents` or in `raw_input_contents`
  (4-byte little-endian length before each element).
- output `probabilities`, FP32 [N, number of labels]: one probability per label, in config order.
- output `label`, BYTES [N]: the most probable label.
Outputs go to `raw_output_contents`, as Triton answers over gRPC and as tritonclient's
`InferResult.as_numpy` needs (it reads numeric outputs only from raw contents), unless every requested
output sets the parameter `binary_data` to false (or the request sets `binary_data_output` to false):
V2 puts either all outputs or none in raw contents.

The repository extension (index, load, unload) drives `ModelRegistry.load/unload`, which also keeps
each model's grpc.health status in step. Load and unload change what the server serves, so they are
refused (PERMISSION_DENIED) unless the server runs with `--model-control explicit`, as Triton's
`--model-control-mode`. The index is always readable: it lists each failed version with its reason.

Methods of the protocol that this server does not offer (model config, statistics, shared memory,
tracing, log settings, streaming infer) answer UNIMPLEMENTED, naming the ones it does offer.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Awaitable, Callable

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from serving.handlers.common import abort_with
from serving.handlers.v2_bytes import BytesTensorError, decode_bytes_elements, encode_bytes_elements
from serving.health import SERVING, HealthService
from serving.inference import Classification, InferenceService, ServingError
from serving.model import ServedModel
from serving.registry import ModelRegistry
from serving.repository import InvalidModelName, validate_model_name
from serving.settings import Settings

KSERVE_V2_SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
SERVER_NAME = "seqserve"
EXTENSIONS = ("model_repository",)
TEXT_INPUT = "text"
PROBABILITIES_OUTPUT = "probabilities"
LABEL_OUTPUT = "label"
OUTPUT_NAMES = (PROBABILITIES_OUTPUT, LABEL_OUTPUT)
# Triton's platform names, so that V2 tooling recognises the model format.
PLATFORMS = {"onnx": "onnxruntime_onnx", "tf": "tensorflow_savedmodel"}
READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
# Sent by tritonclient's unload_model; this server has no model dependencies, so it changes nothing.
UNLOAD_PARAMETERS = frozenset({"unload_dependents"})
_VERSION = re.compile(r"[0-9]+")

TensorMetadata = service_pb2.ModelMetadataResponse.TensorMetadata
TEXT_INPUT_METADATA = TensorMetadata(name=TEXT_INPUT, datatype="BYTES", shape=[-1])
OUTPUTS_HELP = f"{PROBABILITIES_OUTPUT!r} (FP32 [N, labels]) and {LABEL_OUTPUT!r} (BYTES [N])"


def _invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def parse_version(text: str) -> int:
    """V2 carries versions as strings: '' is the latest version (0 for `lookup`), else a positive integer."""
    if text == "":
        return 0
    if not _VERSION.fullmatch(text) or int(text) == 0:
        raise _invalid(f"model version {text[:32]!r} is not a positive integer; empty means the latest")
    return int(text)


def decode_texts(
    request: service_pb2.ModelInferRequest, check_count: Callable[[int], None] | None = None
) -> list[str]:
    """The `text` input tensor, from either kind of contents, as Python strings.

    `check_count` sees the count the shape declares before any element is decoded, so that a message
    of a million empty elements is refused as cheaply as one of ten."""
    names = [tensor.name for tensor in request.inputs]
    if TEXT_INPUT not in names:
        raise _invalid(
            f"missing input {TEXT_INPUT!r} (got {names}): send one BYTES tensor {TEXT_INPUT!r} of shape [N] "
            "holding UTF-8 texts"
        )
    if len(names) != 1:
        raise _invalid(f"inputs {names}: the model takes exactly one input, {TEXT_INPUT!r}")
    tensor = request.inputs[0]
    if tensor.datatype != "BYTES":
        raise _invalid(f"input {TEXT_INPUT!r} has datatype {tensor.datatype!r}; expected BYTES (UTF-8 texts)")
    shape = list(tensor.shape)
    if len(shape) != 1 or shape[0] < 0:
        raise _invalid(f"input {TEXT_INPUT!r} has shape {shape}; expected [N], one text per element")
    count = shape[0]
    if check_count is not None:
        check_count(count)
    if request.raw_input_contents:
        if len(request.raw_input_contents) != len(request.inputs):
            raise _invalid(
                f"{len(request.raw_input_contents)} raw_input_contents for {len(request.inputs)} input; "
                "raw contents hold one entry per input"
            )
        if tensor.HasField("contents"):
            raise _invalid(f"input {TEXT_INPUT!r} has both contents and raw_input_contents; send one of them")
        try:
            elements = decode_bytes_elements(request.raw_input_contents[0], count)
        except BytesTensorError as error:
            raise _invalid(f"raw_input_contents of input {TEXT_INPUT!r}: {error}") from None
    else:
        elements = list(tensor.contents.bytes_contents)
        if len(elements) != count:
            raise _invalid(
                f"input {TEXT_INPUT!r} has {len(elements)} elements in contents.bytes_contents; "
                f"its shape declares {count}"
            )
    texts = []
    for index, element in enumerate(elements):
        try:
            texts.append(element.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise _invalid(
                f"input {TEXT_INPUT!r} element {index} is not valid UTF-8 "
                f"({error.reason} at byte {error.start})"
            ) from None
    return texts


def _bool_parameter(parameter: service_pb2.InferParameter, where: str) -> bool:
    if parameter.WhichOneof("parameter_choice") != "bool_param":
        raise _invalid(f"{where} must be a bool_param")
    return parameter.bool_param


def requested_outputs(request: service_pb2.ModelInferRequest) -> tuple[list[str], bool]:
    """The output names to return, in request order (all when none are named), and whether they go raw."""
    raw = True
    if "binary_data_output" in request.parameters:
        raw = _bool_parameter(request.parameters["binary_data_output"], "parameter binary_data_output")
    if not request.outputs:
        return list(OUTPUT_NAMES), raw
    names: list[str] = []
    raw_choices = set()
    for output in request.outputs:
        if output.name not in OUTPUT_NAMES:
            raise _invalid(f"unknown output {output.name!r}; the model's outputs are {OUTPUTS_HELP}")
        if output.name in names:
            raise _invalid(f"output {output.name!r} is requested twice")
        unsupported = sorted(set(output.parameters) - {"binary_data"})
        if unsupported:
            raise _invalid(f"output {output.name!r}: parameters {unsupported} are not supported")
        if "binary_data" in output.parameters:
            where = f"output {output.name!r} parameter binary_data"
            raw_choices.add(_bool_parameter(output.parameters["binary_data"], where))
        else:
            raw_choices.add(raw)
        names.append(output.name)
    if len(raw_choices) > 1:
        raise _invalid("binary_data differs between outputs; raw_output_contents holds every output or none")
    return names, raw_choices.pop()


def infer_response(
    request: service_pb2.ModelInferRequest, result: Classification, outputs: list[str], raw: bool
) -> service_pb2.ModelInferResponse:
    model = result.model
    probabilities = np.asarray(result.probabilities, dtype=np.float32)
    labels = [model.labels[int(best)].encode("utf-8") for best in np.argmax(probabilities, axis=1)]
    response = service_pb2.ModelInferResponse(
        model_name=model.name, model_version=str(model.version), id=request.id
    )
    for name in outputs:
        tensor = response.outputs.add(name=name)
        if name == PROBABILITIES_OUTPUT:
            tensor.datatype = "FP32"
            tensor.shape.extend(probabilities.shape)
            if raw:
                response.raw_output_contents.append(probabilities.astype("<f4").tobytes())
            else:
                tensor.contents.fp32_contents.extend(probabilities.ravel().tolist())
        else:
            tensor.datatype = "BYTES"
            tensor.shape.append(len(labels))
            if raw:
                response.raw_output_contents.append(encode_bytes_elements(labels))
            else:
                tensor.contents.bytes_contents.extend(labels)
    return response


def model_metadata(model: ServedModel, versions: list[int]) -> service_pb2.ModelMetadataResponse:
    return service_pb2.ModelMetadataResponse(
        name=model.name,
        versions=[str(version) for version in versions],
        platform=PLATFORMS.get(model.runtime.name, model.runtime.name),
        inputs=[TEXT_INPUT_METADATA],
        outputs=[
            TensorMetadata(name=PROBABILITIES_OUTPUT, datatype="FP32", shape=[-1, len(model.labels)]),
            TensorMetadata(name=LABEL_OUTPUT, datatype="BYTES", shape=[-1]),
        ],
    )


class KServeV2Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self, service: InferenceService, registry: ModelRegistry, health: HealthService, settings: Settings
    ) -> None:
        self._service = service
        self._registry = registry
        self._health = health
        self._settings = settings

    async def ServerLive(
        self, request: service_pb2.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ServerLiveResponse:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: service_pb2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ServerReadyResponse:
        """Ready exactly when the overall grpc.health status says SERVING (models loaded, not stopping)."""
        return service_pb2.ServerReadyResponse(ready=self._health.status("") == SERVING)

    async def ModelReady(
        self, request: service_pb2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelReadyResponse:
        try:
            version = parse_version(request.version)
        except ServingError as error:
            await abort_with(context, error)
        try:
            self._service.lookup(request.name, version)
        except ServingError:
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=True)

    async def ServerMetadata(
        self, request: service_pb2.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ServerMetadataResponse:
        return service_pb2.ServerMetadataResponse(
            name=SERVER_NAME, version=importlib.metadata.version(SERVER_NAME), extensions=EXTENSIONS
        )

    async def ModelMetadata(
        self, request: service_pb2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelMetadataResponse:
        try:
            model = self._service.lookup(request.name, parse_version(request.version))
        except ServingError as error:
            await abort_with(context, error)
        # no await since the lookup: the snapshot still holds the model
        return model_metadata(model, sorted(self._registry.snapshot.models[model.name].versions))

    async def ModelInfer(
        self, request: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelInferResponse:
        version = 0
        try:
            version = parse_version(request.model_version)
            texts = decode_texts(request, self._service.check_text_count)
            outputs, raw = requested_outputs(request)
        except ServingError as error:
            await abort_with(context, self._service.refuse(request.model_name, version, error))
        try:
            result = await self._service.classify(
                request.model_name, version, texts, context.time_remaining()
            )
        except ServingError as error:
            await abort_with(context, error)
        return infer_response(request, result, outputs, raw)

    async def RepositoryIndex(
        self, request: service_pb2.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.RepositoryIndexResponse:
        """Every model of the repository: one READY entry per loaded version, one UNAVAILABLE entry with
        its reason per version that failed to load, and one UNAVAILABLE "unloaded" entry for a model
        with neither."""
        try:
            self._check_repository(request.repository_name)
        except ServingError as error:
            await abort_with(context, error)
        snapshot = self._registry.snapshot
        ModelIndex = service_pb2.RepositoryIndexResponse.ModelIndex
        models = []
        for name in sorted(set(self._registry.repository_models()) | set(snapshot.names())):
            entry = snapshot.models.get(name)
            loaded = sorted(entry.versions) if entry is not None else []
            failed = {v: why for v, why in self._registry.failed_versions(name).items() if v not in loaded}
            models.extend(ModelIndex(name=name, version=str(v), state=READY) for v in loaded)
            if request.ready:
                continue
            models.extend(
                ModelIndex(name=name, version=str(v), state=UNAVAILABLE, reason=why)
                for v, why in sorted(failed.items())
            )
            if not loaded and not failed:
                models.append(ModelIndex(name=name, state=UNAVAILABLE, reason="unloaded"))
        return service_pb2.RepositoryIndexResponse(models=models)

    async def RepositoryModelLoad(
        self, request: service_pb2.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.RepositoryModelLoadResponse:
        """(Re)load a model from the repository files: new versions come in, removed ones go."""
        try:
            self._check_model_control()
            self._check_repository(request.repository_name)
            if request.parameters:
                raise _invalid(
                    f"load parameters {sorted(request.parameters)} are not supported: models load from "
                    "their files in the repository"
                )
            self._check_in_repository(request.model_name)
            if await self._registry.load(request.model_name) is None:
                why = self._unavailable_reason(request.model_name)
                message = f"model {request.model_name!r} failed to load: {why}"
                raise ServingError(grpc.StatusCode.INTERNAL, message)
        except ServingError as error:
            await abort_with(context, error)
        return service_pb2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: service_pb2.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.RepositoryModelUnloadResponse:
        """Unload every version; queued requests finish first, new ones get NOT_FOUND. Idempotent."""
        try:
            self._check_model_control()
            self._check_repository(request.repository_name)
            unsupported = sorted(set(request.parameters) - UNLOAD_PARAMETERS)
            if unsupported:
                raise _invalid(f"unload parameters {unsupported} are not supported")
            if request.model_name not in self._registry.snapshot.models:
                self._check_in_repository(request.model_name)
            await self._registry.unload(request.model_name)
        except ServingError as error:
            await abort_with(context, error)
        return service_pb2.RepositoryModelUnloadResponse()

    def _check_model_control(self) -> None:
        if self._settings.model_control != "explicit":
            raise ServingError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"loading and unloading models is disabled (--model-control {self._settings.model_control}); "
                "start the server with --model-control explicit to allow it",
            )

    @staticmethod
    def _check_repository(name: str) -> None:
        if name:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"unknown repository {name[:64]!r}: this server has one model repository; leave "
                "repository_name empty",
            )

    def _check_in_repository(self, name: str) -> None:
        try:
            validate_model_name(name)
        except InvalidModelName as error:
            raise _invalid(str(error)) from None
        available = self._registry.repository_models()
        if name not in available:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"model {name!r} is not in the model repository; it holds: {', '.join(available) or 'none'}",
            )

    def _unavailable_reason(self, name: str) -> str:
        failures = self._registry.failed_versions(name)
        return "; ".join(f"version {v}: {why}" for v, why in sorted(failures.items())) or "unloaded"


def _unimplemented(method: str) -> Callable[..., Awaitable[None]]:
    async def refuse(self: KServeV2Servicer, request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{KSERVE_V2_SERVICE}/{method} is not offered by {SERVER_NAME}; it offers "
            f"{', '.join(OFFERED_METHODS)}",
        )

    return refuse


# The generated base class raises NotImplementedError, which grpcio reports as UNKNOWN (and logs as a
# server error); every method not defined above answers UNIMPLEMENTED instead.
OFFERED_METHODS = tuple(sorted(name for name in vars(KServeV2Servicer) if name[0].isupper()))
for _method in service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
    if _method.name not in OFFERED_METHODS:
        setattr(KServeV2Servicer, _method.name, _unimplemented(_method.name))


def add_kserve_v2_servicer_to_server(servicer: KServeV2Servicer, server: grpc.aio.Server) -> None:
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
