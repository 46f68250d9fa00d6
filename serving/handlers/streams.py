"""Bidirectional gRPC streams of inference requests, the same way for every protocol.

Requests run concurrently (and may share batches); their results come back in request order. At most
`depth` requests are in flight per stream: beyond that the stream stops reading, and HTTP/2 flow
control makes the client wait, which bounds the memory a stream holds.

When the server begins to shut down, the stream reads no further request: the ones it read are
answered, then `StreamStopped` (UNAVAILABLE) is raised, so a client knows that every request after the
last reply was not processed (and can send it elsewhere), and an idle stream does not hold the server
for its whole grace period.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc

from serving.errors import ServingError

Request = TypeVar("Request")
Result = TypeVar("Result")

# Stream requests processed ahead of the reply being written.
STREAM_PIPELINE_DEPTH = 16
STOPPED_MESSAGE = "the server is shutting down: requests after the last reply were not processed"


class StreamStopped(ServingError):
    """Shutdown began: the stream read no further request."""

    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, STOPPED_MESSAGE)


async def pipelined(
    requests: AsyncIterator[Request],
    start: Callable[[Request], Awaitable[Result]],
    stopping: asyncio.Event,
    depth: int = STREAM_PIPELINE_DEPTH,
) -> AsyncIterator[asyncio.Future[Result]]:
    """Each request's started work, in request order; await each to get its result or its error."""
    pending: asyncio.Queue[asyncio.Future[Result] | None] = asyncio.Queue(depth)
    stopped = False

    async def read() -> None:
        nonlocal stopped
        shutdown = asyncio.ensure_future(stopping.wait())
        try:
            while True:
                receiving = asyncio.ensure_future(anext(aiter(requests), None))
                await asyncio.wait((receiving, shutdown), return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    receiving.cancel()
                    stopped = True
                    return
                request = receiving.result()
                if request is None:
                    return
                await pending.put(asyncio.ensure_future(start(request)))
        finally:
            shutdown.cancel()
            await pending.put(None)

    reader = asyncio.ensure_future(read())
    try:
        while (work := await pending.get()) is not None:
            yield work
        await reader
        if stopped:
            raise StreamStopped()
    finally:
        reader.cancel()
        while not pending.empty():
            leftover = pending.get_nowait()
            if leftover is not None:
                leftover.cancel()
