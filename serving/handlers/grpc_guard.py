"""What every RPC passes before its servicer: the shutdown gate and the check that its bytes parse.

Shutdown gate (serving.admission). When shutdown begins, grpcio cancels calls it has received but not
yet handed to a handler (the client sees CANCELLED, which cannot be told apart from a request lost
half-way). So the server first closes the gate: from then on every new RPC (except grpc.health, whose
probes must see NOT_SERVING) ends at once with UNAVAILABLE, "send it elsewhere"; the RPCs already
inside run to the end. Only then does the server stop the transport.

Malformed requests. grpcio parses a request before any handler runs; when parsing fails (a `string`
field holding invalid UTF-8, a truncated varint, a wrong wire type) it answers UNKNOWN "Unexpected
DecodeError" and logs a traceback as if the server were broken. Every method's deserializer is wrapped
so that a parse failure becomes a `MalformedRequest` value, which ends the RPC with INVALID_ARGUMENT
before the servicer sees it. In a client stream, reading the bad message raises `MalformedStream`
inside the servicer, which ends the stream as it ends it for any error (ClassifyStream first answers
the requests it read before), and the stream's status is INVALID_ARGUMENT. Streams named in
`lenient_streams` (KServe V2 ModelStreamInfer, whose protocol answers a bad message with an error
message and goes on) receive the `MalformedRequest` values themselves instead.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from serving import request_clock
from serving.admission import AdmissionGate

# Methods the gate never closes for (prefix match).
UNGATED = ("/grpc.health.v1.Health/",)


@dataclass(frozen=True)
class MalformedRequest:
    error: str


class MalformedStream(Exception):
    """A client stream reached a message that does not parse."""


def malformed_message(request: MalformedRequest) -> str:
    return f"the request is not a valid protobuf message of this method's type: {request.error}"


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as error:
            return MalformedRequest(str(error))

    return parse


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, MalformedRequest):
            raise MalformedStream(malformed_message(request))
        yield request


class RequestGuard(grpc.aio.ServerInterceptor):
    def __init__(self, gate: AdmissionGate, lenient_streams: frozenset[str] = frozenset()) -> None:
        self._gate = gate
        self._lenient = lenient_streams
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}  # method -> its guarded handler

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:  # unknown method: grpcio answers UNIMPLEMENTED
                return handler
            wrapped = self._wrapped[method] = self._guarded(
                handler, gated=not method.startswith(UNGATED), lenient=method in self._lenient
            )
        return wrapped

    async def _enter(self, context: grpc.aio.ServicerContext) -> None:
        if not self._gate.admit():
            await context.abort(grpc.StatusCode.UNAVAILABLE, self._gate.refusal)

    def _guarded(self, handler: grpc.RpcMethodHandler, gated: bool, lenient: bool) -> grpc.RpcMethodHandler:
        changes: dict[str, Any] = {"request_deserializer": _tolerant(handler.request_deserializer)}
        for kind, client_stream in (
            ("unary_unary", False),
            ("unary_stream", False),
            ("stream_unary", True),
            ("stream_stream", True),
        ):
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                changes[kind] = self._wrap(behaviour, client_stream and not lenient, gated)
        return handler._replace(**changes)  # type: ignore[attr-defined]  # grpcio's handlers are namedtuples

    def _wrap(self, behaviour: Callable[..., Any], client_stream: bool, gated: bool) -> Callable[..., Any]:
        """The servicer method, entered through the gate, with an unparseable request refused (a
        client stream's: when it is read). Per call this costs a branch or two: it runs on every RPC."""
        gate = self._gate

        async def checked(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if client_stream:
                return _checked(request)
            if isinstance(request, MalformedRequest):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, malformed_message(request))
            return request

        if inspect.isasyncgenfunction(behaviour):

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                if gated:
                    await self._enter(context)
                try:
                    async for response in behaviour(await checked(request, context), context):
                        yield response
                except MalformedStream as error:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
                finally:
                    if gated:
                        gate.leave()

            return stream

        if client_stream:

            async def client_streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
                if gated:
                    await self._enter(context)
                try:
                    return await behaviour(_checked(request), context)
                except MalformedStream as error:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
                finally:
                    if gated:
                        gate.leave()

            return client_streaming

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if gated and not gate.admit():
                await context.abort(grpc.StatusCode.UNAVAILABLE, gate.refusal)
            clock = request_clock.start()  # the request's duration: until its answer is built
            try:
                if isinstance(request, MalformedRequest):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, malformed_message(request))
                return await behaviour(request, context)
            finally:
                request_clock.stop(clock)
                if gated:
                    gate.leave()

        return unary
