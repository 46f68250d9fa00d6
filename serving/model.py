"""A loaded model version: config + shared token encoder + its padding + runtime + batcher and metrics.

`predict_batch` is the callable the batcher runs in the thread pool: tokenize the whole batch once
(padded as far as this model needs, serving.sequence), run the runtime once. It is the only place where
texts become numbers.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from seqserve.v1 import model_config_pb2
from serving.batcher import Batcher
from serving.explain import Explainer
from serving.metrics import ModelMetrics
from serving.runtimes import ModelRuntimeError, Runtime
from serving.sequence import SequencePadding
from serving.tokenization import TokenEncoder

if TYPE_CHECKING:
    from serving.tracing import BatchTracing

WARM_UP_TEXT = "warm up"


@dataclass
class ServedModel:
    config: model_config_pb2.ModelConfig
    encoder: TokenEncoder
    padding: SequencePadding
    runtime: Runtime
    metrics: ModelMetrics
    batcher: Batcher | None = None
    tracing: BatchTracing | None = None  # with tracing on
    explainer: Explainer | None = None  # None: its tokenizer's words cannot be removed id by id

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> int:
        return int(self.config.version)

    @property
    def labels(self) -> Sequence[str]:
        return self.config.labels

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        ids = self.encoder.encode(texts, self.padding)
        # the fast path pads to self.padding by construction; a tokenizer padding itself is checked
        if not self.encoder.pads_itself and ids.shape != (len(texts), self.config.max_length):
            raise ModelRuntimeError(
                f"{self.name}: tokenizer produced ids of shape {ids.shape}, expected "
                f"({len(texts)}, {self.config.max_length}); its padding/truncation must be max_length"
            )
        return ids

    def predict_batch(self, texts: list[str]) -> np.ndarray:
        """texts -> probabilities [len(texts), len(labels)]; runs in the inference thread pool."""
        started = time.perf_counter()
        ids = self.tokenize(texts)
        tokenized = time.perf_counter()
        output = self.runtime.run(ids)
        inferred = time.perf_counter()
        probabilities = np.asarray(output, dtype=np.float32)
        done = time.perf_counter()
        exemplar = None
        if self.tracing is not None:
            exemplar = self.tracing.batch_ran(ids.shape[1], started, tokenized, inferred)
        self.metrics.tokenize_duration.observe(tokenized - started, exemplar)
        self.metrics.inference_duration.observe(inferred - tokenized, exemplar)
        self.metrics.statistics.batch_ran(
            len(texts), tokenized - started, inferred - tokenized, done - inferred
        )
        return probabilities

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """Run dummy batches (allocations, lazy init) and check the output shape before serving."""
        for size in batch_sizes:
            probabilities = self.runtime.run(self.tokenize([WARM_UP_TEXT] * size))
            if probabilities.shape != (size, len(self.labels)):
                raise ModelRuntimeError(
                    f"{self.name} v{self.version}: output shape {probabilities.shape}, expected "
                    f"({size}, {len(self.labels)})"
                )
