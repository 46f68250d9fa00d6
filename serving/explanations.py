"""The protocol-neutral explain path: one text, one model or all of them, admitted apart from classification.

Explaining a text runs 1 + (its seen words) rows through each model, so an explanation is far more
work than a classification. It gets its own threads (`--max-concurrent-explains` of them, beside the
inference threads) and its own admission limit: a call arriving while that many run is refused at
once with RESOURCE_EXHAUSTED instead of queueing, so explanations never take the batcher's queue or
threads from classification. Each model's time and variant count are observed in
seqserve_explain_seconds and seqserve_explain_variants.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

from serving.errors import ServingError, invalid
from serving.explain import Explanation
from serving.inference import InferenceService
from serving.model import ServedModel
from serving.registry import ModelRegistry
from serving.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelExplanation:
    model: ServedModel
    explanation: Explanation
    server_seconds: float  # tokenize, build the variants and run them, for this model


class ExplainService:
    def __init__(self, service: InferenceService, registry: ModelRegistry, settings: Settings) -> None:
        self._service = service
        self._registry = registry
        self._limit = settings.max_concurrent_explains
        self._admitted = asyncio.Semaphore(self._limit)
        self._executor = ThreadPoolExecutor(self._limit, thread_name_prefix="explain")

    async def explain(
        self, texts: Sequence[str], names: Sequence[str], version: int = 0
    ) -> list[list[ModelExplanation]]:
        """Each text through each named model (every loaded one when `names` is empty, in name order):
        one admission and one explain thread for the whole call. Returns [text][model]."""
        chosen = list(dict.fromkeys(names)) or self._registry.snapshot.names()
        if version and len(chosen) != 1:
            raise invalid("a version can be asked for only with exactly one model")
        if not chosen:
            raise ServingError(grpc.StatusCode.UNAVAILABLE, "no model is loaded")
        models = [self._service.lookup(name, version) for name in chosen]
        self._service.check_texts(texts)
        for model in models:
            if model.explainer is None:
                raise invalid(
                    f"model {model.name!r} cannot be explained: its tokenizer does not truncate and pad to "
                    "one fixed length without special tokens"
                )
        if self._admitted.locked():
            raise ServingError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self._limit} explanations are running, the limit (--max-concurrent-explains); retry "
                "with backoff",
            )
        async with self._admitted:
            loop = asyncio.get_running_loop()
            try:
                return await loop.run_in_executor(self._executor, _explain_each, models, list(texts))
            except Exception as error:
                log.exception("explanation failed", extra={"models": chosen})
                raise ServingError(grpc.StatusCode.INTERNAL, f"explanation failed: {error}") from error

    def close(self, wait: bool = True) -> None:
        """After the last request: with `wait`, let a running explanation finish."""
        self._executor.shutdown(wait=wait, cancel_futures=True)


def _explain_each(models: Sequence[ServedModel], texts: Sequence[str]) -> list[list[ModelExplanation]]:
    """In an explain thread: each text by each model in turn, timed and counted."""
    results = []
    for text in texts:
        row = []
        for model in models:
            assert model.explainer is not None  # checked before admission
            started = time.perf_counter()
            explanation = model.explainer.explain(text)
            seconds = time.perf_counter() - started
            model.metrics.explain_duration.observe(seconds)
            model.metrics.explain_variants.observe(explanation.variants)
            row.append(ModelExplanation(model, explanation, seconds))
        results.append(row)
    return results
