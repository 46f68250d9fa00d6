"""deploy/kserve: the serving runtime and an InferenceService, valid and consistent with the server."""

from __future__ import annotations

import pytest

from serving.handlers.v2_grpc import KSERVE_V2_SERVICE
from tests.deploy.manifests import (
    KSERVE_DIR,
    Manifest,
    container_ports,
    container_settings,
    kustomization_resources,
    kustomize_build,
    load_documents,
    validate,
)

DOCUMENTS = load_documents(kustomization_resources(KSERVE_DIR))
(RUNTIME,) = [d for d in DOCUMENTS if d["kind"] == "ClusterServingRuntime"]
(SERVICE,) = [d for d in DOCUMENTS if d["kind"] == "InferenceService"]
(RUNTIME_CONTAINER,) = RUNTIME["spec"]["containers"]
SETTINGS = container_settings(RUNTIME_CONTAINER)
MODEL = SERVICE["spec"]["predictor"]["model"]


@pytest.mark.parametrize("manifest", DOCUMENTS, ids=lambda d: d["kind"])
def test_manifest_matches_its_schema(manifest: Manifest) -> None:
    validate(manifest)


def test_kustomize_renders_both() -> None:
    rendered = kustomize_build(KSERVE_DIR)
    assert sorted(d["kind"] for d in rendered) == ["ClusterServingRuntime", "InferenceService"]


def test_runtime_serves_the_downloaded_repository_over_grpc_v2() -> None:
    assert KSERVE_V2_SERVICE == "inference.GRPCInferenceService"  # the service KServe's V2 gRPC clients call
    assert RUNTIME["spec"]["protocolVersions"] == ["grpc-v2"]  # the server has no V2 REST endpoint
    assert (
        str(SETTINGS.model_repository) == "/mnt/models"
    )  # where KServe's storage initializer puts storageUri
    assert SETTINGS.host == "0.0.0.0"
    assert container_ports(RUNTIME_CONTAINER) == {"h2c": SETTINGS.port}  # h2c: KServe routes gRPC there
    assert RUNTIME["spec"]["annotations"]["prometheus.kserve.io/port"] == str(SETTINGS.metrics_port)


def test_inference_service_selects_this_runtime_on_its_port() -> None:
    formats = {f["name"] for f in RUNTIME["spec"]["supportedModelFormats"]}
    assert MODEL["modelFormat"]["name"] in formats
    assert MODEL["runtime"] == RUNTIME["metadata"]["name"]
    assert MODEL["protocolVersion"] in RUNTIME["spec"]["protocolVersions"]
    assert container_ports(MODEL) == container_ports(RUNTIME_CONTAINER)
