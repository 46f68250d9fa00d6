"""The one error type of the request path: a status and a message a person can act on.

Every layer below the protocol handlers raises `ServingError`; each handler only puts it on its wire
(gRPC: the status code itself, serving.handlers.grpc_errors; REST: the HTTP status of that code,
serving.handlers.rest). gRPC's status codes are the vocabulary because they are the finest one the
server speaks.
"""

from __future__ import annotations

import grpc


class ServingError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ServingError:
    """A request the client must change before sending it again."""
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)
