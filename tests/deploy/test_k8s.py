"""deploy/k8s: valid against the Kubernetes schemas, and consistent with the server's real flags, ports,
health services and metric names (all read from the code)."""

from __future__ import annotations

import copy
import re

import jsonschema
import kubernetes_validate
import pytest
import yaml

from serving.handlers.v2_rest import V2RestHandler
from serving.http_server import HEALTH_PATHS
from serving.metrics import MODEL_LABELS
from tests.deploy.manifests import (
    K8S_DIR,
    Manifest,
    container_ports,
    container_settings,
    exposed_metric_names,
    kustomization_resources,
    kustomize_build,
    load_documents,
    validate,
)

TLS_DIR = K8S_DIR.parent / "k8s-tls"
DOCUMENTS = load_documents(kustomization_resources(K8S_DIR))
ADAPTER_VALUES = yaml.safe_load((K8S_DIR / "prometheus-adapter-values.yaml").read_text())
DRAIN_MARGIN_S = 2  # the process still has to close its channels and exit after the grace period


def one(kind: str, name: str | None = None) -> Manifest:
    found = [d for d in DOCUMENTS if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


DEPLOYMENT = one("Deployment")
POD = DEPLOYMENT["spec"]["template"]
(CONTAINER,) = POD["spec"]["containers"]
SETTINGS = container_settings(CONTAINER)


def test_every_kustomize_resource_exists() -> None:
    for path in kustomization_resources(K8S_DIR):
        assert path.is_file(), path
    assert {d["kind"] for d in DOCUMENTS} == {
        "Deployment", "Service", "PodMonitor", "HorizontalPodAutoscaler", "PodDisruptionBudget",
    }  # fmt: skip


@pytest.mark.parametrize("manifest", DOCUMENTS, ids=lambda d: f"{d['kind']}-{d['metadata']['name']}")
def test_manifest_matches_its_schema(manifest: Manifest) -> None:
    validate(manifest)


def test_schema_validation_rejects_broken_manifests() -> None:
    """The validators are not vacuous: a misspelt field and a wrong type both fail."""
    misspelt = copy.deepcopy(DEPLOYMENT)
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"port": 8501}}
    wrong_type = copy.deepcopy(one("PodMonitor"))
    wrong_type["spec"]["podMetricsEndpoints"][0]["port"] = 8502
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(misspelt)
    with pytest.raises(jsonschema.ValidationError):
        validate(wrong_type)


def test_kustomize_renders_every_resource_with_the_common_label() -> None:
    rendered = kustomize_build(K8S_DIR)
    identities = {(d["kind"], d["metadata"]["name"]) for d in rendered}
    assert identities == {(d["kind"], d["metadata"]["name"]) for d in DOCUMENTS}
    for manifest in rendered:
        assert manifest["metadata"]["labels"]["app.kubernetes.io/part-of"] == "seqserve"
        validate(manifest)


def test_container_ports_are_the_servers_ports_on_all_interfaces() -> None:
    assert container_ports(CONTAINER) == {
        "grpc": SETTINGS.port,
        "rest": SETTINGS.rest_port,
        "metrics": SETTINGS.metrics_port,
    }
    assert SETTINGS.host == "0.0.0.0" and SETTINGS.effective_metrics_host == "0.0.0.0"


PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# the routes a REST handler registers (their paths only: no server behind them)
HEALTH_ROUTES = {r.path for r in V2RestHandler.__new__(V2RestHandler).routes() if r.path in HEALTH_PATHS}


def assert_probes_match(container: Manifest) -> None:
    """HTTP probes of the REST port's health routes, on the scheme the container's TLS settings need."""
    settings = container_settings(container)
    for probe in PROBES:
        check = container[probe]["httpGet"]
        assert container_ports(container)[check["port"]] == settings.rest_port
        assert check["path"] in HEALTH_ROUTES
        assert check["scheme"] == ("HTTPS" if settings.tls else "HTTP")
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"  # a drain is not death


def test_probes_use_the_servers_health_routes() -> None:
    assert HEALTH_ROUTES == HEALTH_PATHS
    assert_probes_match(CONTAINER)
    assert not SETTINGS.tls


def test_tls_overlay_turns_tls_on_and_keeps_the_probes_working() -> None:
    rendered = kustomize_build(TLS_DIR)
    for manifest in rendered:
        validate(manifest)
    (deployment,) = [d for d in rendered if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    settings = container_settings(container)
    assert settings.tls and not settings.tls_client_ca
    assert_probes_match(container)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    secret_volumes = {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v}
    for path in (settings.tls_cert, settings.tls_key):
        assert any(path.startswith(mounts[name] + "/") for name in secret_volumes), path
    (monitor,) = [d for d in rendered if d["kind"] == "PodMonitor"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"]["ca"]["secret"]["name"]


def test_termination_grace_period_covers_the_servers_drain() -> None:
    pre_stop = CONTAINER["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = pre_stop + SETTINGS.grace_period_s
    grace = POD["spec"]["terminationGracePeriodSeconds"]
    assert drain + DRAIN_MARGIN_S <= grace <= drain + 15, (pre_stop, SETTINGS.grace_period_s, grace)


def test_resources_have_requests_within_limits() -> None:
    resources = CONTAINER["resources"]
    memory_mib = {k: int(v.removesuffix("Mi")) for k, v in ((k, resources[k]["memory"]) for k in resources)}
    assert memory_mib["requests"] <= memory_mib["limits"]
    assert float(resources["requests"]["cpu"]) <= float(resources["limits"]["cpu"])


def test_one_worker_process_per_requested_cpu() -> None:
    assert SETTINGS.workers == float(CONTAINER["resources"]["requests"]["cpu"]) > 1


def test_pod_runs_as_the_images_non_root_user() -> None:
    security = POD["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001 and security["runAsGroup"] == 10001
    assert CONTAINER["securityContext"]["readOnlyRootFilesystem"] is True


def _selects_pod(selector: dict[str, str]) -> bool:
    labels = POD["metadata"]["labels"]
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_services_route_to_named_container_ports() -> None:
    ports = container_ports(CONTAINER)
    for service in (d for d in DOCUMENTS if d["kind"] == "Service"):
        assert _selects_pod(service["spec"]["selector"])
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
            assert port["port"] == ports[port["targetPort"]]
            assert port["appProtocol"] == ("grpc" if port["targetPort"] == "grpc" else "http")
    assert one("Service", "seqserve-pods")["spec"]["clusterIP"] == "None"  # per-call client balancing


def test_pod_monitor_scrapes_the_metrics_port() -> None:
    monitor = one("PodMonitor")
    assert _selects_pod(monitor["spec"]["selector"]["matchLabels"])
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert container_ports(CONTAINER)[endpoint["port"]] == SETTINGS.metrics_port
    assert endpoint["path"] == "/metrics"


def test_disruption_budget_and_autoscaler_keep_a_server() -> None:
    budget = one("PodDisruptionBudget")
    assert _selects_pod(budget["spec"]["selector"]["matchLabels"])
    hpa = one("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "seqserve",
    }
    assert hpa["spec"]["minReplicas"] > budget["spec"]["minAvailable"]


def _adapter_rules() -> dict[str, str]:
    """Custom metric name the adapter serves -> the server series it is computed from."""
    rules = {}
    for rule in ADAPTER_VALUES["rules"]["custom"]:
        series = re.match(r"^(\w+)\{", rule["seriesQuery"]).group(1)  # type: ignore[union-attr]
        assert re.fullmatch(rule["name"]["matches"], series)
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
        rules[rule["name"]["as"]] = series
    return rules


def test_adapter_rules_read_real_server_metrics() -> None:
    rules = _adapter_rules()
    assert rules
    assert set(rules.values()) <= exposed_metric_names()


def test_autoscaler_metrics_are_served_by_the_adapter_per_model() -> None:
    rules = _adapter_rules()
    for metric in one("HorizontalPodAutoscaler")["spec"]["metrics"]:
        assert metric["type"] == "Pods"
        assert metric["pods"]["metric"]["name"] in rules
        assert set(metric["pods"]["metric"]["selector"]["matchLabels"]) <= set(MODEL_LABELS)


def test_readme_shows_the_adapter_rules_in_use() -> None:
    readme = (K8S_DIR / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
    assert any(yaml.safe_load(block) == ADAPTER_VALUES for block in blocks)
