"""KServe V2 REST (the Open Inference Protocol over HTTP/JSON): a thin adapter over the V2 data plane.

The routes of the protocol's HTTP binding, as Triton serves them (so `tritonclient.http`, curl and
any JSON client work): server and model health and metadata, `infer` (with the binary tensor data
extension), model `config` and `stats`, and the repository extension. Each route decodes its request
into a data-plane call (serving.protocol.v2_dataplane) and encodes the answer; tensor semantics live
in serving.protocol.v2_types, shared with gRPC.
"""

from __future__ import annotations

import grpc
from aiohttp import web

from serving.errors import ServingError, invalid
from serving.handlers.rest import json_response
from serving.protocol.v2_dataplane import DataPlane
from serving.protocol.v2_types import HEADER_LENGTH, InferRequest, json_object, json_parameters
from serving.request_bodies import request_body


class V2RestHandler:
    def __init__(self, dataplane: DataPlane) -> None:
        self._dataplane = dataplane

    def routes(self) -> list[web.RouteDef]:
        model = "/v2/models/{model}"
        versioned = "/v2/models/{model}/versions/{version}"
        routes = [
            web.get("/v2", self.server_metadata),
            web.get("/v2/health/live", self.live),
            web.get("/v2/health/ready", self.ready),
            web.get("/v2/models/stats", self.statistics),
            web.post("/v2/repository/index", self.repository_index),
            web.post("/v2/repository/models/{model}/load", self.load),
            web.post("/v2/repository/models/{model}/unload", self.unload),
        ]
        for prefix in (model, versioned):
            routes += [
                web.get(prefix, self.model_metadata),
                web.get(prefix + "/ready", self.model_ready),
                web.get(prefix + "/config", self.model_config),
                web.get(prefix + "/stats", self.statistics),
                web.post(prefix + "/infer", self.infer),
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
