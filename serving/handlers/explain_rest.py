"""Explanations over HTTP, on the REST port.

- `POST /v1/models/{model}:explain`: KServe's V1 explain shape, `{"instances": ["text", ...]}` ->
  `{"explanations": [...]}`, one seqserve.v1 `ModelExplanation` (protobuf JSON mapping) per instance,
  in order.
- `POST /v1/explain`: seqserve.v1 `Explain` in the JSON mapping of its messages (`{"text": "...",
  "models": [...]}` -> `{"explanations": [...]}`), every loaded model when `models` is empty: what the
  compare page asks.
Every field is printed, zeros and false included, so a client reads `start`, `seen` and `oov` alike.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.protobuf.message import Message

from seqserve.v1 import classifier_pb2
from serving.errors import invalid
from serving.explanations import ExplainService
from serving.handlers.explain_messages import explain_response, model_explanation
from serving.handlers.operations import (
    JSON,
    Answer,
    ApiRoute,
    Component,
    Operation,
    ProtoMessage,
    Schema,
    json_answer,
)
from serving.handlers.proto_schema import JsonMapping
from serving.handlers.rest import json_message, json_response
from serving.protocol import strict_json
from serving.request_bodies import request_body

TAG = "Explanations"
# Every field written, zeros and false included (`_to_json`).
_WRITTEN = JsonMapping(all_fields=True)
EXPLAIN_REQUEST = ProtoMessage(classifier_pb2.ExplainRequest.DESCRIPTOR, JsonMapping(reading=True))
EXPLAIN_RESPONSE = ProtoMessage(classifier_pb2.ExplainResponse.DESCRIPTOR, _WRITTEN)
KSERVE_V1_REQUEST = Component(
    "kserve_v1_explain_request",
    {
        "type": "object",
        "properties": {"instances": {"type": "array", "items": {"type": "string"}}},
        "required": ["instances"],
    },
)
KSERVE_V1_RESPONSE = Component(
    "kserve_v1_explain_response",
    {
        "type": "object",
        "properties": {
            "explanations": {
                "type": "array",
                "items": ProtoMessage(classifier_pb2.ModelExplanation.DESCRIPTOR, _WRITTEN),
            }
        },
        "required": ["explanations"],
    },
)


def _to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _explaining(id: str, summary: str, answer: Answer, request: Schema, example: object) -> Operation:
    return Operation(
        id, summary, TAG, {200: answer}, errors=(400, 404, 429), body={JSON: request}, body_example=example
    )


class ExplainRoutes:
    def __init__(self, explain: ExplainService) -> None:
        self._explain = explain

    def routes(self) -> list[ApiRoute]:
        kserve_v1 = _explaining(
            "kserve_v1_explain",
            "Explain texts with one model (KServe's V1 explain shape)",
            json_answer("One explanation per instance, in order.", KSERVE_V1_RESPONSE),
            KSERVE_V1_REQUEST,
            {"instances": ["area man wins award"]},
        )
        every_model = _explaining(
            "explain",
            "Explain a text with every model (seqserve.v1 Explain; no models: every one)",
            json_answer("One explanation per model, in name order.", EXPLAIN_RESPONSE),
            EXPLAIN_REQUEST,
            {"text": "area man wins award"},
        )
        return [
            ApiRoute("POST", "/v1/models/{model}:explain", self.kserve_v1, kserve_v1),
            ApiRoute("POST", "/v1/explain", self.explain, every_model),
        ]

    async def kserve_v1(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        instances = _instances(request_body(request))
        results = await self._explain.explain(instances, [name])
        explanations = [
            _to_json(model_explanation(text, result))
            for text, (result,) in zip(instances, results, strict=True)
        ]
        return json_response({"explanations": explanations})

    async def explain(self, request: web.Request) -> web.Response:
        message = json_message(
            request_body(request), classifier_pb2.ExplainRequest(), '{"text": "...", "models": [...]}'
        )
        (results,) = await self._explain.explain([message.text], message.models, message.version)
        return json_response(_to_json(explain_response(message.text, results)))


def _instances(body: bytes) -> list[str]:
    shape = 'send {"instances": ["text", ...]}'
    try:
        document = strict_json.parse(body)
    except strict_json.JsonError as error:
        raise invalid(f"the body is not JSON ({error}); {shape}") from None
    instances = document.get("instances") if isinstance(document, dict) else None
    if not isinstance(instances, list) or not all(isinstance(text, str) for text in instances):
        raise invalid(f"the body has no list of texts under 'instances'; {shape}")
    return instances
