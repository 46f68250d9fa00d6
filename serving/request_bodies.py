"""REST request bodies, read for every route before its handler runs (handlers take them from
`request_body`), within three bounds:

- size: aiohttp unzips gzip and deflate bodies as they arrive, 64 KiB at a time. The body is read
  chunk by chunk and refused (413) as soon as it passes --max-message-bytes, so a small compressed body
  that would unzip to gigabytes costs at most the limit's worth of unzipping (aiohttp's own `read()`
  first raises its read size to the whole limit, and unzips twice the limit before it refuses);
- time: the whole body must arrive within --rest-body-timeout-s of the request's head (408); the
  keep-alive timer that bounds the head (serving.http_server) stops once the head is complete;
- shutdown: a request still receiving its body when the admission gate closes gets 503 at once, so
  that a slow upload does not hold the drain.

In each case the answer is sent and then the connection closed: aiohttp would otherwise go on reading,
and unzipping, the rest of the body for up to 10 s so that the client can finish sending ("lingering
close"). Only a plain (not compressed) body over the limit is left to that, since reading raw bytes
costs little and a client still sending then sees its 413 instead of a reset connection. A body that
does not unzip as its Content-Encoding says is a 400. A body that arrived with its
head, as most do, is taken as it is, without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import StreamReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from serving.admission import SHUTTING_DOWN, AdmissionGate
from serving.handlers.rest import error_response

BODY = web.RequestKey("body", bytes)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def request_body(request: web.Request) -> bytes:
    """The request's body, as this module's middleware read it."""
    return request.get(BODY, b"")


class BodyRefused(Exception):
    """The body is not read: `status` and `message` say why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _too_large(limit: int) -> BodyRefused:
    return BodyRefused(
        413, f"the body is over {limit} bytes (unzipped); the limit is set by --max-message-bytes"
    )


async def _chunks(content: StreamReader, limit: int) -> bytes:
    body = bytearray()
    while chunk := await content.readany():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
        # readany unzips the next chunk without waiting when the compressed bytes are there already:
        # let every other request have the loop between two chunks
        await asyncio.sleep(0)
    return bytes(body)


async def read_body(request: web.Request, limit: int, timeout_s: float, closing: asyncio.Event) -> bytes:
    """The whole body, or BodyRefused."""
    content = request.content
    try:
        if content.is_eof():  # it all arrived (and was unzipped) with the head
            body = content.read_nowait()
            if len(body) > limit:
                raise _too_large(limit)
            return body
        reading = asyncio.ensure_future(_chunks(content, limit))
        stopping = asyncio.ensure_future(closing.wait())
        try:
            await asyncio.wait((reading, stopping), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            reading.cancel()
        if reading.done() and not reading.cancelled():
            return reading.result()
    except HttpProcessingError as error:  # not gzip or deflate as its Content-Encoding says; cut short
        raise BodyRefused(400, f"the body cannot be read: {error.message}") from None
    except ConnectionError:
        raise BodyRefused(400, "the connection closed before the body was complete") from None
    if closing.is_set():
        raise BodyRefused(503, SHUTTING_DOWN)
    raise BodyRefused(408, f"the body did not arrive within {timeout_s:g} s (--rest-body-timeout-s)")


async def answer_and_close(request: web.Request, status: int, message: str) -> web.StreamResponse:
    """Send an error answer now, then close the connection without reading the rest of the body."""
    response = error_response(status, message)
    response.force_close()  # "Connection: close"
    with contextlib.suppress(ConnectionError):  # the client may be gone already
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()
    return response


def _unzipped(request: web.Request) -> bool:
    """aiohttp unzips the body as it arrives (Content-Encoding gzip, deflate, ...)."""
    return request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower() != "identity"


def body_middleware(limit: int, timeout_s: float, gate: AdmissionGate) -> Any:
    """Reads every request's body before its handler runs (innermost: a request refused for another
    reason is not read)."""

    @web.middleware
    async def bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                request[BODY] = await read_body(request, limit, timeout_s, gate.closing)
            except BodyRefused as refused:
                if refused.status == 413 and not _unzipped(request):
                    # aiohttp reads the rest of a plain body (up to 10 s) so that the client, still
                    # sending, sees the answer: raw bytes cost little
                    return error_response(413, refused.message)
                return await answer_and_close(request, refused.status, refused.message)
        return await handler(request)

    return bodies
