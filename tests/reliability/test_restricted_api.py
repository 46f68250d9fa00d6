"""`--restricted-api`: administrative API groups answer only requests with their header, on gRPC and
REST alike; inference and health never need it; the key is never logged."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
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


@pytest.mark.parametrize(
    "spec",
    [
        f"x-admin-key={ADMIN_KEY}",
        f"{ADMIN_KEY}:x-admin-key=v",
        "repository:x-admin-key=",
        f"repository {ADMIN_KEY}",
    ],
)
def test_a_bad_specification_is_refused_without_quoting_the_key(spec):
    with pytest.raises(SettingsError) as refused:
        build_settings(["--restricted-api", spec], environ={})
    assert ADMIN_KEY not in str(refused.value)
    assert "--restricted-api" in str(refused.value)
    assert ADMIN_KEY not in repr(build_settings([], environ={"SEQSERVE_RESTRICTED_API": SPEC}))
