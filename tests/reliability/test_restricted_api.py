"""`--restricted-api`: administrative API groups answer only requests with their header, on gRPC and
REST alike; inference and health never need it; the key is never logged."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from tritonclient.grpc import service_pb2, service_pb2_grpc

from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from serving.handlers.restricted_api import RestrictedApiInterceptor
from serving.restrictions import PUBLIC, grpc_access, parse_restrictions, rest_access
from serving.server import Server
from serving.settings import SettingsError, build_settings
from tests.reliability.conftest import NORMAL_TEXT, call_code
from tests.serving.rest_client import call, text_tensor
from tests.serving.server_process import ServerProcess

ADMIN_KEY = "admin-" + secrets.token_hex(8)
PAGE_KEY = "page-" + secrets.token_hex(8)
SPEC = f"repository,model-config,statistics:x-admin-key={ADMIN_KEY};page,metadata:x-page-key={PAGE_KEY}"
ADMIN = (("x-admin-key", ADMIN_KEY),)
PAGE = (("x-page-key", PAGE_KEY),)
WRONG = (("x-admin-key", ADMIN_KEY[:-1] + "0" if ADMIN_KEY[-1] != "0" else ADMIN_KEY[:-1] + "1"),)


@pytest.fixture(scope="module")
def server(tiny_model_repository, tmp_path_factory) -> Iterator[ServerProcess]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEQSERVE_RESTRICTED_API", SPEC)  # the environment: no key in the process list
        with ServerProcess(
            tiny_model_repository, tmp_path_factory.mktemp("restricted"), "--log-level", "DEBUG"
        ) as process:
            yield process


V2 = service_pb2
GRPC_CALLS = {  # method -> (request, the metadata it needs)
    "RepositoryIndex": (V2.RepositoryIndexRequest(), ADMIN),
    "ModelConfig": (V2.ModelConfigRequest(name="sarcasm-gru"), ADMIN),
    "ModelStatistics": (V2.ModelStatisticsRequest(name="sarcasm-gru"), ADMIN),
    "ServerMetadata": (V2.ServerMetadataRequest(), PAGE),
    "ModelMetadata": (V2.ModelMetadataRequest(name="sarcasm-gru"), PAGE),
}


@pytest.mark.parametrize("method", GRPC_CALLS)
def test_restricted_grpc_methods_need_their_header(server, method):
    request, metadata = GRPC_CALLS[method]
    rpc = getattr(service_pb2_grpc.GRPCInferenceServiceStub(server.channel), method)
    for without in ((), WRONG, PAGE if metadata is ADMIN else ADMIN):
        code, error = call_code(lambda m=without: rpc(request, metadata=m, timeout=10))
        assert code == grpc.StatusCode.PERMISSION_DENIED, code
        assert metadata[0][0] in error.details() and metadata[0][1] not in error.details()
    code, _ = call_code(lambda: rpc(request, metadata=metadata, timeout=10))
    assert code == grpc.StatusCode.OK


def test_inference_and_health_need_no_header(server):
    classify = classifier_pb2_grpc.ClassifierStub(server.channel).Classify
    request = classifier_pb2.ClassifyRequest(model="sarcasm-gru", texts=[NORMAL_TEXT])
    assert len(classify(request, timeout=10).predictions) == 1
    check = health_pb2_grpc.HealthStub(server.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    listing = classifier_pb2_grpc.ClassifierStub(server.channel).ListModels
    code, _ = call_code(lambda: listing(classifier_pb2.ListModelsRequest(), timeout=10))
    assert code == grpc.StatusCode.PERMISSION_DENIED  # metadata: ListModels is restricted
    assert call(f"{server.rest_url}/v2/health/ready").status == 200
    infer = call(f"{server.rest_url}/v2/models/sarcasm-gru/infer", {"inputs": [text_tensor([NORMAL_TEXT])]})
    assert infer.status == 200


REST_CALLS = {  # path -> (method, body, headers it needs)
    "/v2/repository/index": ("POST", b"{}", ADMIN),
    "/v2/models/sarcasm-gru/config": ("GET", None, ADMIN),
    "/v2/models/sarcasm-gru/versions/1/config": ("GET", None, ADMIN),
    "/v2/models/stats": ("GET", None, ADMIN),
    "/v2/models/sarcasm-gru/stats": ("GET", None, ADMIN),
    "/v2": ("GET", None, PAGE),
    "/v2/": ("GET", None, PAGE),
    "/v2/models/sarcasm-gru": ("GET", None, PAGE),
    "/": ("GET", None, PAGE),
    "/v1/latency": ("GET", None, PAGE),
    "/openapi.json": ("GET", None, PAGE),
    "/docs": ("GET", None, PAGE),
    "/docs/swagger-ui.css": ("GET", None, PAGE),
}


@pytest.mark.parametrize("path", REST_CALLS)
def test_restricted_rest_routes_need_their_header(server, path):
    method, body, headers = REST_CALLS[path]
    url = server.rest_url + path
    for without in ({}, dict(WRONG), {"X-Admin-Key": ""}):
        reply = call(url, body, without, method=method)
        assert reply.status == 403, (reply.status, reply.body[:200])
        assert headers[0][0] in reply.json()["error"]
    # header names are case-insensitive in HTTP
    assert call(url, body, {headers[0][0].upper(): headers[0][1]}, method=method).status == 200


def test_the_document_lists_403_where_this_server_restricts(server):
    paths = call(f"{server.rest_url}/openapi.json", headers=dict(PAGE)).json()["paths"]
    assert "403" in paths["/v2/models/{model}/config"]["get"]["responses"]  # model-config
    assert "403" in paths["/docs"]["get"]["responses"]  # page
    assert "403" not in paths["/v2/models/{model}/infer"]["post"]["responses"]  # never restricted
    assert "403" not in paths["/v2/health/ready"]["get"]["responses"]


def test_no_log_line_holds_a_key(server):
    for method, (request, metadata) in GRPC_CALLS.items():
        rpc = getattr(service_pb2_grpc.GRPCInferenceServiceStub(server.channel), method)
        for given in (metadata, WRONG):
            call_code(lambda f=rpc, r=request, m=given: f(r, metadata=m, timeout=10))
    log = server.log_path.read_text()
    assert log  # DEBUG: the server did log
    assert ADMIN_KEY not in log and PAGE_KEY not in log and WRONG[0][1] not in log


# templates, so that the test ids are the same in every process (pytest-xdist's workers must agree)
@pytest.mark.parametrize(
    "template", ["x-admin-key={key}", "{key}:x-admin-key=v", "repository:x-admin-key=", "repository {key}"]
)
def test_a_bad_specification_is_refused_without_quoting_the_key(template):
    with pytest.raises(SettingsError) as refused:
        build_settings(["--restricted-api", template.format(key=ADMIN_KEY)], environ={})
    assert ADMIN_KEY not in str(refused.value)
    assert "--restricted-api" in str(refused.value)
    assert ADMIN_KEY not in repr(build_settings([], environ={"SEQSERVE_RESTRICTED_API": SPEC}))


GROUP_HEADERS = {  # the header each group needs under SPEC
    "repository": ADMIN, "model-config": ADMIN, "statistics": ADMIN, "page": PAGE, "metadata": PAGE,
}  # fmt: skip
RESTRICTED = "(--restricted-api)"  # how a denial ends
PATH_VALUES = {"model": "sarcasm-gru", "version": "1", "label": "stable", "asset": "absent.js"}


def served_methods(server: ServerProcess) -> list[str]:
    """Every gRPC method of every service the running server lists through reflection."""
    database = ProtoReflectionDescriptorDatabase(server.channel)
    pool = DescriptorPool(database)
    return [
        f"/{service}/{method.name}"
        for service in database.get_services()
        for method in pool.FindServiceByName(service).methods
    ]


def served_routes(repository: Path) -> list[tuple[str, str]]:
    """(method, route) of every route of the HTTP port, from the router of a server built (not started)
    with the settings the module's server runs with."""

    async def build() -> list[tuple[str, str]]:
        server = Server(
            build_settings(["--model-repository", str(repository)], environ={"SEQSERVE_RESTRICTED_API": SPEC})
        )
        try:
            return [
                (route.method, route.resource.canonical)
                for route in server.http_server.app.router.routes()
                if route.resource is not None and route.method != "HEAD"
            ]
        finally:
            server.pool.close()
            server.explain.close(wait=True)

    return asyncio.run(build())


def test_every_grpc_method_belongs_to_a_group_or_is_declared_public(server):
    methods = served_methods(server)
    assert "/tensorflow.serving.ModelService/GetModelStatus" in methods  # every protocol is listed
    unassigned = [method for method in methods if grpc_access(method) is None]
    assert not unassigned, f"gRPC methods in no --restricted-api group and not declared public: {unassigned}"


def test_every_rest_route_belongs_to_a_group_or_is_declared_public(tiny_model_repository):
    routes = served_routes(tiny_model_repository)
    assert ("GET", "/v1/models/{model}/metadata") in routes
    unassigned = [route for route in routes if rest_access(route[1]) is None]
    assert not unassigned, f"REST routes in no --restricted-api group and not declared public: {unassigned}"


def test_every_restricted_grpc_method_is_refused_without_its_header(server):
    for method in served_methods(server):
        group = grpc_access(method)
        if group in (None, PUBLIC):
            continue
        rpc = server.channel.unary_unary(method)  # an empty message: the refusal comes before parsing
        code, error = call_code(lambda r=rpc: r(b"", timeout=10))
        assert code == grpc.StatusCode.PERMISSION_DENIED and RESTRICTED in error.details(), method
        code, error = call_code(lambda r=rpc, g=group: r(b"", metadata=GROUP_HEADERS[g], timeout=10))
        assert code == grpc.StatusCode.OK or RESTRICTED not in error.details(), method


def test_tf_serving_metadata_and_status_are_in_the_metadata_group(server):
    for path in (
        "/v1/models/sarcasm-gru",
        "/v1/models/sarcasm-gru/metadata",
        "/v1/models/sarcasm-gru/versions/1",
    ):
        assert call(server.rest_url + path).status == 403, path
        assert call(server.rest_url + path, headers=dict(PAGE)).status == 200, path
    for method in (
        "/tensorflow.serving.PredictionService/GetModelMetadata",
        "/tensorflow.serving.ModelService/GetModelStatus",
    ):
        assert grpc_access(method) == "metadata"


def test_every_restricted_rest_route_is_refused_without_its_header(server, tiny_model_repository):
    for method, route in served_routes(tiny_model_repository):
        group = rest_access(route)
        path = route.format(**PATH_VALUES)
        body = b"{}" if method == "POST" else None
        refused = call(server.rest_url + path, body, method=method)
        allowed = call(server.rest_url + path, body, dict(GROUP_HEADERS.get(group, ())), method=method)
        assert RESTRICTED.encode() not in allowed.body, (method, route, allowed.body[:200])
        if group == PUBLIC:
            assert RESTRICTED.encode() not in refused.body, (method, route, refused.body[:200])
        else:
            assert refused.status == 403 and RESTRICTED in refused.json()["error"], (method, route)


@dataclass(frozen=True)
class CallDetails:
    method: str
    invocation_metadata: tuple = ()


def test_a_denied_call_costs_no_handler_of_its_own():
    """Regression: each denied call got a handler made for it, and the tracing interceptor outside kept
    a traced handler per handler it saw, one more per denied call (it now keeps none: see
    tests/serving/test_tracing_interceptor.py). Each restricted method has one denial handler."""
    restricted = RestrictedApiInterceptor(parse_restrictions(SPEC))
    served = grpc.unary_unary_rpc_method_handler(lambda request, context: None)

    async def servicer(details: CallDetails) -> grpc.RpcMethodHandler:
        return served

    async def denied_calls() -> list[grpc.RpcMethodHandler]:
        methods = ("/seqserve.v1.Classifier/ListModels", "/inference.GRPCInferenceService/ModelConfig")
        return [await restricted.intercept_service(servicer, CallDetails(methods[i % 2])) for i in range(500)]

    handlers = asyncio.run(denied_calls())
    assert served not in handlers
    assert len({id(handler) for handler in handlers}) == 2
