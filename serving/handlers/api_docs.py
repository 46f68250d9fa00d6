"""The REST port describes itself: `GET /openapi.json` (serving.handlers.openapi) and an API browser at
`GET /docs`, Swagger UI from the swagger-ui-py package's own files (`GET /docs/{asset}`), so the page
needs nothing but this server. Both belong to the `page` group of --restricted-api, as the compare
page does.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from importlib import resources
from pathlib import Path

import grpc
from aiohttp import web

from serving.errors import ServingError
from serving.handlers.openapi import openapi_document
from serving.handlers.operations import Answer, ApiRoute, Operation, Parameter, json_answer
from serving.handlers.rest import json_response
from serving.http_server import SETTINGS
from serving.registry import ModelRegistry
from serving.settings import Settings

PAGE = resources.files("serving.handlers").joinpath("static/docs.html")
TAG = "API description"
# The files of Swagger UI the page loads, with their media types.
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
ASSET = Parameter("asset", "path", {"enum": list(ASSETS)}, "A file of Swagger UI.")
DOCUMENT = {
    "type": "object",
    "description": "An OpenAPI 3.1 document.",
    "properties": {"openapi": {"const": "3.1.0"}, "info": {"type": "object"}, "paths": {"type": "object"}},
    "required": ["openapi", "info", "paths"],
}


@cache
def swagger_ui_files() -> Path:
    """swagger-ui-py's static folder, found without importing the package (which would import its
    framework adapters and template engine, none of which is used here)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is not installed")
    return Path(spec.submodule_search_locations[0]) / "static"


@cache
def asset_bytes(name: str) -> bytes:
    """One of ASSETS, read once."""
    return (swagger_ui_files() / name).read_bytes()


class ApiDocs:
    def __init__(self, registry: ModelRegistry) -> None:
        self._registry = registry

    def routes(self) -> list[ApiRoute]:
        return [
            ApiRoute(
                "GET",
                "/openapi.json",
                self.document,
                Operation(
                    "openapi_document",
                    "This document",
                    TAG,
                    {200: json_answer("The OpenAPI document of every route of this port.", DOCUMENT)},
                ),
            ),
            ApiRoute(
                "GET",
                "/docs",
                self.page,
                Operation(
                    "api_browser",
                    "The API browser",
                    TAG,
                    {200: Answer("Swagger UI showing this document.", {"text/html": {"type": "string"}})},
                ),
            ),
            ApiRoute(
                "GET",
                "/docs/{asset}",
                self.asset,
                Operation(
                    "api_browser_file",
                    "A file of the API browser",
                    TAG,
                    {
                        200: Answer(
                            "The file.", {media: {"type": "string"} for media in sorted(set(ASSETS.values()))}
                        )
                    },
                    errors=(404,),
                    parameters=(ASSET,),
                ),
            ),
        ]

    def _examples(self, settings: Settings) -> dict[str, str]:
        """A loaded model, its newest version and a label of it, as the path parameters' examples."""
        snapshot = self._registry.snapshot
        names = snapshot.names()
        if not names:
            return {}
        name = names[0]
        examples = {"model": name, "version": str(max(snapshot.models[name].versions))}
        labels = [label for model, label, _ in settings.version_labels if model == name]
        if labels:
            examples["label"] = labels[0]
        return examples

    async def document(self, request: web.Request) -> web.Response:
        examples = self._examples(request.app[SETTINGS])
        return json_response(openapi_document(request.app, examples))

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(body=PAGE.read_bytes(), content_type="text/html", charset="utf-8")

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["asset"]
        if name not in ASSETS:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"no file {name[:64]!r}; the API browser's files: {', '.join(ASSETS)}",
            )
        return web.Response(body=asset_bytes(name), content_type=ASSETS[name])
