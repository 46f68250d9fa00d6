"""TensorFlow Serving's REST API on the server's HTTP port: a thin adapter over the TF Serving data plane
(serving.protocol.tfs_dataplane), whose semantics the gRPC adapter shares.

Routes, as TF Serving's (each model path also as `/v1/models/<name>/versions/<v>...` and
`/v1/models/<name>/labels/<label>...`):
- `POST /v1/models/<name>:predict`: `{"instances": [...]}` (row format) or `{"inputs": ...}`
  (columnar), answered with `{"predictions": [...]}` or `{"outputs": {...}}`;
- `POST /v1/models/<name>:classify`: `{"examples": [{"text": ...}], "context": {...}}`, answered with
  `{"results": [[[label, score], ...], ...]}`;
- `GET /v1/models/<name>`: the versions' status; `GET /v1/models/<name>/metadata`: the signatures.
Errors are `{"error": "..."}` with the HTTP status of the gRPC code (400, 404, 429, 503, ...). Only
these verbs are routed under /v1/models, so routes of other handlers (`:explain`) sit beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from serving.errors import ServingError
from serving.handlers.operations import JSON, ApiRoute, Operation, json_answer
from serving.handlers.rest import json_response
from serving.handlers.tfs_schemas import (
    CLASSIFY_REQUEST,
    CLASSIFY_RESPONSE,
    METADATA_RESPONSE,
    PREDICT_REQUEST,
    PREDICT_RESPONSE,
    STATUS_RESPONSE,
)
from serving.protocol.tfs_dataplane import TfsDataPlane
from serving.protocol.tfs_types import (
    CheckCount,
    ClassifyCall,
    ModelSelection,
    PredictCall,
    metadata_to_rest,
    status_to_rest,
)
from serving.protocol.v2_types import json_object
from serving.request_bodies import request_body

RestDecoder = Callable[[Mapping[str, Any], CheckCount], PredictCall | ClassifyCall]
MODEL_PATHS = (
    "/v1/models/{model}",
    "/v1/models/{model}/versions/{version}",
    "/v1/models/{model}/labels/{label}",
)
_BY = ("", ", by version", ", by version label")
_METADATA = "The model spec and signatures (GetModelMetadata)."
# request schema, response schema, example request
_PREDICT = (PREDICT_REQUEST, PREDICT_RESPONSE, {"instances": ["area man wins award"]})
_CLASSIFY = (CLASSIFY_REQUEST, CLASSIFY_RESPONSE, {"examples": [{"text": "area man wins award"}]})
TAG = "TensorFlow Serving"


def _selection(request: web.Request) -> ModelSelection:
    info = request.match_info
    return ModelSelection.from_rest(info["model"], info.get("version"), info.get("label"))


class TfsRestHandler:
    def __init__(self, dataplane: TfsDataPlane) -> None:
        self._dataplane = dataplane

    def routes(self) -> list[ApiRoute]:
        routes = []
        for path, suffix, by in zip(MODEL_PATHS, ("", "_version", "_label"), _BY, strict=True):
            for verb, handler, summary, answer, request, response, example in (
                ("predict", self.predict, "Predict", "Every text's probabilities and label.", *_PREDICT),
                ("classify", self.classify, "Classify", "Every example's labels and scores.", *_CLASSIFY),
            ):
                operation = Operation(
                    f"tfs_{verb}{suffix}",
                    summary + by,
                    TAG,
                    {200: json_answer(answer, response)},
                    errors=(400, 404, 429),
                    body={JSON: request},
                    body_example=example,
                )
                routes.append(ApiRoute("POST", f"{path}:{verb}", handler, operation))
            for path_suffix, handler, name, summary, answer, response in (
                (
                    "",
                    self.status,
                    "status",
                    "Model status",
                    "The versions' states (GetModelStatus).",
                    STATUS_RESPONSE,
                ),
                ("/metadata", self.metadata, "metadata", "Model metadata", _METADATA, METADATA_RESPONSE),
            ):
                operation = Operation(
                    f"tfs_model_{name}{suffix}",
                    summary + by,
                    TAG,
                    {200: json_answer(answer, response)},
                    (400, 404),
                )
                routes.append(ApiRoute("GET", path + path_suffix, handler, operation))
        return routes

    async def _run(self, request: web.Request, from_rest: RestDecoder) -> web.Response:
        try:
            selection = _selection(request)
        except ServingError as error:  # a malformed version in the path: counted like any refusal
            raise self._dataplane.refuse(request.match_info["model"], error) from None
        body = request_body(request)
        call, result = await self._dataplane.run(
            selection, lambda check: from_rest(json_object(body, "the request body"), check), None
        )
        return json_response(call.to_rest(result))

    async def predict(self, request: web.Request) -> web.Response:
        return await self._run(request, PredictCall.from_rest)

    async def classify(self, request: web.Request) -> web.Response:
        return await self._run(request, ClassifyCall.from_rest)

    async def status(self, request: web.Request) -> web.Response:
        return json_response(status_to_rest(self._dataplane.status(_selection(request))))

    async def metadata(self, request: web.Request) -> web.Response:
        return json_response(metadata_to_rest(self._dataplane.model(_selection(request))))
