"""Explanations as seqserve.v1 messages, for the gRPC method and the REST routes (in its JSON mapping)."""

from __future__ import annotations

from collections.abc import Sequence

from seqserve.v1 import classifier_pb2
from serving.explanations import ModelExplanation


def model_explanation(text: str, result: ModelExplanation) -> classifier_pb2.ModelExplanation:
    explanation = result.explanation
    return classifier_pb2.ModelExplanation(
        model=result.model.name,
        version=result.model.version,
        runtime=result.model.runtime.name,
        label=explanation.label,
        probability=explanation.probability,
        words=[
            classifier_pb2.WordAttribution(
                start=word.start,
                end=word.end,
                word=text[word.start : word.end],
                attribution=word.attribution,
                oov=word.oov,
                seen=word.seen,
            )
            for word in explanation.words
        ],
        variants=explanation.variants,
        server_latency_seconds=result.server_seconds,
    )


def explain_response(text: str, results: Sequence[ModelExplanation]) -> classifier_pb2.ExplainResponse:
    return classifier_pb2.ExplainResponse(explanations=[model_explanation(text, r) for r in results])
