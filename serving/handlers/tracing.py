"""One SERVER span per sampled gRPC RPC or HTTP call, continuing the caller's W3C `traceparent`: a gRPC
interceptor and an aiohttp middleware, installed (outermost) only when tracing is on.

Per call, each first asks the sampler (ServerTracing.decide, plain Python); a call that is not
sampled is handed on as it came, with nothing else done. A sampled call's handler is wrapped for
that call alone: its span starts on arrival and ends with the answer.

Attributes follow the semantic conventions: `rpc.system`, `rpc.service`, `rpc.method`,
`rpc.grpc.status_code` for gRPC, `http.request.method`, `http.route`, `http.response.status_code`
for HTTP, and `server.address`, `server.port` for both; the request path adds the model and the
text count (serving.tracing). A status that says the server failed (gRPC's UNKNOWN, INTERNAL,
UNAVAILABLE, ...; HTTP 5xx) marks the span as an error; a client's mistake does not. Health checks
are not traced: probes would drown the traces of requests.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web

from serving.http_server import HEALTH_PATHS
from serving.trace_sampling import Sampled
from serving.tracing import Entered, RequestTrace, ServerTracing

UNTRACED_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")
TRACEPARENT, TRACESTATE = "traceparent", "tracestate"
GRPC_STATUS, HTTP_STATUS = "rpc.grpc.status_code", "http.response.status_code"
HANDLER_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
# gRPC codes that are the server's fault (semantic conventions for gRPC server spans)
SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
    }
)  # fmt: skip


class ServerAddress:
    """Where the ports are bound; known once they are, after the interceptor is made."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.grpc_port = 0
        self.http_port = 0


def _traceparent(metadata: Any) -> str | None:
    for key, value in metadata or ():
        if key == TRACEPARENT:
            return value  # type: ignore[no-any-return]
    return None


class GrpcTracingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tracing: ServerTracing, address: ServerAddress) -> None:
        self._tracing = tracing
        self._address = address
        # method -> (span name, attributes): one entry per method of the services, made on its first
        # sampled call (the ports are bound by then)
        self._methods: dict[str, tuple[str, dict[str, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The method's handler as it comes for a call that is not sampled; for a sampled one, the
        handler wrapped to run inside the call's span, started now."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(UNTRACED_METHODS):
            return handler
        metadata = handler_call_details.invocation_metadata
        sampled = self._tracing.decide(_traceparent(metadata))
        if sampled is None:
            return handler
        return self._traced(handler, method, sampled, metadata)

    def _traced(
        self, handler: grpc.RpcMethodHandler, method: str, sampled: Sampled, metadata: Any
    ) -> grpc.RpcMethodHandler:
        described = self._methods.get(method)
        if described is None:
            service, _, name = method.lstrip("/").rpartition("/")
            attributes = {
                "rpc.system": "grpc", "rpc.service": service, "rpc.method": name,
                "server.address": self._address.host, "server.port": self._address.grpc_port,
            }  # fmt: skip
            described = self._methods[method] = (f"{service}/{name}", attributes)
        tracestate = [value for key, value in metadata or () if key == TRACESTATE]
        call = self._tracing.start(sampled, *described, tracestate)
        changes = {}
        for kind in HANDLER_KINDS:
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                changes[kind] = self._wrap(behaviour, call)
        return handler._replace(**changes)  # type: ignore[attr-defined]  # grpcio's handlers are namedtuples

    def _finish(
        self, call: RequestTrace, entered: Entered, context: grpc.aio.ServicerContext, failed: bool
    ) -> None:
        code = context.code() or (grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK)
        if isinstance(code, int):  # grpc.aio reports the code set by abort as its number
            code = next(c for c in grpc.StatusCode if c.value[0] == code)
        self._tracing.finish(call, entered, code in SERVER_FAULTS, (GRPC_STATUS, code.value[0]))

    def _wrap(self, behaviour: Callable[..., Any], call: RequestTrace) -> Callable[..., Any]:
        tracing = self._tracing
        if inspect.isasyncgenfunction(behaviour):

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                entered = tracing.enter(call)
                failed = True
                try:
                    async for response in behaviour(request, context):
                        yield response
                    failed = False
                finally:
                    self._finish(call, entered, context, failed)

            return stream

        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            entered = tracing.enter(call)
            failed = True
            try:
                result = behaviour(request, context)
                result = await result if inspect.isawaitable(result) else result
                failed = False
                return result
            finally:
                self._finish(call, entered, context, failed)

        return unary


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def http_tracing_middleware(tracing: ServerTracing, address: ServerAddress) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in HEALTH_PATHS:
            return await handler(request)
        sampled = tracing.decide(request.headers.get(TRACEPARENT))
        if sampled is None:
            return await handler(request)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else ""
        attributes = {
            "http.request.method": request.method,
            "http.route": route,
            "server.address": address.host,
            "server.port": address.http_port,
        }
        call = tracing.start(
            sampled, f"{request.method} {route}".rstrip(), attributes, request.headers.getall(TRACESTATE, [])
        )
        entered = tracing.enter(call)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            tracing.finish(call, entered, status >= 500, (HTTP_STATUS, status))

    return middleware
