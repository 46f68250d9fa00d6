"""TensorFlow Serving's data plane, once, behind both wires (serving.handlers.tfs_grpc, tfs_rest).

Predict and Classify decode their request into texts (serving.protocol.tfs_types) and run them through
the same `InferenceService.classify` as seqserve.v1 and KServe V2: the same limits, batcher, padding,
deadlines and request metrics. A request refused while it is decoded is counted as `classify` counts
a failed one. Metadata and status are answered from the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from seqserve.tfs.tensorflow_serving.apis import get_model_status_pb2
from serving.errors import ServingError
from serving.inference import Classification, InferenceService
from serving.metrics import TF_SERVING
from serving.model import ServedModel
from serving.protocol.tfs_types import (
    CheckCount,
    ClassifyCall,
    ModelSelection,
    PredictCall,
    VersionLabels,
    model_status,
)
from serving.registry import ModelRegistry
from serving.settings import Settings

Call = TypeVar("Call", PredictCall, ClassifyCall)


class TfsDataPlane:
    def __init__(self, service: InferenceService, registry: ModelRegistry, settings: Settings) -> None:
        self._service = service
        self._registry = registry
        self._labels = VersionLabels(settings)

    def _version(self, selection: ModelSelection) -> int:
        return selection.version_number(self._labels)

    async def run(
        self, selection: ModelSelection, decode: Callable[[CheckCount], Call], time_remaining: float | None
    ) -> tuple[Call, Classification]:
        """Decode a Predict or Classify request (`decode` sees the text-count limit) and classify it.
        A request refused while it is decoded is counted as `classify` counts a failed one (an unknown
        model outranks the malformed message, as in `InferenceService.refuse`)."""
        version = 0
        try:
            version = self._version(selection)
            call = decode(self._service.check_text_count)
        except ServingError as error:
            raise self.refuse(selection.name, error, version) from None
        result = await self._service.classify(selection.name, version, call.texts, time_remaining, TF_SERVING)
        return call, result

    def refuse(self, name: str, error: ServingError, version: int = 0) -> ServingError:
        """Count a Predict or Classify refused before it ran (e.g. for the version in its REST path) as
        `InferenceService.classify` counts a failed one; returns the error to send."""
        return self._service.refuse(name, version, error, TF_SERVING)

    def model(self, selection: ModelSelection) -> ServedModel:
        return self._service.lookup(selection.name, self._version(selection))

    def status(self, selection: ModelSelection) -> get_model_status_pb2.GetModelStatusResponse:
        return model_status(self._registry, selection, self._labels)
