"""Enforcement of `--restricted-api` (serving.restrictions): a gRPC interceptor and a REST middleware
that refuse a restricted API without its header, before its handler runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from aiohttp import web

from serving.handlers.rest import error_response
from serving.restrictions import GRPC_ACCESS, Restriction, rest_access


class RestrictedApiInterceptor(grpc.aio.ServerInterceptor):
    """Refuses restricted gRPC methods without their header, before the method's handler runs.

    Each restricted method has one denial handler, made here once: an interceptor outside this one
    (tracing) may keep a handler per handler it sees, so a handler per denied call would grow it."""

    def __init__(self, restrictions: Mapping[str, Restriction]) -> None:
        self._restricted = {
            method: (restrictions[group], _denied(restrictions[group].denial(group)))
            for method, group in GRPC_ACCESS.items()
            if group in restrictions
        }

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        restricted = self._restricted.get(details.method)
        if restricted is not None:
            restriction, denial = restricted
            metadata = dict(details.invocation_metadata or ())
            if not restriction.allows(metadata.get(restriction.header)):
                return denial
        return await continuation(details)


def _denied(message: str) -> grpc.RpcMethodHandler:
    async def deny(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    # unary-unary whatever the method: the request is never read, so no deserializer is needed
    return grpc.unary_unary_rpc_method_handler(deny)


def rest_middleware(restrictions: Mapping[str, Restriction]) -> Any:
    """Decides by the route a request matched (not by its path), so that every route's group is the
    one serving.restrictions.REST_ACCESS gives it."""

    @web.middleware
    async def restricted(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        resource = request.match_info.route.resource
        group = rest_access(resource.canonical) if resource is not None else None
        restriction = restrictions.get(group) if group else None
        if restriction is not None and not restriction.allows(request.headers.get(restriction.header)):
            return error_response(403, restriction.denial(group))  # type: ignore[arg-type]
        return await handler(request)

    return restricted
