"""What every entry of the HTTP port's route table carries: the route and its OpenAPI operation.

Each REST handler declares its routes as `ApiRoute`s, each with the `Operation` that describes it
(request and answer schemas, the statuses it answers beyond those every route may answer), so a route
is described where it is declared. `add_routes` puts them into the aiohttp application and remembers
each aiohttp route's operation (`OPERATIONS`); the OpenAPI document (serving.handlers.openapi) is built
from the application's router and that map, so a route added any other way is missing from it, which
tests/serving/test_openapi.py's parity test catches.

Schemas are JSON Schema (OpenAPI 3.1). A `Component` is a named schema: written as a reference and
placed once under the document's components, so a generated client gets one type per name; a
`ProtoMessage` is a protobuf message in the JSON mapping (serving.handlers.proto_schema).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from google.protobuf.descriptor import Descriptor

from serving.handlers.proto_schema import JsonMapping

Schema = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON = "application/json"
REFERENCE = "#/components/schemas/"


class Component(dict[str, Any]):
    """A named schema; as a dict it is the reference to it."""

    def __init__(self, name: str, schema: Schema) -> None:
        super().__init__({"$ref": REFERENCE + name})
        self.name = name
        self.schema = schema


# How json_format.MessageToJson writes a message by default.
WRITTEN = JsonMapping()


class ProtoMessage(dict[str, Any]):
    """A protobuf message in the JSON mapping; as a dict it is the reference to its schema."""

    def __init__(self, descriptor: Descriptor, mapping: JsonMapping = WRITTEN) -> None:
        super().__init__({"$ref": REFERENCE + descriptor.full_name + mapping.suffix})
        self.descriptor = descriptor
        self.mapping = mapping


ERROR = Component(
    "error",
    {
        "type": "object",
        "description": "Every error answer: what went wrong and what to change.",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
        "additionalProperties": False,
    },
)


@dataclass(frozen=True)
class Parameter:
    """A path, query or header parameter."""

    name: str
    location: str  # "path", "query" or "header"
    schema: Schema
    description: str
    required: bool = False
    example: Any = None

    def to_openapi(self, example: Any = None) -> Schema:
        document: Schema = {
            "name": self.name,
            "in": self.location,
            "description": self.description,
            "required": self.required or self.location == "path",
            "schema": self.schema,
        }
        if self.example is not None or example is not None:
            document["example"] = self.example if self.example is not None else example
        return document


@dataclass(frozen=True)
class Answer:
    """One status of an operation: its description and body (media type -> schema)."""

    description: str
    content: Mapping[str, Schema] = field(default_factory=dict)
    headers: Mapping[str, Schema] = field(default_factory=dict)


def json_answer(description: str, schema: Schema) -> Answer:
    return Answer(description, {JSON: schema})


@dataclass(frozen=True)
class Operation:
    """A route's OpenAPI operation. `answers`: the statuses with their own body (success, and e.g. a
    readiness check's 503); `errors`: the statuses answered with the error body, beyond the ones
    every route may answer (the document adds those from the server's middleware)."""

    id: str
    summary: str
    tag: str
    answers: Mapping[int, Answer]
    errors: tuple[int, ...] = ()
    description: str = ""
    body: Mapping[str, Schema] | None = None  # request media type -> schema
    body_required: bool = True
    body_example: Any = None  # of the JSON body, for "Try it out" and the fuzzer's first case
    parameters: tuple[Parameter, ...] = ()  # query and header parameters; path ones may be overridden


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str
    handler: Handler
    operation: Operation


# A name a client would resolve away as a dot segment of the path, so no route ever sees it.
_NOT_A_DOT_SEGMENT = {"minLength": 1, "not": {"enum": [".", ".."]}}
PATH_PARAMETERS = {
    "model": Parameter("model", "path", {"type": "string", **_NOT_A_DOT_SEGMENT}, "The model's name."),
    "version": Parameter(
        "version",
        "path",
        {"type": "string", "pattern": "^[0-9]+$"},
        "A version of the model: a positive integer (without it, the newest loaded version answers).",
    ),
    "label": Parameter(
        "label",
        "path",
        {"type": "string", **_NOT_A_DOT_SEGMENT},
        "A version label of --version-labels, naming a version.",
    ),
}

# Each aiohttp route of the application -> its operation.
OPERATIONS = web.AppKey("operations", dict[web.AbstractRoute, Operation])


def add_routes(app: web.Application, routes: Iterable[ApiRoute]) -> None:
    """Route each entry (without aiohttp's implicit HEAD: only described methods are served)."""
    operations = app.setdefault(OPERATIONS, {})
    for route in routes:
        added = app.router.add_route(route.method, route.path, route.handler)
        operations[added] = route.operation
