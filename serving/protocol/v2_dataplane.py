"""The KServe V2 data plane, once, behind both wires (as MLServer's and KServe's `DataPlane`).

Health, server and model metadata, Triton's model configuration, statistics, inference and the
repository extension (index, load, unload) are answered here from the registry and the request path
(serving.inference); the gRPC and REST adapters (serving.handlers.v2_grpc, serving.handlers.v2_rest)
only decode their wire into these calls and encode the answers. Documents are JSON-shaped dicts: REST
sends them as they are, gRPC parses them into its messages, so both answer the same.

Load and unload change what the server serves, so they are refused (PERMISSION_DENIED) unless the
server runs with `--model-control explicit`, as Triton's `--model-control-mode`. The index is always
readable: it lists each failed version with its reason.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from serving.errors import ServingError, invalid
from serving.health import SERVING, HealthService
from serving.inference import InferenceService
from serving.metrics import KSERVE_V2
from serving.model import ServedModel
from serving.protocol.v2_types import (
    LABEL_OUTPUT,
    PROBABILITIES_OUTPUT,
    TEXT_INPUT,
    InferRequest,
    InferResponse,
    parse_version,
)
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


class DataPlane:
    def __init__(
        self, service: InferenceService, registry: ModelRegistry, health: HealthService, settings: Settings
    ) -> None:
        self._service = service
        self._registry = registry
        self._health = health
        self._settings = settings

    # health and metadata

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready exactly when the overall grpc.health status says SERVING (models loaded, not stopping)."""
        return self._health.status("") == SERVING

    def model_ready(self, name: str, version: str) -> bool:
        number = parse_version(version)  # a malformed version is an error, not "not ready"
        try:
            self._service.lookup(name, number)
        except ServingError:
            return False
        return True

    def server_metadata(self) -> Document:
        return {
            "name": SERVER_NAME,
            "version": importlib.metadata.version(SERVER_NAME),
            "extensions": list(EXTENSIONS),
        }

    def model_metadata(self, name: str, version: str) -> Document:
        model = self._service.lookup(name, parse_version(version))
        return {
            "name": model.name,
            "versions": [str(v) for v in sorted(self._registry.snapshot.models[model.name].versions)],
            "platform": PLATFORMS.get(model.runtime.name, model.runtime.name),
            "inputs": [{"name": TEXT_INPUT, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": PROBABILITIES_OUTPUT, "datatype": "FP32", "shape": [-1, len(model.labels)]},
                {"name": LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
            ],
        }

    def model_config(self, name: str, version: str) -> Document:
        """Triton's ModelConfig of a loaded version. Tensors are per text (the batch dimension is implied
        by max_batch_size, as in Triton): a text is one BYTES element, reshaped to a scalar."""
        return _model_config(self._service.lookup(name, parse_version(version)), self._settings)

    def model_statistics(self, name: str, version: str) -> Document:
        """Statistics of one version, of every version of one model, or (empty name) of every model."""
        snapshot = self._registry.snapshot
        if name:
            model = self._service.lookup(name, parse_version(version))
            chosen = [model.version] if version else sorted(snapshot.models[model.name].versions)
            entries = {model.name: chosen}
        else:
            entries = {n: sorted(snapshot.models[n].versions) for n in snapshot.names()}
        return {
            "model_stats": [
                snapshot.models[n].versions[v].metrics.statistics.as_dict(n, v)
                for n, versions in entries.items()
                for v in versions
            ]
        }

    # inference

    async def infer(
        self, decode: Callable[[], InferRequest], name: str, version: str, time_remaining: float | None
    ) -> InferResponse:
        """Decode a wire's request (`decode`, e.g. InferRequest.from_grpc of its message), classify its
        texts, build the response. A request refused while decoding is counted as `classify` counts
        a failed one (an unknown model outranks the malformed message; `name` and `version` as on the
        wire). The deadline is the wire's (`time_remaining`), else the request's own timeout."""
        try:
            request = decode()
            texts = request.texts(self._service.check_text_count)
        except ServingError as error:
            raise self._service.refuse(name, _version_or_latest(version), error, KSERVE_V2) from None
        if time_remaining is None:
            time_remaining = request.timeout_s
        result = await self._service.classify(
            request.model_name, request.model_version, texts, time_remaining, KSERVE_V2
        )
        return InferResponse.of(request, result)

    async def wait_for_queue_room(self, name: str, version: str) -> None:
        """Until the model's queue can take one more request (for a stream that can stop reading)."""
        await self._service.wait_for_queue_room(name, _version_or_latest(version))

    # the repository extension, over `ModelRegistry.load/unload` (which keep grpc.health in step)

    def repository_index(self, repository: str, ready_only: bool) -> Document:
        """Every model of the repository: one READY entry per loaded version, one UNAVAILABLE entry with
        its reason per version that failed to load, and one UNAVAILABLE "unloaded" entry for a model
        with neither."""
        _check_repository(repository)
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

    async def repository_load(self, repository: str, name: str, parameters: Mapping[str, Any]) -> None:
        """(Re)load a model from the repository files: new versions come in, removed ones go."""
        self._check_model_control()
        _check_repository(repository)
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

    async def repository_unload(self, repository: str, name: str, parameters: Mapping[str, Any]) -> None:
        """Unload every version; queued requests finish first, new ones get NOT_FOUND. Idempotent."""
        self._check_model_control()
        _check_repository(repository)
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


def _version_or_latest(version: str) -> int:
    try:
        return parse_version(version)
    except ServingError:
        return 0  # the request fails when it runs


def _check_repository(name: str) -> None:
    if name:
        raise ServingError(
            grpc.StatusCode.NOT_FOUND,
            f"unknown repository {name[:64]!r}: this server has one model repository; leave "
            "repository_name empty",
        )


def _model_config(model: ServedModel, settings: Settings) -> Document:
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
