"""A model version run in this process as the server runs it: its tokenizer's TokenEncoder, the padding
its config asks for (serving.sequence) and the serving runtime class with the server's settings.

`cost_per_text()` is the in-process counterpart of the server's compute per text: tokenize + runtime
of one batch, over its texts, with no request path around it.

`fixed_length()` is the same version padded to max_length whatever its config says: the fixed-length
twin of a variable-length graph, with the same weights (the same session), for side-by-side ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from seqserve.v1 import model_config_pb2
from serving.runtimes import Runtime, create_runtime
from serving.sequence import SequencePadding
from serving.settings import Settings
from serving.tokenization import TokenEncoder


@dataclass(frozen=True)
class InProcessModel:
    config: model_config_pb2.ModelConfig
    encoder: TokenEncoder
    padding: SequencePadding
    runtime: Runtime

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(texts, self.padding)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.runtime.run(self.encode(texts))

    def fixed_length(self) -> InProcessModel:
        return replace(self, padding=SequencePadding(self.config.max_length))


def load_in_process(
    version_dir: Path, config: model_config_pb2.ModelConfig, repository: Path, runtime: str = "onnx"
) -> InProcessModel:
    encoder = TokenEncoder(Tokenizer.from_file(str(repository / config.tokenizer.path)))
    model = create_runtime(runtime, version_dir, config, Settings().intra_op_threads)
    return InProcessModel(config, encoder, SequencePadding.of(config), model)


def cost_per_text(model: InProcessModel, texts: Sequence[str], calls: int = 250) -> float:
    """Seconds per text of `model.predict(texts)` (tokenize + runtime): the median of `calls` calls, after
    as many to warm up, so that the calls other work on the machine slowed down do not count."""
    for _ in range(calls):
        model.predict(texts)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        model.predict(texts)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / len(texts)
