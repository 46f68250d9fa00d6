"""KServe V2 over gRPC (`inference.GRPCInferenceService`): a thin adapter over the V2 data plane.

Each method decodes its message into a data-plane call (serving.protocol.v2_dataplane) and encodes the
answer; tensor semantics live in serving.protocol.v2_types, shared with REST. The service stubs are
the ones `tritonclient.grpc` ships, so the wire contract is exactly the one Triton's clients speak.

`ModelStreamInfer` answers each request of a bidirectional stream in request order with its id; a
request that fails (a malformed message included) gets an `error_message` and the stream goes on.
While the model's queue is full the stream stops reading (backpressure through HTTP/2 flow control)
instead of failing requests; on shutdown it answers what it read, then ends with UNAVAILABLE.

Methods of the protocol that this server does not offer (shared memory, tracing, log settings) answer
UNIMPLEMENTED, naming the ones it does offer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from google.protobuf import json_format
from tritonclient.grpc import service_pb2, service_pb2_grpc

from serving.errors import ServingError
from serving.handlers.grpc_errors import grpc_errors, refuse_unoffered
from serving.handlers.grpc_guard import MalformedRequest, malformed_message
from serving.handlers.streams import pipelined
from serving.protocol.v2_dataplane import SERVER_NAME, DataPlane
from serving.protocol.v2_types import InferRequest

KSERVE_V2_SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
STREAM_INFER_METHOD = f"/{KSERVE_V2_SERVICE}/ModelStreamInfer"


class KServeV2Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, dataplane: DataPlane, stopping: asyncio.Event | None = None) -> None:
        self._dataplane = dataplane
        self._stopping = stopping or asyncio.Event()  # set when the server begins to shut down

    async def ServerLive(
        self, request: service_pb2.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ServerLiveResponse:
        return service_pb2.ServerLiveResponse(live=self._dataplane.live())

    async def ServerReady(
        self, request: service_pb2.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ServerReadyResponse:
        return service_pb2.ServerReadyResponse(ready=self._dataplane.ready())

    @grpc_errors
    async def ModelReady(
        self, request: service_pb2.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelReadyResponse:
        return service_pb2.ModelReadyResponse(
            ready=self._dataplane.model_ready(request.name, request.version)
        )

    async def ServerMetadata(
        self, request: service_pb2.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ServerMetadataResponse:
        return json_format.ParseDict(self._dataplane.server_metadata(), service_pb2.ServerMetadataResponse())

    @grpc_errors
    async def ModelMetadata(
        self, request: service_pb2.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelMetadataResponse:
        document = self._dataplane.model_metadata(request.name, request.version)
        return json_format.ParseDict(document, service_pb2.ModelMetadataResponse())

    @grpc_errors
    async def ModelConfig(
        self, request: service_pb2.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelConfigResponse:
        document = {"config": self._dataplane.model_config(request.name, request.version)}
        return json_format.ParseDict(document, service_pb2.ModelConfigResponse())

    @grpc_errors
    async def ModelStatistics(
        self, request: service_pb2.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelStatisticsResponse:
        """One version, every version of a model (no version), or every model (no name)."""
        document = self._dataplane.model_statistics(request.name, request.version)
        return json_format.ParseDict(document, service_pb2.ModelStatisticsResponse())

    async def _infer(
        self, message: service_pb2.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.ModelInferResponse:
        response = await self._dataplane.infer(
            lambda: InferRequest.from_grpc(message),
            message.model_name,
            message.model_version,
            context.time_remaining(),
        )
        return response.to_grpc()

    ModelInfer = grpc_errors(_infer)  # the unary call is `_infer` itself: one coroutine less per call

    @grpc_errors
    async def ModelStreamInfer(
        self,
        request_iterator: AsyncIterator[service_pb2.ModelInferRequest | MalformedRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[service_pb2.ModelStreamInferResponse]:
        async def admitted() -> AsyncIterator[service_pb2.ModelInferRequest | MalformedRequest]:
            async for request in request_iterator:
                if not isinstance(request, MalformedRequest):
                    await self._dataplane.wait_for_queue_room(request.model_name, request.model_version)
                yield request

        async def answer(
            request: service_pb2.ModelInferRequest | MalformedRequest,
        ) -> service_pb2.ModelStreamInferResponse:
            if isinstance(request, MalformedRequest):
                return service_pb2.ModelStreamInferResponse(error_message=malformed_message(request))
            try:
                response = await self._infer(request, context)
            except ServingError as error:
                prefix = f"request {request.id!r}: " if request.id else ""
                echo = service_pb2.ModelInferResponse(
                    model_name=request.model_name, model_version=request.model_version, id=request.id
                )
                return service_pb2.ModelStreamInferResponse(
                    error_message=f"{prefix}{error.code.name}: {error.message}", infer_response=echo
                )
            return service_pb2.ModelStreamInferResponse(infer_response=response)

        async for work in pipelined(admitted(), answer, self._stopping):
            yield await work

    @grpc_errors
    async def RepositoryIndex(
        self, request: service_pb2.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.RepositoryIndexResponse:
        document = self._dataplane.repository_index(request.repository_name, request.ready)
        return json_format.ParseDict(document, service_pb2.RepositoryIndexResponse())

    @grpc_errors
    async def RepositoryModelLoad(
        self, request: service_pb2.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.RepositoryModelLoadResponse:
        await self._dataplane.repository_load(request.repository_name, request.model_name, request.parameters)
        return service_pb2.RepositoryModelLoadResponse()

    @grpc_errors
    async def RepositoryModelUnload(
        self, request: service_pb2.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> service_pb2.RepositoryModelUnloadResponse:
        await self._dataplane.repository_unload(
            request.repository_name, request.model_name, request.parameters
        )
        return service_pb2.RepositoryModelUnloadResponse()


refuse_unoffered(
    KServeV2Servicer, service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"], SERVER_NAME
)


def add_kserve_v2_servicer_to_server(servicer: KServeV2Servicer, server: grpc.aio.Server) -> None:
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
