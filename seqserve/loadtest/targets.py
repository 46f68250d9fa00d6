"""What the load generator calls: one class per wire protocol, all with the same methods.

`seqserve`: seqserve.v1.Classifier/Classify. `v2`: the KServe V2 ModelInfer (input `text`, BYTES [N])
through tritonclient.grpc.aio, the client Triton users already have; tritonclient is imported only
when that protocol is chosen. `rest`: KServe V2 REST `POST /v2/models/{m}/infer` with JSON tensors,
as curl or any HTTP client sends it, through aiohttp; its address is the server's REST port. `tfs`:
TensorFlow Serving's PredictionService/Predict (input `text`, DT_STRING [N]) through TF Serving's
stubs (seqserve.tfs), as its clients send it; TF Serving lists no models, so name them (`--model`).

A target owns its gRPC channels. Several channels, each with its own TCP connection (a local
subchannel pool: channels to one address otherwise share a connection), spread the load: one
connection caps a Python client well below what the server can take.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import aiohttp
import grpc
import numpy as np

from seqserve.v1 import classifier_pb2, classifier_pb2_grpc

V2_TEXT_INPUT = "text"
V2_OUTPUT = "probabilities"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
Headers = Sequence[tuple[str, str]]  # gRPC metadata / HTTP headers sent with one call


class CallFailed(Exception):
    """A call ended with a non-OK status; `code` is the gRPC status name, e.g. UNAVAILABLE."""

    def __init__(self, code: str, details: str = "") -> None:
        super().__init__(f"{code}: {details}")
        self.code = code


class Target(Protocol):
    async def list_models(self) -> list[str]: ...

    async def classify(
        self, channel: int, model: str, texts: Sequence[str], timeout: float, headers: Headers = ()
    ) -> None:
        """One request on channel number `channel`, with `headers` (gRPC metadata or HTTP headers,
        e.g. a traceparent); raises CallFailed on a non-OK status."""
        ...

    async def close(self) -> None: ...


def channel_options(index: int) -> list[tuple[str, int | str]]:
    """Own connection per channel: a local subchannel pool plus a distinct argument."""
    return [("grpc.use_local_subchannel_pool", 1), ("seqserve.loadtest.channel", index)]


class ClassifierTarget:
    """seqserve.v1.Classifier/Classify."""

    protocol = "seqserve"

    def __init__(
        self, address: str, channels: int, extra_options: Sequence[tuple[str, int | str]] = ()
    ) -> None:
        self._channels = [
            grpc.aio.insecure_channel(address, options=[*channel_options(i), *extra_options])
            for i in range(channels)
        ]
        self._stubs = [classifier_pb2_grpc.ClassifierStub(channel) for channel in self._channels]

    async def list_models(self) -> list[str]:
        try:
            response = await self._stubs[0].ListModels(classifier_pb2.ListModelsRequest(), timeout=10)
        except grpc.aio.AioRpcError as error:
            raise CallFailed(error.code().name, error.details() or "") from None
        return [model.name for model in response.models]

    async def classify(
        self, channel: int, model: str, texts: Sequence[str], timeout: float, headers: Headers = ()
    ) -> None:
        request = classifier_pb2.ClassifyRequest(model=model, texts=texts)
        try:
            await self._stubs[channel % len(self._stubs)].Classify(
                request, timeout=timeout, metadata=headers or None
            )
        except grpc.aio.AioRpcError as error:
            raise CallFailed(error.code().name, error.details() or "") from None

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


class KServeV2Target:
    """KServe V2 GRPCInferenceService/ModelInfer via tritonclient.grpc.aio, one client per channel."""

    protocol = "v2"

    def __init__(self, address: str, channels: int) -> None:
        from tritonclient.grpc import aio
        from tritonclient.utils import InferenceServerException

        self._error_type = InferenceServerException
        self._infer_input = aio.InferInput
        self._requested = [aio.InferRequestedOutput(V2_OUTPUT)]
        limits = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        limits.append(("grpc.max_receive_message_length", MAX_MESSAGE_BYTES))
        self._clients = [
            aio.InferenceServerClient(address, channel_args=channel_options(i) + limits)
            for i in range(channels)
        ]

    def _failed(self, error: Exception) -> CallFailed:
        status = getattr(error, "status", lambda: None)() or "UNKNOWN"
        return CallFailed(status.removeprefix("StatusCode."), str(error))

    async def list_models(self) -> list[str]:
        try:
            index = await self._clients[0].get_model_repository_index(client_timeout=10)
        except self._error_type as error:
            raise self._failed(error) from None
        return sorted({model.name for model in index.models if model.state in ("", "READY")})

    async def classify(
        self, channel: int, model: str, texts: Sequence[str], timeout: float, headers: Headers = ()
    ) -> None:
        text_input = self._infer_input(V2_TEXT_INPUT, [len(texts)], "BYTES")
        text_input.set_data_from_numpy(np.array([text.encode("utf-8") for text in texts], dtype=np.object_))
        try:
            await self._clients[channel % len(self._clients)].infer(
                model,
                [text_input],
                outputs=self._requested,
                client_timeout=timeout,
                headers=dict(headers) or None,
            )
        except self._error_type as error:
            raise self._failed(error) from None

    async def close(self) -> None:
        for client in self._clients:
            await client.close()


class TfServingTarget:
    """TensorFlow Serving PredictionService/Predict, one channel (own connection) per channel."""

    protocol = "tfs"

    def __init__(self, address: str, channels: int) -> None:
        from seqserve.tfs.tensorflow.core.framework import types_pb2
        from seqserve.tfs.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        self._request_type = predict_pb2.PredictRequest
        self._string = types_pb2.DT_STRING
        self._channels = [
            grpc.aio.insecure_channel(address, options=channel_options(i)) for i in range(channels)
        ]
        self._stubs = [prediction_service_pb2_grpc.PredictionServiceStub(c) for c in self._channels]

    async def list_models(self) -> list[str]:
        raise CallFailed("UNIMPLEMENTED", "TensorFlow Serving's API lists no models: name them (--model)")

    async def classify(self, channel: int, model: str, texts: Sequence[str], timeout: float) -> None:
        request = self._request_type(output_filter=[V2_OUTPUT])
        request.model_spec.name = model
        tensor = request.inputs[V2_TEXT_INPUT]
        tensor.dtype = self._string
        tensor.tensor_shape.dim.add(size=len(texts))
        tensor.string_val.extend(text.encode("utf-8") for text in texts)
        try:
            await self._stubs[channel % len(self._stubs)].Predict(request, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise CallFailed(error.code().name, error.details() or "") from None

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


class RestTarget:
    """KServe V2 REST with JSON tensors, one aiohttp session (its own connections) per channel."""

    protocol = "rest"

    def __init__(self, address: str, channels: int) -> None:
        self._base = f"http://{address}"
        self._sessions: list[aiohttp.ClientSession | None] = [None] * channels

    def _session(self, channel: int) -> aiohttp.ClientSession:
        """Created on first use, inside the running event loop."""
        index = channel % len(self._sessions)
        session = self._sessions[index]
        if session is None:
            session = self._sessions[index] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return session

    async def _post(
        self, channel: int, path: str, body: object, timeout: float, headers: Headers = ()
    ) -> Any:
        try:
            async with self._session(channel).post(
                self._base + path,
                json=body,
                timeout=aiohttp.ClientTimeout(total=timeout),
                headers=dict(headers) or None,
            ) as response:
                document = await response.json(content_type=None)
        except TimeoutError as error:
            raise CallFailed("DEADLINE_EXCEEDED", str(error)) from None
        except aiohttp.ClientError as error:
            raise CallFailed("UNAVAILABLE", str(error)) from None
        if response.status != 200:
            raise CallFailed(f"HTTP_{response.status}", str(document.get("error", "")))
        return document

    async def list_models(self) -> list[str]:
        index = await self._post(0, "/v2/repository/index", {"ready": True}, 10)
        return sorted({model["name"] for model in index})

    async def classify(
        self, channel: int, model: str, texts: Sequence[str], timeout: float, headers: Headers = ()
    ) -> None:
        tensor = {"name": V2_TEXT_INPUT, "shape": [len(texts)], "datatype": "BYTES", "data": list(texts)}
        body = {"inputs": [tensor], "outputs": [{"name": V2_OUTPUT}]}
        await self._post(channel, f"/v2/models/{model}/infer", body, timeout, headers)

    async def close(self) -> None:
        for session in self._sessions:
            if session is not None:
                await session.close()


TargetType = type[ClassifierTarget] | type[KServeV2Target] | type[TfServingTarget] | type[RestTarget]
PROTOCOLS: dict[str, TargetType] = {
    "seqserve": ClassifierTarget,
    "v2": KServeV2Target,
    "tfs": TfServingTarget,
    "rest": RestTarget,
}


def create_target(protocol: str, address: str, channels: int) -> Target:
    return PROTOCOLS[protocol](address, channels)
