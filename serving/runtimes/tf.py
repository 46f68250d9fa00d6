"""TensorFlow runtime: calls the SavedModel's `serving_default` signature.

Imported only when a model runs on it (see serving.runtimes.create_runtime). TensorFlow's thread pools
are process-wide and fixed at first use, so they are configured once, before the first model loads, with
the same reasoning as the ONNX session options (small intra-op pool, one inter-op thread).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

from seqserve.v1 import model_config_pb2
from serving.runtimes import ModelRuntimeError, expand_probabilities

SIGNATURE = "serving_default"
_configure_lock = threading.Lock()
_configured = False


def _configure_threads(intra_op_threads: int) -> None:
    global _configured
    with _configure_lock:
        if not _configured:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
            _configured = True


class TensorFlowRuntime:
    name = "tf"

    def __init__(self, path: Path, config: model_config_pb2.ModelConfig) -> None:
        self._config = config
        try:
            self._model = tf.saved_model.load(str(path))
            self._signature = self._model.signatures[SIGNATURE]
        except (OSError, KeyError, ValueError) as error:
            raise ModelRuntimeError(f"{config.name}: cannot load {SIGNATURE} from {path}: {error}") from error
        _, input_specs = self._signature.structured_input_signature
        if len(input_specs) != 1:
            raise ModelRuntimeError(f"{config.name}: {SIGNATURE} has {len(input_specs)} inputs; expected one")
        self._input_name, spec = next(iter(input_specs.items()))
        self.source = f"{path.name} signature {SIGNATURE}"
        self.fixed_sequence_length = spec.shape[1] if spec.shape.rank == 2 else None
        outputs = list(self._signature.structured_outputs)
        wanted = config.export.output_name
        self._output_name = wanted if wanted in outputs else outputs[0]

    def run(self, ids: np.ndarray) -> np.ndarray:
        result = self._signature(**{self._input_name: tf.constant(ids, dtype=tf.int32)})
        return expand_probabilities(result[self._output_name].numpy(), self._config)


def load(version_dir: Path, config: model_config_pb2.ModelConfig, intra_op_threads: int) -> TensorFlowRuntime:
    _configure_threads(intra_op_threads)
    return TensorFlowRuntime(version_dir / (config.export.saved_model_dir or "saved_model"), config)
