"""deploy/k8s-tracing: valid manifests, and OTEL_* settings the server and the SDK accept (the sampler
too) that point at the Jaeger service's OTLP/gRPC port."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from seqserve.tracing import exporter_names, otlp_protocol
from serving.trace_sampling import sampler_setting
from tests.deploy.manifests import (
    K8S_DIR,
    Manifest,
    container_settings,
    kustomization_resources,
    kustomize_build,
    load_documents,
    validate,
)

TRACING_DIR = K8S_DIR.parent / "k8s-tracing"
OWN = load_documents([p for p in kustomization_resources(TRACING_DIR) if p.is_file()])
PATCH = load_documents([TRACING_DIR / "deployment-tracing.yaml"])[0]


def rendered() -> list[Manifest]:
    return kustomize_build(TRACING_DIR)


def seqserve_container(documents: list[Manifest]) -> Manifest:
    (deployment,) = [
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "seqserve"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("manifest", OWN, ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_the_overlays_own_manifests_match_their_schemas(manifest: Manifest) -> None:
    validate(manifest)


def test_the_overlay_renders_valid_with_the_common_label() -> None:
    documents = rendered()
    for manifest in documents:
        validate(manifest)
        assert manifest["metadata"]["labels"]["app.kubernetes.io/part-of"] == "seqserve"
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert {("Deployment", "seqserve-jaeger"), ("Service", "seqserve-jaeger")} <= kinds


def test_the_server_exports_to_the_jaegers_otlp_grpc_port(monkeypatch: pytest.MonkeyPatch) -> None:
    documents = rendered()
    container = seqserve_container(documents)
    container_settings(container)  # the SEQSERVE_* settings still hold
    env = {item["name"]: item.get("value", "") for item in container["env"]}
    assert exporter_names(env) == ["otlp"] and otlp_protocol(env) == "grpc"
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    (service,) = [
        d for d in documents if d["kind"] == "Service" and d["metadata"]["name"] == endpoint.hostname
    ]
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == endpoint.port]
    (jaeger,) = [
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == endpoint.hostname
    ]
    (jaeger_container,) = jaeger["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in jaeger_container["ports"]}
    assert port["targetPort"] == "otlp-grpc" and named["otlp-grpc"] == 4317
    assert endpoint.scheme == "http"  # plaintext inside the cluster; the exporter reads it as insecure
    # the server's sampling check takes the sampler the manifest names, as the SDK reads it
    setting = sampler_setting(env)
    assert (setting.name, setting.ratio) == ("parentbased_traceidratio", 0.01) and setting.reads_traceparent
    from opentelemetry.sdk.trace import TracerProvider

    for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG"):
        monkeypatch.setenv(name, env[name])
    assert TracerProvider().sampler.get_description().startswith("ParentBased{root:TraceIdRatioBased{0.01},")


def test_variables_referenced_in_the_env_are_defined_before_they_are_used() -> None:
    """Kubernetes expands $(NAME) only for a NAME earlier in the list; a later one stays literal."""
    names: list[str] = []
    for item in PATCH["spec"]["template"]["spec"]["containers"][0]["env"]:
        for referenced in _references(item.get("value", "")):
            assert referenced in names, f"{item['name']} uses $({referenced}) before it is defined"
        names.append(item["name"])


def _references(value: str) -> list[str]:
    found, rest = [], value
    while "$(" in rest:
        rest = rest.split("$(", 1)[1]
        found.append(rest.split(")", 1)[0])
    return found
