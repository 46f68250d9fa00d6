"""Explanations over HTTP, on the REST port.

- `POST /v1/models/{name}:explain`: KServe's V1 explain shape, `{"instances": ["text", ...]}` ->
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
from serving.handlers.rest import json_message, json_response
from serving.protocol import strict_json
from serving.request_bodies import request_body


def _to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


class ExplainRoutes:
    def __init__(self, explain: ExplainService) -> None:
        self._explain = explain

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/models/{name}:explain", self.kserve_v1),
            web.post("/v1/explain", self.explain),
        ]

    async def kserve_v1(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
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
