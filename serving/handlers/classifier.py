"""The seqserve.v1.Classifier gRPC service (grpc.aio)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import grpc
import numpy as np

from seqserve.v1 import classifier_pb2, classifier_pb2_grpc
from serving.explanations import ExplainService
from serving.handlers.explain_messages import explain_response
from serving.handlers.grpc_errors import grpc_errors
from serving.handlers.streams import pipelined
from serving.inference import Classification, InferenceService
from serving.metrics import SEQSERVE_V1
from serving.model import ServedModel
from serving.registry import ModelRegistry


def predictions(labels: list[str], probabilities: np.ndarray) -> list[classifier_pb2.Prediction]:
    # argmax and float conversion once per reply in numpy: the per-row loop only builds messages
    best = probabilities.argmax(axis=1).tolist()
    rows = probabilities.tolist()
    return [
        classifier_pb2.Prediction(
            label=labels[top],
            score=row[top],
            scores=[
                classifier_pb2.LabelScore(label=label, score=p) for label, p in zip(labels, row, strict=True)
            ],
        )
        for top, row in zip(best, rows, strict=True)
    ]


def classify_response(result: Classification) -> classifier_pb2.ClassifyResponse:
    model = result.model
    return classifier_pb2.ClassifyResponse(
        model=model.name,
        version=model.version,
        predictions=predictions(list(model.labels), result.probabilities),
    )


def compare_response(results: list[Classification]) -> classifier_pb2.CompareResponse:
    return classifier_pb2.CompareResponse(
        results=[
            classifier_pb2.ModelPredictions(
                model=result.model.name,
                version=result.model.version,
                runtime=result.model.runtime.name,
                predictions=predictions(list(result.model.labels), result.probabilities),
                server_latency_seconds=result.server_seconds,
                queue_wait_seconds=result.queue_wait_seconds,
                compute_seconds_per_text=result.compute_seconds / len(result.probabilities),
            )
            for result in results
        ]
    )


def model_info(versions: list[ServedModel]) -> classifier_pb2.ModelInfo:
    latest = versions[-1].config
    return classifier_pb2.ModelInfo(
        name=latest.name,
        architecture=latest.architecture,
        dataset=latest.dataset,
        labels=list(latest.labels),
        max_length=latest.max_length,
        versions=[
            classifier_pb2.VersionInfo(
                version=model.version,
                runtime=model.runtime.name,
                ready=True,
                parameter_count=model.config.parameter_count,
                validation_accuracy=model.config.training.validation_accuracy,
                validation_loss=model.config.training.validation_loss,
                mean_epoch_seconds=model.config.training.mean_epoch_seconds,
                test_accuracy=model.config.training.test_accuracy,
            )
            for model in versions
        ],
    )


class ClassifierServicer(classifier_pb2_grpc.ClassifierServicer):
    def __init__(
        self,
        service: InferenceService,
        registry: ModelRegistry,
        explain: ExplainService,
        stopping: asyncio.Event | None = None,
    ) -> None:
        self._service = service
        self._registry = registry
        self._stopping = stopping or asyncio.Event()  # set when the server begins to shut down
        self._explain = explain

    @grpc_errors
    async def Classify(
        self, request: classifier_pb2.ClassifyRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.ClassifyResponse:
        result = await self._service.classify(
            request.model, request.version, request.texts, context.time_remaining(), SEQSERVE_V1
        )
        return classify_response(result)

    @grpc_errors
    async def ClassifyStream(
        self,
        request_iterator: AsyncIterator[classifier_pb2.ClassifyRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[classifier_pb2.ClassifyResponse]:
        """Replies in request order (see serving.handlers.streams); the first error ends the stream
        with its status, and a shutdown ends it with UNAVAILABLE after the replies to what it read."""

        def start(request: classifier_pb2.ClassifyRequest) -> Awaitable[Classification]:
            return self._service.classify(
                request.model, request.version, list(request.texts), context.time_remaining(), SEQSERVE_V1
            )

        async for work in pipelined(request_iterator, start, self._stopping):
            yield classify_response(await work)

    @grpc_errors
    async def Compare(
        self, request: classifier_pb2.CompareRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.CompareResponse:
        results = await self._service.compare(
            request.texts, request.models, context.time_remaining(), request.rounds
        )
        return compare_response(results)

    @grpc_errors
    async def Explain(
        self, request: classifier_pb2.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.ExplainResponse:
        (results,) = await self._explain.explain([request.text], request.models, request.version)
        return explain_response(request.text, results)

    async def ListModels(
        self, request: classifier_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.ListModelsResponse:
        snapshot = self._registry.snapshot
        return classifier_pb2.ListModelsResponse(
            models=[model_info(self._versions(name)) for name in snapshot.names()]
        )

    @grpc_errors
    async def GetModel(
        self, request: classifier_pb2.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> classifier_pb2.ModelInfo:
        self._service.lookup(request.model)
        return model_info(self._versions(request.model))

    def _versions(self, name: str) -> list[ServedModel]:
        entry = self._registry.snapshot.models[name]
        return [entry.versions[v] for v in sorted(entry.versions)]
