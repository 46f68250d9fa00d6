"""What every REST route answers with: JSON bodies, and a `ServingError` as its HTTP status.

Errors are `{"error": "..."}` with the same message as gRPC's details. A full model queue is 429: the
server is healthy and the request may be retried after a backoff, whereas 503 says "this server is
going away or not ready, send it elsewhere" (draining, unloading), and load balancers act on it.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import grpc
from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from serving.errors import ServingError, invalid
from serving.protocol import strict_json

# The HTTP status of each gRPC status code a ServingError can carry.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
# The seconds a client told 429 is asked to wait (Retry-After).
RETRY_AFTER_S = 1


def json_response(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(document, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def error_response(status: int, message: str) -> web.Response:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 429 else None
    return json_response({"error": message}, status, headers)


def serving_error_response(error: ServingError) -> web.Response:
    return error_response(HTTP_STATUS.get(error.code, 500), error.message)


Request = TypeVar("Request", bound=Message)


def json_message(body: bytes, message: Request, shape: str) -> Request:
    """`message` filled from a body in the protobuf JSON mapping, read as strict JSON; a body that is
    not one is a 400 naming the message and its `shape`."""
    try:
        document = strict_json.parse(body)
        if not isinstance(document, dict):  # json_format would fail on it with a TypeError
            raise json_format.ParseError(f"a JSON {type(document).__name__}, not an object")
        json_format.ParseDict(document, message)
    except (strict_json.JsonError, json_format.ParseError) as error:
        raise invalid(
            f"the body is not a {message.DESCRIPTOR.full_name} in JSON ({shape}): {error}"
        ) from None
    return message
