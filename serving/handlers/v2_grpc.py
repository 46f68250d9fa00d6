"""The KServe V2 Open Inference Protocol (`inference.GRPCInferenceService`) on the server's gRPC port.

Handlers know protocols, not models: this one turns V2 messages into the wire-neutral tensors of
serving.handlers.v2_tensors and the documents of serving.handlers.v2_documents (which the REST handler
shares), runs inference through the same `InferenceService.classify` as seqserve.v1 (limits, batcher,
metrics), and puts the results back into messages. The service stubs are the ones `tritonclient.grpc`
ships, so the wire contract is exactly the one Triton's clients speak.

Texts come in `contents.bytes_contents` or in `raw_input_contents`. Outputs go to `raw_output_contents`,
as Triton answers over gRPC and as tritonclient's `InferResult.as_numpy` needs (it reads numeric
outputs only from raw contents), unless every requested output sets `binary_data` to false (or the
request sets `binary_data_output` to false): a gRPC response holds either all outputs or none in raw
contents, because raw contents are matched to outputs by position.

`ModelStreamInfer` answers each request of a bidirectional stream in request order with its id; a
request that fails (a malformed message included) gets an `error_message` and the stream goes on.
While the model's queue is full the stream stops reading (backpressure through HTTP/2 flow control)
instead of failing requests; on shutdown it answers what it read, then ends with UNAVAILABLE.

Methods of the protocol that this server does not offer (shared memory, tracing, log settings) answer
UNIMPLEMENTED, naming the ones it does offer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import json_format
from tritonclient.grpc import service_pb2, service_pb2_grpc

from serving.handlers.common import abort_with
from serving.handlers.guard import MalformedRequest, malformed_message
from serving.handlers.streams import StreamStopped, pipelined
from serving.handlers.v2_documents import (
    SERVER_NAME,
    V2Repository,
    model_config,
    model_metadata,
    model_statistics,
    server_metadata,
)
from serving.handlers.v2_tensors import (
    InputTensor,
    OutputRequest,
    decode_texts,
    invalid,
    output_tensors,
    parse_version,
    requested_outputs,
)
from serving.health import SERVING, HealthService
from serving.inference import Classification, InferenceService, ServingError
from serving.registry import ModelRegistry
from serving.settings import Settings

KSERVE_V2_SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
STREAM_INFER_METHOD = f"/{KSERVE_V2_SERVICE}/ModelStreamInfer"


def parameter_values(parameters: Any) -> dict[str, Any]:
    """A map of InferParameter -> plain Python values (bool, int, str, float)."""
    return {
        name: getattr(parameter, parameter.WhichOneof("parameter_choice") or "bool_param")
        for name, parameter in parameters.items()
    }


def input_tensors(request: service_pb2.ModelInferRequest) -> list[InputTensor]:
    """The request's inputs, with the checks that only gRPC's two places for contents need."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise invalid(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} input; raw contents hold one "
            "entry per input"
        )
    tensors = []
    for index, tensor in enumerate(request.inputs):
        if raw and tensor.HasField("contents"):
            raise invalid(f"input {tensor.name!r} has both contents and raw_input_contents; send one of them")
        tensors.append(
            InputTensor(
                name=tensor.name,
                datatype=tensor.datatype,
                shape=tensor.shape,
                elements=lambda tensor=tensor: tensor.contents.bytes_contents,
                raw=raw[index] if raw else None,
                raw_source="raw_input_contents",
                typed_source="contents.bytes_contents",
            )
        )
    return tensors


def requested(request: service_pb2.ModelInferRequest) -> tuple[list[str], bool]:
    """The outputs to return and whether all of them go to raw contents."""
    outputs = [OutputRequest(o.name, parameter_values(o.parameters)) for o in request.outputs]
    chosen = requested_outputs(outputs, parameter_values(request.parameters), binary_default=True)
    if len({raw for _, raw in chosen}) > 1:
        raise invalid("binary_data differs between outputs; raw_output_contents holds every output or none")
    return [name for name, _ in chosen], chosen[0][1]


def _version_or_latest(request: service_pb2.ModelInferRequest) -> int:
    try:
        return parse_version(request.model_version)
    except ServingError:
        return 0  # the request fails when it runs


def infer_response(
    request: service_pb2.ModelInferRequest, result: Classification, outputs: list[str], raw: bool
) -> service_pb2.ModelInferResponse:
    model = result.model
    response = service_pb2.ModelInferResponse(
        model_name=model.name, model_version=str(model.version), id=request.id
    )
    for tensor in output_tensors(result, outputs):
        message = response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        if raw:
            response.raw_output_contents.append(tensor.raw())
        elif tensor.datatype == "FP32":
            message.contents.fp32_contents.extend(tensor.values.ravel().tolist())
        else:
            message.contents.bytes_contents.extend(tensor.values)
    return response


class KServeV2Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        service: InferenceService,
        registry: ModelRegistry,
        health: HealthService,
        settings: Settings,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._service = service
        self._registry = registry
        self._health = health
        self._settings = settings
        self._repository = V2Repository(registry, settings)
        self._stopping = stopping or asyncio.Event()  # set when the server begins to shut down

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
        return json_format.ParseDict(server_metadata(), service_pb2.ServerMetadataResponse())

    async def ModelMetadata(
        self, request: service_pb2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelMetadataResponse:
        try:
            model = self._service.lookup(request.name, parse_version(request.version))
        except ServingError as error:
            await abort_with(context, error)
        # no await since the lookup: the snapshot still holds the model
        document = model_metadata(model, sorted(self._registry.snapshot.models[model.name].versions))
        return json_format.ParseDict(document, service_pb2.ModelMetadataResponse())

    async def ModelConfig(
        self, request: service_pb2.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelConfigResponse:
        try:
            model = self._service.lookup(request.name, parse_version(request.version))
        except ServingError as error:
            await abort_with(context, error)
        document = {"config": model_config(model, self._settings)}
        return json_format.ParseDict(document, service_pb2.ModelConfigResponse())

    async def ModelStatistics(
        self, request: service_pb2.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelStatisticsResponse:
        """One version, every version of a model (no version), or every model (no name)."""
        try:
            document = model_statistics(
                self._service, self._registry, request.name, parse_version(request.version)
            )
        except ServingError as error:
            await abort_with(context, error)
        return json_format.ParseDict(document, service_pb2.ModelStatisticsResponse())

    async def _infer(
        self, request: service_pb2.ModelInferRequest, time_remaining: float | None
    ) -> service_pb2.ModelInferResponse:
        """One inference, or the ServingError to answer with (counted like `classify` counts)."""
        version = 0
        try:
            version = parse_version(request.model_version)
            texts = decode_texts(input_tensors(request), self._service.check_text_count)
            outputs, raw = requested(request)
        except ServingError as error:
            raise self._service.refuse(request.model_name, version, error) from None
        result = await self._service.classify(request.model_name, version, texts, time_remaining)
        return infer_response(request, result, outputs, raw)

    async def ModelInfer(
        self, request: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelInferResponse:
        try:
            response = await self._infer(request, context.time_remaining())
        except ServingError as error:
            await abort_with(context, error)
        return response

    async def ModelStreamInfer(
        self,
        request_iterator: AsyncIterator[service_pb2.ModelInferRequest | MalformedRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        async def admitted() -> AsyncIterator[service_pb2.ModelInferRequest | MalformedRequest]:
            async for request in request_iterator:
                if not isinstance(request, MalformedRequest):
                    await self._service.wait_for_queue_room(request.model_name, _version_or_latest(request))
                yield request

        async def answer(
            request: service_pb2.ModelInferRequest | MalformedRequest,
        ) -> service_pb2.ModelStreamInferResponse:
            if isinstance(request, MalformedRequest):
                return service_pb2.ModelStreamInferResponse(error_message=malformed_message(request))
            try:
                response = await self._infer(request, context.time_remaining())
            except ServingError as error:
                prefix = f"request {request.id!r}: " if request.id else ""
                echo = service_pb2.ModelInferResponse(
                    model_name=request.model_name, model_version=request.model_version, id=request.id
                )
                return service_pb2.ModelStreamInferResponse(
                    error_message=f"{prefix}{error.code.name}: {error.message}", infer_response=echo
                )
            return service_pb2.ModelStreamInferResponse(infer_response=response)

        try:
            async for work in pipelined(admitted(), answer, self._stopping):
                yield await work
        except StreamStopped as stopped:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(stopped))

    async def RepositoryIndex(
        self, request: service_pb2.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.RepositoryIndexResponse:
        try:
            document = self._repository.index(request.repository_name, request.ready)
        except ServingError as error:
            await abort_with(context, error)
        return json_format.ParseDict(document, service_pb2.RepositoryIndexResponse())

    async def RepositoryModelLoad(
        self, request: service_pb2.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.RepositoryModelLoadResponse:
        try:
            await self._repository.load(request.repository_name, request.model_name, request.parameters)
        except ServingError as error:
            await abort_with(context, error)
        return service_pb2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: service_pb2.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.RepositoryModelUnloadResponse:
        try:
            await self._repository.unload(request.repository_name, request.model_name, request.parameters)
        except ServingError as error:
            await abort_with(context, error)
        return service_pb2.RepositoryModelUnloadResponse()


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
