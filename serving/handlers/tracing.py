"""One SERVER span per gRPC RPC or HTTP call, continuing the caller's W3C `traceparent`: a gRPC
interceptor and an aiohttp middleware, installed (outermost) only when tracing is on.

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
from serving.tracing import ServerTracing

UNTRACED_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")
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


class GrpcTracingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, tracing: ServerTracing, address: ServerAddress) -> None:
        self._tracing = tracing
        self._address = address
        # (method, handler) -> the handler in a span; the handlers the inner interceptors give are made
        # once per method (serving.handlers.grpc_guard, serving.handlers.restricted_api), so this stays
        # as small as the set of methods
        self._traced_handlers: dict[tuple[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        """The method's handler inside a span, wrapped once per method and handler."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(UNTRACED_METHODS):
            return handler
        traced = self._traced_handlers.get((method, handler))
        if traced is None:
            traced = self._traced_handlers[method, handler] = self._traced(handler, method)
        return traced

    def _traced(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        service, _, name = method.lstrip("/").rpartition("/")
        attributes = {
            "rpc.system": "grpc", "rpc.service": service, "rpc.method": name,
            "server.address": self._address.host, "server.port": self._address.grpc_port,
        }  # fmt: skip
        changes = {}
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                changes[kind] = self._wrap(behaviour, f"{service}/{name}", attributes)
        return handler._replace(**changes)  # type: ignore[attr-defined]  # grpcio's handlers are namedtuples

    def _start(
        self, name: str, attributes: dict[str, Any], context: grpc.aio.ServicerContext
    ) -> tuple[Any, object | None]:
        metadata = {
            key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)
        }
        span = self._tracing.server_span(name, metadata, attributes)
        return span, self._tracing.activate(span)

    def _finish(
        self, span: Any, token: object | None, context: grpc.aio.ServicerContext, failed: bool
    ) -> None:
        if token is None:  # not sampled
            return
        code = context.code() or (grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK)
        if isinstance(code, int):  # grpc.aio reports the code set by abort as its number
            code = next(c for c in grpc.StatusCode if c.value[0] == code)
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        self._tracing.finish(span, token, code in SERVER_FAULTS)

    def _wrap(
        self, behaviour: Callable[..., Any], name: str, attributes: dict[str, Any]
    ) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behaviour):

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                span, token = self._start(name, attributes, context)
                failed = True
                try:
                    async for response in behaviour(request, context):
                        yield response
                    failed = False
                finally:
                    self._finish(span, token, context, failed)

            return stream

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            span, token = self._start(name, attributes, context)
            failed = True
            try:
                result = behaviour(request, context)
                result = await result if inspect.isawaitable(result) else result
                failed = False
                return result
            finally:
                self._finish(span, token, context, failed)

        return call


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def http_tracing_middleware(tracing: ServerTracing, address: ServerAddress) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in HEALTH_PATHS:
            return await handler(request)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else ""
        span = tracing.server_span(
            f"{request.method} {route}".rstrip(),
            request.headers,  # type: ignore[arg-type]  # a case-insensitive mapping of str
            {
                "http.request.method": request.method,
                "http.route": route,
                "server.address": address.host,
                "server.port": address.http_port,
            },
        )
        token = tracing.activate(span)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            span.set_attribute("http.response.status_code", status)
            tracing.finish(span, token, status >= 500)

    return middleware
