"""Runtimes: one model file in, probabilities out. They know nothing about protocols or batching.

`create_runtime` imports each runtime module only when it is asked for, so a server whose models all
run on ONNX Runtime never imports TensorFlow.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

import numpy as np

from seqserve.v1 import model_config_pb2

# runtime name -> module defining `load(version_dir, config, intra_op_threads) -> Runtime`
_MODULES = {"onnx": "serving.runtimes.onnx", "tf": "serving.runtimes.tf"}


class Runtime(Protocol):
    name: str
    source: str  # the graph it runs, for messages: "model.onnx", "saved_model signature serving_default"
    # the graph's length of input_ids' axis 1: an int when it is fixed, None when any length is taken
    fixed_sequence_length: int | None

    def run(self, ids: np.ndarray) -> np.ndarray:
        """int32 token ids [n, L] (L = max_length, or less for a variable-length graph) -> float32
        probabilities [n, len(labels)]."""
        ...


class ModelRuntimeError(Exception):
    """A model file cannot be loaded or run by its runtime."""


def create_runtime(
    runtime: str, version_dir: Path, config: model_config_pb2.ModelConfig, intra_op_threads: int
) -> Runtime:
    if runtime not in _MODULES:
        raise ModelRuntimeError(f"unknown runtime {runtime!r}; known: {', '.join(_MODULES)}")
    module = importlib.import_module(_MODULES[runtime])
    return module.load(version_dir, config, intra_op_threads)


def expand_probabilities(raw: np.ndarray, config: model_config_pb2.ModelConfig) -> np.ndarray:
    """Model output -> one probability per label: a sigmoid's p becomes [1 - p, p]."""
    raw = np.asarray(raw, dtype=np.float32)
    if config.output_kind == model_config_pb2.OUTPUT_KIND_SIGMOID:
        p = raw.reshape(-1)
        probabilities = np.empty((p.size, 2), dtype=np.float32)
        probabilities[:, 1] = p
        np.subtract(np.float32(1.0), p, out=probabilities[:, 0])
        return probabilities
    if raw.ndim != 2 or raw.shape[1] != len(config.labels):
        raise ModelRuntimeError(
            f"{config.name}: output shape {raw.shape} does not match {len(config.labels)} labels"
        )
    return raw
