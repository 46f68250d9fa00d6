"""What the KServe V2 protocol says about the server and its models, for both wire formats.

Server metadata, model metadata, Triton's model configuration, model statistics and the repository
extension (index, load, unload) are built here as JSON-shaped dicts: REST sends them as they are, gRPC
parses them into its messages (`google.protobuf.json_format.ParseDict`), so both answer the same.

Load and unload change what the server serves, so they are refused (PERMISSION_DENIED) unless the
server runs with `--model-control explicit`, as Triton's `--model-control-mode`. The index is always
readable: it lists each failed version with its reason.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping
from typing import Any

import grpc

from serving.handlers.v2_tensors import LABEL_OUTPUT, PROBABILITIES_OUTPUT, TEXT_INPUT, invalid
from serving.inference import InferenceService, ServingError
from serving.model import ServedModel
from serving.registry import ModelRegistry
from serving.repository import InvalidModelName, validate_model_name
from serving.settings import Settings

SERVER_NAME = "seqserve"
EXTENSIONS = ("model_repository", "statistics", "binary_tensor_data")
# Triton's platform and backend names, so that V2 tooling recognises the model format.
PLATFORMS = {"onnx": "onnxruntime_onnx", "tf": "tensorflow_savedmodel"}
BACKENDS = {"onnx": "onnxruntime", "tf": "tensorflow"}
READY = "READY"
UNAVAILABLE = "UNAVAILABLE"
# Sent by tritonclient's unload_model; this server has no model dependencies, so it changes nothing.
UNLOAD_PARAMETERS = frozenset({"unload_dependents"})

Document = dict[str, Any]


def server_metadata() -> Document:
    return {
        "name": SERVER_NAME,
        "version": importlib.metadata.version(SERVER_NAME),
        "extensions": list(EXTENSIONS),
    }


def model_metadata(model: ServedModel, versions: Iterable[int]) -> Document:
    return {
        "name": model.name,
        "versions": [str(version) for version in versions],
        "platform": PLATFORMS.get(model.runtime.name, model.runtime.name),
        "inputs": [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}],
        "outputs": [
            {"name": PROBABILITIES_OUTPUT, "datatype": "FP32", "shape": [-1, len(model.labels)]},
            {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
        ],
    }


def model_config(model: ServedModel, settings: Settings) -> Document:
    """Triton's ModelConfig of a loaded version. Tensors are per text (the batch dimension is implied by
    max_batch_size, as in Triton): a text is one BYTES element, reshaped to a scalar."""
    assert model.batcher is not None  # set before the model enters a snapshot
    policy = model.batcher.policy
    runtime = model.runtime.name
    scalar = {"shape": []}
    return {
        "name": model.name,
        "platform": PLATFORMS.get(runtime, runtime),
        "backend": BACKENDS.get(runtime, runtime),
        "version_policy": (
            {"all": {}}
            if settings.load_versions == 0
            else {"latest": {"num_versions": settings.load_versions}}
        ),
        "max_batch_size": policy.max_batch_size,
        "input": [{"name": TEXT_INPUT, "data_type": "TYPE_STRING", "dims": [1], "reshape": scalar}],
        "output": [
            {"name": PROBABILITIES_OUTPUT, "data_type": "TYPE_FP32", "dims": [len(model.labels)]},
            {"name": LABEL_OUTPUT, "data_type": "TYPE_STRING", "dims": [1], "reshape": scalar},
        ],
        "dynamic_batching": {
            "max_queue_delay_microseconds": round(policy.max_queue_delay_s * 1e6),
            "default_queue_policy": {"max_queue_size": policy.max_queue_size},
        },
        "instance_group": [{"name": model.name, "count": policy.max_concurrent_batches, "kind": "KIND_CPU"}],
        "parameters": {
            "labels": {"string_value": ",".join(model.labels)},
            "max_length": {"string_value": str(model.config.max_length)},
        },
    }


def model_statistics(service: InferenceService, registry: ModelRegistry, name: str, version: int) -> Document:
    """Statistics of one version, of every version of one model, or (empty name) of every model."""
    snapshot = registry.snapshot
    if name:
        model = service.lookup(name, version)
        entries = {model.name: [model.version] if version else sorted(snapshot.models[model.name].versions)}
    else:
        entries = {n: sorted(snapshot.models[n].versions) for n in snapshot.names()}
    return {
        "model_stats": [
            snapshot.models[n].versions[v].metrics.statistics.as_dict(n, v)
            for n, versions in entries.items()
            for v in versions
        ]
    }


class V2Repository:
    """The repository extension over `ModelRegistry.load/unload` (which keep grpc.health in step)."""

    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        self._registry = registry
        self._settings = settings

    def index(self, repository: str, ready_only: bool) -> Document:
        """Every model of the repository: one READY entry per loaded version, one UNAVAILABLE entry with
        its reason per version that failed to load, and one UNAVAILABLE "unloaded" entry for a model
        with neither."""
        self._check_repository(repository)
        snapshot = self._registry.snapshot
        models: list[Document] = []
        for name in sorted(set(self._registry.repository_models()) | set(snapshot.names())):
            entry = snapshot.models.get(name)
            loaded = sorted(entry.versions) if entry is not None else []
            failed = {v: why for v, why in self._registry.failed_versions(name).items() if v not in loaded}
            models.extend({"name": name, "version": str(v), "state": READY} for v in loaded)
            if ready_only:
                continue
            models.extend(
                {"name": name, "version": str(v), "state": UNAVAILABLE, "reason": why}
                for v, why in sorted(failed.items())
            )
            if not loaded and not failed:
                models.append({"name": name, "state": UNAVAILABLE, "reason": "unloaded"})
        return {"models": models}

    async def load(self, repository: str, name: str, parameters: Mapping[str, Any]) -> None:
        """(Re)load a model from the repository files: new versions come in, removed ones go."""
        self._check_model_control()
        self._check_repository(repository)
        if parameters:
            raise invalid(
                f"load parameters {sorted(parameters)} are not supported: models load from "
                "their files in the repository"
            )
        self._check_in_repository(name)
        if await self._registry.load(name) is None:
            failures = self._registry.failed_versions(name)
            why = "; ".join(f"version {v}: {reason}" for v, reason in sorted(failures.items())) or "unloaded"
            raise ServingError(grpc.StatusCode.INTERNAL, f"model {name!r} failed to load: {why}")

    async def unload(self, repository: str, name: str, parameters: Mapping[str, Any]) -> None:
        """Unload every version; queued requests finish first, new ones get NOT_FOUND. Idempotent."""
        self._check_model_control()
        self._check_repository(repository)
        unsupported = sorted(set(parameters) - UNLOAD_PARAMETERS)
        if unsupported:
            raise invalid(f"unload parameters {unsupported} are not supported")
        if name not in self._registry.snapshot.models:
            self._check_in_repository(name)
        await self._registry.unload(name)

    def _check_model_control(self) -> None:
        if self._settings.model_control != "explicit":
            raise ServingError(
                grpc.StatusCode.PERMISSION_DENIED,
                f"loading and unloading models is disabled (--model-control {self._settings.model_control}); "
                "start the server with --model-control explicit to allow it",
            )

    @staticmethod
    def _check_repository(name: str) -> None:
        if name:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"unknown repository {name[:64]!r}: this server has one model repository; leave "
                "repository_name empty",
            )

    def _check_in_repository(self, name: str) -> None:
        try:
            validate_model_name(name)
        except InvalidModelName as error:
            raise invalid(str(error)) from None
        available = self._registry.repository_models()
        if name not in available:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"model {name!r} is not in the model repository; it holds: {', '.join(available) or 'none'}",
            )
