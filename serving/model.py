"""A loaded model version: config + shared token encoder + its padding + runtime + batcher and metrics.

It is the batcher's `BatchWork`: `prepare` tokenizes the whole batch once on the event loop (padded as
far as this model needs, serving.sequence), `execute` runs the runtime once on an inference thread, and
`finish` records the batch's metrics back on the loop. It is the only place where texts become numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from seqserve.v1 import model_config_pb2
from serving.batch_timing import BatchTiming
from serving.batcher import Batcher
from serving.explain import Explainer
from serving.metrics import ModelMetrics
from serving.runtimes import ModelRuntimeError, Runtime
from serving.sequence import SequencePadding
from serving.tokenization import TokenEncoder

if TYPE_CHECKING:
    from serving.tracing import BatchTracing, Exemplar

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

    @cached_property
    def utf8_labels(self) -> tuple[bytes, ...]:
        """Each label's UTF-8 bytes, encoded once: the BYTES elements of a `label` output."""
        return tuple(label.encode("utf-8") for label in self.labels)

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        ids = self.encoder.encode(texts, self.padding)
        # the fast path pads to self.padding by construction; a tokenizer padding itself is checked
        if not self.encoder.pads_itself and ids.shape != (len(texts), self.config.max_length):
            raise ModelRuntimeError(
                f"{self.name}: tokenizer produced ids of shape {ids.shape}, expected "
                f"({len(texts)}, {self.config.max_length}); its padding/truncation must be max_length"
            )
        return ids

    # The batcher's BatchWork: every step but the runtime call runs on the event loop.

    def prepare(self, texts: list[str]) -> np.ndarray:
        """texts -> token ids, on the event loop."""
        return self.tokenize(texts)

    def execute(self, ids: np.ndarray) -> np.ndarray:
        """The runtime call, on an inference thread (it releases the GIL while the graph runs)."""
        return self.runtime.run(ids)

    def finish(
        self, ids: np.ndarray, probabilities: np.ndarray, timing: BatchTiming, exemplar: Exemplar | None
    ) -> np.ndarray:
        """The batch's metrics, one observation each, on the event loop; the rows as they are."""
        metrics = self.metrics
        metrics.tokenize_duration.observe(timing.prepare_s, exemplar)
        metrics.inference_duration.observe(timing.execute_s, exemplar)
        metrics.computed(timing.items, timing.compute_s)
        metrics.statistics.batch_ran(timing.items, timing.prepare_s, timing.execute_s)
        return probabilities

    def predict_batch(self, texts: list[str]) -> np.ndarray:
        """texts -> probabilities [len(texts), len(labels)] in one call, without the batcher or its
        metrics: for explanations' checks and the in-process benchmarks."""
        return self.execute(self.prepare(texts))

    def warm_up(self, batch_sizes: Sequence[int]) -> None:
        """Run dummy batches (allocations, lazy init) and check the output shape before serving."""
        for size in batch_sizes:
            probabilities = self.runtime.run(self.tokenize([WARM_UP_TEXT] * size))
            if probabilities.shape != (size, len(self.labels)):
                raise ModelRuntimeError(
                    f"{self.name} v{self.version}: output shape {probabilities.shape}, expected "
                    f"({size}, {len(self.labels)})"
                )
