"""The REST port describes itself: /openapi.json is valid OpenAPI 3.1 (openapi-spec-validator, fetched
with curl as a user would), it has one operation per route of the live application and no other (the
parity check), its KServe V2 part keeps the paths, required fields and types of KServe's published V2
document, and /docs renders every operation in Debian's headless Chromium with nothing reachable
beyond loopback. The fuzzing of the document against the server is tests/serving/test_openapi_fuzz.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from typing import Any

import pytest
from aiohttp import web
from openapi_spec_validator import validate

from serving.admission import AdmissionGate
from serving.handlers.openapi import openapi_document
from serving.http_server import HttpServer
from serving.server import rest_routes
from serving.settings import Settings
from tests.serving.rest_client import call
from tests.serving.server_process import ServerProcess, free_port
from tests.serving.test_compare_page import chromium
from tests.serving.test_kserve_v2 import MODELS

Route = tuple[str, str]  # (method, path template)


def curl_document(server: ServerProcess) -> dict[str, Any]:
    if shutil.which("curl") is None:
        pytest.fail("curl is missing: `make curl` installs the Debian package")
    result = subprocess.run(
        ["curl", "-sSf", f"{server.rest_url}/openapi.json"], capture_output=True, check=True, timeout=30
    )
    return json.loads(result.stdout)


def operations(document: dict[str, Any]) -> set[Route]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def route_parity(app: web.Application) -> tuple[set[Route], set[Route]]:
    """(routes the document lacks, operations no route serves)."""
    routed = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    described = operations(openapi_document(app, {}))
    return routed - described, described - routed


@pytest.fixture
def application() -> web.Application:
    """The server's HTTP application with the server's route table (its handlers never called)."""
    return HttpServer(Settings(), AdmissionGate(), rest_routes(None, None, None, None, None, None)).app  # type: ignore[arg-type]


def test_curl_openapi_json_is_valid_openapi_3_1(server):
    document = curl_document(server)
    validate(document)  # raises on anything OpenAPI 3.1 does not allow
    assert document["openapi"] == "3.1.0"
    infer = document["paths"]["/v2/models/{model}/infer"]["post"]
    model = next(p for p in infer["parameters"] if p["name"] == "model")
    assert model["example"] in MODELS  # a model this server serves, for "Try it out"
    assert set(infer["requestBody"]["content"]) == {"application/json", "application/octet-stream"}
    assert {"200", "400", "404", "413", "429", "500", "503", "504"} <= set(infer["responses"])


def test_every_route_is_described_and_every_operation_routed(application):
    assert route_parity(application) == (set(), set())
    assert len(operations(openapi_document(application, {}))) >= 38


def test_a_route_added_without_a_description_fails_the_parity_check(application):
    async def undescribed(request: web.Request) -> web.Response:
        return web.Response()

    application.router.add_get("/v2/undescribed", undescribed)
    assert route_parity(application) == ({("GET", "/v2/undescribed"), ("HEAD", "/v2/undescribed")}, set())


# What KServe's published V2 document (docs/predict-api/v2/rest_predict_v2.yaml in kserve/kserve)
# says of the operations both documents offer: (method, path) with its parameters named {model} and
# {version} (KServe's are "${MODEL_NAME}" and "${MODEL_VERSION}"), and each body's schema: its
# properties' JSON types and its required fields.
KSERVE_OPERATIONS = {
    ("GET", "/v2/health/live"): None,
    ("GET", "/v2/health/ready"): None,
    ("GET", "/v2/"): "metadata_server_response",
    ("GET", "/v2/models/{model}/versions/{version}"): "metadata_model_response",
    ("GET", "/v2/models/{model}/versions/{version}/ready"): None,
    ("POST", "/v2/models/{model}/versions/{version}/infer"): "inference_response",
}
KSERVE_REQUEST_BODIES = {("POST", "/v2/models/{model}/versions/{version}/infer"): "inference_request"}
_TENSOR = {"name": "string", "shape": "array", "datatype": "string", "parameters": "object", "data": "array"}
KSERVE_SCHEMAS = {  # name -> (property -> JSON type, required properties, whether a request body)
    "metadata_server_response": (
        {"name": "string", "version": "string", "extensions": "array"},
        {"name", "version", "extensions"},
        False,
    ),
    "metadata_model_response": (
        {"name": "string", "versions": "array", "platform": "string", "inputs": "array", "outputs": "array"},
        {"name", "platform"},
        False,
    ),
    "metadata_tensor": (
        {"name": "string", "datatype": "string", "shape": "array"},
        {"name", "datatype", "shape"},
        False,
    ),
    "inference_request": (
        {"id": "string", "parameters": "object", "inputs": "array", "outputs": "array"},
        {"inputs"},
        True,
    ),
    "request_input": (_TENSOR, {"name", "shape", "datatype", "data"}, True),
    "request_output": ({"name": "string", "parameters": "object"}, {"name"}, True),
    "response_output": (_TENSOR, {"name", "shape", "datatype", "data"}, False),
    "inference_response": (
        {
            "model_name": "string",
            "model_version": "string",
            "id": "string",
            "parameters": "object",
            "outputs": "array",
        },
        {"model_name", "outputs"},
        False,
    ),
}


def test_v2_keeps_kserves_paths_required_fields_and_types(application):
    document = openapi_document(application, {})
    schemas = document["components"]["schemas"]

    def resolved(schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    for (method, path), answer in KSERVE_OPERATIONS.items():
        operation = document["paths"][path][method.lower()]
        if answer is not None:
            assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
                "/" + answer
            )
    for (method, path), request in KSERVE_REQUEST_BODIES.items():
        body = document["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]
        assert body["schema"]["$ref"].endswith("/" + request)
    for name, (types, required, is_request) in KSERVE_SCHEMAS.items():
        schema = schemas[name]
        ours = {key: resolved(value)["type"] for key, value in schema["properties"].items() if key in types}
        assert ours == types, name
        if is_request:  # a KServe client's request must do, and ours no more than it
            assert set(schema["required"]) == required, name
        else:  # a KServe client finds every field it relies on
            assert required <= set(schema["required"]), name


class Operations(HTMLParser):
    """(method, path) of every operation Swagger UI rendered."""

    def __init__(self) -> None:
        super().__init__()
        self.found: set[Route] = set()
        self._method: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "div" and "opblock" in classes:
            self._method = next(
                (c.removeprefix("opblock-") for c in classes if c.startswith("opblock-")), None
            )
        elif "opblock-summary-path" in classes and self._method is not None:
            self.found.add((self._method.upper(), attributes.get("data-path") or ""))
            self._method = None


def offline_flags() -> tuple[str, ...]:
    """Every address but loopback unreachable: names resolve to nothing, and any connection that is not
    to loopback goes through a proxy nothing listens on (Chromium never proxies loopback)."""
    return (
        f"--proxy-server=http://127.0.0.1:{free_port()}",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    )


def test_chromium_renders_every_operation_of_the_docs_page_offline(server, tmp_path):
    page = call(f"{server.rest_url}/docs")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    for reference in ('src="http', 'href="http', "//cdn", "@import"):
        assert reference not in page.body.decode()  # nothing fetched from elsewhere
    dom = chromium(tmp_path, *offline_flags(), "--dump-dom", f"{server.rest_url}/docs").stdout.decode()
    rendered = Operations()
    rendered.feed(dom)
    assert rendered.found == operations(curl_document(server))


def test_chromium_screenshot_of_the_docs_page(server, tmp_path):
    screenshot = tmp_path / "docs.png"
    chromium(
        tmp_path,
        *offline_flags(),
        f"--screenshot={screenshot}",
        "--window-size=1280,1600",
        f"{server.rest_url}/docs",
    )
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000


def test_the_browsers_files_come_from_the_package(server):
    for name, media in [("swagger-ui-bundle.js", "text/javascript"), ("swagger-ui.css", "text/css")]:
        reply = call(f"{server.rest_url}/docs/{name}")
        assert (
            reply.status == 200
            and reply.headers["Content-Type"].startswith(media)
            and len(reply.body) > 10_000
        )
    missing = call(f"{server.rest_url}/docs/index.html")
    assert missing.status == 404 and "swagger-ui.css" in missing.json()["error"]
