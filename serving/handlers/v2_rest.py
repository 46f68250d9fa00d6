"""KServe V2 REST (the Open Inference Protocol over HTTP/JSON): a thin adapter over the V2 data plane.

The routes of the protocol's HTTP binding, as Triton serves them (so `tritonclient.http`, curl and
any JSON client work): server and model health and metadata, `infer` (with the binary tensor data
extension), model `config` and `stats`, and the repository extension. Each route decodes its request
into a data-plane call (serving.protocol.v2_dataplane) and encodes the answer; tensor semantics live
in serving.protocol.v2_types, shared with gRPC.
"""

from __future__ import annotations

from dataclasses import replace

import grpc
from aiohttp import web

from serving.errors import ServingError, invalid
from serving.handlers.operations import (
    JSON,
    PATH_PARAMETERS,
    Answer,
    ApiRoute,
    Handler,
    Operation,
    Parameter,
    json_answer,
)
from serving.handlers.rest import json_response
from serving.handlers.v2_schemas import (
    BINARY_BODY,
    BINARY_MEDIA_TYPE,
    EMPTY,
    HEADER_LENGTH_PARAMETER_SCHEMA,
    INFERENCE_REQUEST,
    INFERENCE_RESPONSE,
    LIVE,
    METADATA_MODEL_RESPONSE,
    METADATA_SERVER_RESPONSE,
    MODEL_CONFIG,
    MODEL_READY,
    MODEL_STATISTICS_RESPONSE,
    READY,
    REPOSITORY_INDEX_REQUEST,
    REPOSITORY_INDEX_RESPONSE,
    REPOSITORY_MODEL_REQUEST,
)
from serving.protocol.v2_dataplane import DataPlane
from serving.protocol.v2_types import HEADER_LENGTH, InferRequest, json_object, json_parameters
from serving.request_bodies import request_body

TAG = "KServe V2"
_MODEL_ERRORS = (400, 404)  # a malformed version; an unknown model or version
# The GET routes of a model or version: (path suffix, operation id, summary, the answer, its schema).
_MODEL_READS = (
    (
        "",
        "v2_model_metadata",
        "Model metadata",
        "The versions, platform and tensors.",
        METADATA_MODEL_RESPONSE,
    ),
    ("/ready", "v2_model_ready", "Model ready", "The version is loaded (else 404).", MODEL_READY),
    ("/config", "v2_model_config", "Model configuration", "Triton's configuration.", MODEL_CONFIG),
    (
        "/stats",
        "v2_model_statistics",
        "Model statistics",
        "The statistics of the version, or of every version.",
        MODEL_STATISTICS_RESPONSE,
    ),
)
_INFER_BODY = {
    JSON: INFERENCE_REQUEST,
    BINARY_MEDIA_TYPE: BINARY_BODY,
}
_INFER_EXAMPLE = {
    "id": "1",
    "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["area man wins award"]}],
}
_HEADER_LENGTH = Parameter(
    HEADER_LENGTH,
    "header",
    HEADER_LENGTH_PARAMETER_SCHEMA,
    "The binary tensor data extension: the byte length of the JSON document at the start of the body.",
)
_REPOSITORY_MODEL = replace(PATH_PARAMETERS["model"], description="A model of the repository.")


def _repository_route(action: str, handler: Handler, summary: str, description: str) -> ApiRoute:
    return ApiRoute(
        "POST",
        f"/v2/repository/models/{{model}}/{action}",
        handler,
        Operation(
            f"v2_repository_model_{action}",
            summary,
            TAG,
            {200: json_answer("Done.", EMPTY)},
            errors=(400, 403, 404, 500) if action == "load" else (400, 403, 404),
            description=f"Only with --model-control explicit (else 403). {description}",
            body={JSON: REPOSITORY_MODEL_REQUEST},
            body_required=False,
            parameters=(_REPOSITORY_MODEL,),
        ),
    )


class V2RestHandler:
    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    def routes(self) -> list[ApiRoute]:
        model = "/v2/models/{model}"
        versioned = "/v2/models/{model}/versions/{version}"
        metadata = Operation(
            "v2_server_metadata",
            "Server metadata",
            TAG,
            {200: json_answer("The server's name, version and extensions.", METADATA_SERVER_RESPONSE)},
        )
        routes = [
            ApiRoute("GET", "/v2", self.server_metadata, metadata),
            ApiRoute(
                "GET",
                "/v2/",
                self.server_metadata,
                replace(
                    metadata,
                    id="v2_server_metadata_slash",
                    description="/v2, as KServe's document writes it.",
                ),
            ),
            ApiRoute(
                "GET",
                "/v2/health/live",
                self.live,
                Operation(
                    "v2_server_live",
                    "Server live",
                    TAG,
                    {200: json_answer("The server answers (the liveness probe).", LIVE)},
                ),
            ),
            ApiRoute(
                "GET",
                "/v2/health/ready",
                self.ready,
                Operation(
                    "v2_server_ready",
                    "Server ready",
                    TAG,
                    {
                        200: json_answer("Every model is loaded (the readiness probe).", READY),
                        503: json_answer("Loading models, or shutting down.", READY),
                    },
                ),
            ),
            ApiRoute(
                "GET",
                "/v2/models/stats",
                self.statistics,
                Operation(
                    "v2_statistics",
                    "Statistics of every model",
                    TAG,
                    {200: json_answer("Every loaded version's statistics.", MODEL_STATISTICS_RESPONSE)},
                ),
            ),
            ApiRoute(
                "POST",
                "/v2/repository/index",
                self.repository_index,
                Operation(
                    "v2_repository_index",
                    "Repository index",
                    TAG,
                    {200: json_answer("Every model of the repository.", REPOSITORY_INDEX_RESPONSE)},
                    errors=(400,),
                    body={JSON: REPOSITORY_INDEX_REQUEST},
                    body_required=False,
                    body_example={"ready": False},
                ),
            ),
        ]
        routes += [
            _repository_route("load", self.load, "(Re)load a model", "A model failing to load answers 500."),
            _repository_route("unload", self.unload, "Unload a model", "Queued requests finish first."),
        ]
        for prefix in (model, versioned):
            suffix = "_version" if prefix == versioned else ""
            reads = (self.model_metadata, self.model_ready, self.model_config, self.statistics)
            for (path, id, summary, answer, schema), handler in zip(_MODEL_READS, reads, strict=True):
                operation = Operation(
                    id + suffix, summary, TAG, {200: json_answer(answer, schema)}, _MODEL_ERRORS
                )
                routes.append(ApiRoute("GET", prefix + path, handler, operation))
            routes += [
                ApiRoute(
                    "POST",
                    prefix + "/infer",
                    self.infer,
                    Operation(
                        "v2_model_infer" + suffix,
                        "Inference",
                        TAG,
                        {
                            200: Answer(
                                "The outputs: JSON, or with any output as binary data, the binary tensor "
                                f"data extension (the JSON document's length in {HEADER_LENGTH}).",
                                {JSON: INFERENCE_RESPONSE, BINARY_MEDIA_TYPE: BINARY_BODY},
                                {
                                    HEADER_LENGTH: {
                                        "schema": HEADER_LENGTH_PARAMETER_SCHEMA,
                                        "description": "With binary data.",
                                    }
                                },
                            )
                        },
                        errors=(400, 404, 429, 504),
                        body=_INFER_BODY,
                        body_example=_INFER_EXAMPLE,
                        parameters=(_HEADER_LENGTH,),
                    ),
                ),
            ]
        return routes

    @staticmethod
    def _model(request: web.Request) -> tuple[str, str]:
        return request.match_info.get("model", ""), request.match_info.get("version", "")

    async def server_metadata(self, request: web.Request) -> web.Response:
        return json_response(self._dataplane.server_metadata())

    async def live(self, request: web.Request) -> web.Response:
        return json_response({"live": self._dataplane.live()})

    async def ready(self, request: web.Request) -> web.Response:
        """200 exactly when the server is ready, else 503 (so that HTTP probes need no body)."""
        ready = self._dataplane.ready()
        return json_response({"ready": ready}, 200 if ready else 503)

    async def model_ready(self, request: web.Request) -> web.Response:
        """200 when the version is loaded, 404 otherwise (HTTP probes read the status alone)."""
        name, version = self._model(request)
        if not self._dataplane.model_ready(name, version):
            raise ServingError(
                grpc.StatusCode.NOT_FOUND, f"model {name[:64]!r} version {version or 'latest'} is not ready"
            )
        return json_response({"name": name, "ready": True})

    async def model_metadata(self, request: web.Request) -> web.Response:
        return json_response(self._dataplane.model_metadata(*self._model(request)))

    async def model_config(self, request: web.Request) -> web.Response:
        return json_response(self._dataplane.model_config(*self._model(request)))

    async def statistics(self, request: web.Request) -> web.Response:
        return json_response(self._dataplane.model_statistics(*self._model(request)))

    async def infer(self, request: web.Request) -> web.Response:
        name, version = self._model(request)
        body, header_length = request_body(request), request.headers.get(HEADER_LENGTH)
        response = await self._dataplane.infer(
            lambda: InferRequest.from_rest(name, version, body, header_length), name, version, None
        )
        document, binary = response.to_rest()
        if not binary:
            return json_response(document)
        header = json_response(document).body
        assert isinstance(header, bytes)
        return web.Response(
            body=header + binary,
            content_type="application/octet-stream",
            headers={HEADER_LENGTH: str(len(header))},
        )

    async def repository_index(self, request: web.Request) -> web.Response:
        document = json_object(request_body(request), "the request body")
        ready = document.get("ready", False)
        if not isinstance(ready, bool):
            raise invalid("'ready' must be a JSON boolean")
        return json_response(self._dataplane.repository_index("", ready)["models"])

    async def load(self, request: web.Request) -> web.Response:
        document = json_object(request_body(request), "the request body")
        parameters = json_parameters(document, "the request")
        await self._dataplane.repository_load("", request.match_info["model"], parameters)
        return json_response({})

    async def unload(self, request: web.Request) -> web.Response:
        document = json_object(request_body(request), "the request body")
        parameters = json_parameters(document, "the request")
        await self._dataplane.repository_unload("", request.match_info["model"], parameters)
        return json_response({})
