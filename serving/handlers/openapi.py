"""The OpenAPI 3.1 document of the HTTP port, built from the live application's route table.

Every route the application serves is an aiohttp route added by `operations.add_routes` with its
`Operation`; the document has one operation per (method, path) of the router, in routing order, and
nothing else. Beside each operation's own statuses it lists those the middleware answers on that
route (serving.http_server): 503 while the request gate is closed and 500 for a bug on every route but
the health checks, 413 for a body over --max-message-bytes, and 403 where this server refuses a client
without a certificate (--tls-client-ca) or a restricted group without its header (--restricted-api).

Path parameters are described once by name (operations.PATH_PARAMETERS); `examples` gives each a
value this server answers for (a loaded model and version), so that "Try it out" on /docs works as
it is.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from serving.handlers.operations import (
    ERROR,
    JSON,
    OPERATIONS,
    PATH_PARAMETERS,
    REFERENCE,
    Answer,
    Component,
    Operation,
    ProtoMessage,
    Schema,
)
from serving.handlers.proto_schema import message_schema
from serving.http_server import HEALTH_PATHS, SETTINGS
from serving.restrictions import rest_access
from serving.settings import Settings

OPENAPI_VERSION = "3.1.0"
TAGS = {
    "KServe V2": "The Open Inference Protocol (KServe V2) over HTTP, as Triton serves it.",
    "TensorFlow Serving": "TensorFlow Serving's REST API; every model path also by version or label.",
    "Compare page": "The compare page and the JSON routes it calls.",
    "Explanations": "Each word's attribution to a model's answer.",
    "API description": "This document and its browser.",
}
ERROR_DESCRIPTIONS = {
    400: "The request is malformed; the message says what to change.",
    403: "Refused; the message says why and what would be allowed.",
    404: "No such model, version, repository model or file; the message lists the ones there are.",
    408: "The body did not arrive within --rest-body-timeout-s of the request's head.",
    413: "The body is larger than --max-message-bytes (once unzipped, for a compressed one).",
    429: (
        "The model's queue is full (--max-queue-size), or every explanation thread is busy: retry "
        "after Retry-After seconds."
    ),
    500: "An internal error: a bug, logged with its traceback (the server keeps serving).",
    503: "The server is starting or shutting down, or the model is unloading: send the request elsewhere.",
    504: "The request's deadline passed while it waited in the model's queue; it was not run.",
}
RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")


def openapi_document(app: web.Application, examples: Mapping[str, Any]) -> Schema:
    """The document of every described route of `app`; `examples`: path parameter name -> value."""
    settings = app[SETTINGS]
    described = app.get(OPERATIONS, {})
    paths: dict[str, Schema] = {}
    tags: list[str] = []
    for route in app.router.routes():
        operation = described.get(route)
        if operation is None:
            continue  # not described: missing here, as the parity test reports
        path = route.resource.canonical if route.resource is not None else ""
        paths.setdefault(path, {})[route.method.lower()] = _operation(path, operation, settings, examples)
        if operation.tag not in tags:
            tags.append(operation.tag)
    components: dict[str, Schema] = {}
    _collect(paths, components)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "seqserve REST API",
            "version": importlib.metadata.version("seqserve"),
            "description": (
                "Text classification over KServe V2, TensorFlow Serving's REST API and seqserve's own "
                'compare and explain routes. Errors are {"error": "..."} with the HTTP status.'
            ),
        },
        "tags": [{"name": tag, "description": TAGS.get(tag, "")} for tag in tags],
        "paths": paths,
        "components": {"schemas": dict(sorted(components.items()))},
    }


def common_errors(path: str, operation: Operation, settings: Settings) -> set[int]:
    """The statuses the middleware may answer on this route, before or around its handler."""
    if path in HEALTH_PATHS:
        return {500}
    statuses = {500, 503}
    group = rest_access(path)
    if settings.tls_client_ca or (group is not None and group in settings.restrictions):
        statuses.add(403)
    if operation.body is not None:
        statuses |= {408, 413}
    return statuses


def _operation(path: str, operation: Operation, settings: Settings, examples: Mapping[str, Any]) -> Schema:
    own = {parameter.name: parameter for parameter in operation.parameters}
    parameters = [
        # a route's own description of a path parameter gets no example of this server's (the
        # repository routes': a served model as example would be unloaded by "Try it out")
        own[name].to_openapi() if name in own else PATH_PARAMETERS[name].to_openapi(examples.get(name))
        for name in _PATH_PARAMETER.findall(path)
    ]
    parameters += [p.to_openapi() for p in operation.parameters if p.location != "path"]
    responses = {str(status): _answer(answer) for status, answer in sorted(operation.answers.items())}
    for status in sorted(set(operation.errors) | common_errors(path, operation, settings)):
        headers = {"Retry-After": RETRY_AFTER} if status == 429 else {}
        responses.setdefault(str(status), _answer(Answer(ERROR_DESCRIPTIONS[status], {JSON: ERROR}, headers)))
    document: Schema = {
        "operationId": operation.id,
        "summary": operation.summary,
        "tags": [operation.tag],
    }
    if operation.description:
        document["description"] = operation.description
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        content: Schema = {}
        for media, schema in operation.body.items():
            content[media] = {"schema": schema}
            if media == JSON and operation.body_example is not None:
                content[media]["example"] = operation.body_example
        document["requestBody"] = {"required": operation.body_required, "content": content}
    document["responses"] = dict(sorted(responses.items()))
    return document


def _answer(answer: Answer) -> Schema:
    document: Schema = {"description": answer.description}
    if answer.headers:
        document["headers"] = dict(answer.headers)
    if answer.content:
        document["content"] = {media: {"schema": schema} for media, schema in answer.content.items()}
    return document


def _collect(node: Any, components: dict[str, Schema]) -> None:
    """Every named schema `node` refers to, into `components` (with the ones they refer to)."""
    if isinstance(node, Component):
        if node.name not in components:
            components[node.name] = node.schema
            _collect(node.schema, components)
    elif isinstance(node, ProtoMessage):
        message_schema(node.descriptor, node.mapping, components, REFERENCE.__add__)
    elif isinstance(node, dict):
        for value in node.values():
            _collect(value, components)
    elif isinstance(node, list | tuple):
        for value in node:
            _collect(value, components)
