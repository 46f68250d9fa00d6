"""What every gRPC handler does the same way, whatever its protocol."""

from __future__ import annotations

import grpc

from serving.inference import ServingError


async def abort_with(context: grpc.aio.ServicerContext, error: ServingError) -> None:
    """End the RPC with the error's status code and message (raises, as `context.abort` does)."""
    await context.abort(error.code, error.message)
