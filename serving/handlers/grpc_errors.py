"""The one place where a `ServingError` becomes a gRPC status, for every servicer method."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from serving.errors import ServingError

Method = TypeVar("Method", bound=Callable[..., Any])


def grpc_errors(method: Method) -> Method:
    """Decorate a servicer method (unary or streaming response): a `ServingError` it raises ends the
    RPC with the error's status code and message, as `context.abort` does."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                async for response in method(self, request, context):
                    yield response
            except ServingError as error:
                await context.abort(error.code, error.message)

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except ServingError as error:
            await context.abort(error.code, error.message)

    return unary  # type: ignore[return-value]


def refuse_unoffered(servicer: type, service: ServiceDescriptor, server_name: str) -> None:
    """Every method of `service` that `servicer` does not define answers UNIMPLEMENTED, naming the ones
    it does: the generated base class raises NotImplementedError, which grpcio reports as UNKNOWN (and
    logs as a server error)."""
    offered = sorted(name for name in vars(servicer) if name[0].isupper())

    def unimplemented(method: str) -> Callable[..., Awaitable[None]]:
        async def refuse(self: object, request: object, context: grpc.aio.ServicerContext) -> None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{service.full_name}/{method} is not offered by {server_name}; it offers "
                f"{', '.join(offered)}",
            )

        return refuse

    for method in service.methods:
        if method.name not in offered:
            setattr(servicer, method.name, unimplemented(method.name))
