"""Enforcement of `--restricted-api` (serving.restrictions): a gRPC interceptor and a REST middleware
that refuse a restricted API without its header, before its handler runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from aiohttp import web

from serving.handlers.rest import error_response
from serving.restrictions import GRPC_GROUPS, Restriction, rest_group


class RestrictedApiInterceptor(grpc.aio.ServerInterceptor):
    """Refuses restricted gRPC methods without their header, before the method's handler runs."""

    def __init__(self, restrictions: Mapping[str, Restriction]) -> None:
        self._restrictions = restrictions

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        group = GRPC_GROUPS.get(details.method)
        restriction = self._restrictions.get(group) if group else None
        if restriction is not None:
            metadata = dict(details.invocation_metadata or ())
            if not restriction.allows(metadata.get(restriction.header)):
                return _denied(restriction.denial(group))  # type: ignore[arg-type]
        return await continuation(details)


def _denied(message: str) -> grpc.RpcMethodHandler:
    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    # unary-unary whatever the method: the request is never read, so no deserializer is needed
    return grpc.unary_unary_rpc_method_handler(deny)


def rest_middleware(restrictions: Mapping[str, Restriction]) -> Any:
    @web.middleware
    async def restricted(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        group = rest_group(request.path)
        restriction = restrictions.get(group) if group else None
        if restriction is not None and not restriction.allows(request.headers.get(restriction.header)):
            return error_response(403, restriction.denial(group))  # type: ignore[arg-type]
        return await handler(request)

    return restricted
