"""ONNX Runtime: the default runtime, and the only one an ONNX-only install needs.

Session options are chosen for a server that runs many small requests of small models on few cores:

- `intra_op_num_threads` small (default 1): the networks are tiny, so splitting one op over threads
  costs more in synchronisation than it saves; parallelism comes from the server's inference thread
  pool running several batches (and models) at once instead.
- `inter_op_num_threads = 1` with `ORT_SEQUENTIAL`: the graphs are chains; parallel branches do not exist.
- `session.intra_op.allow_spinning = 0`: idle ORT threads otherwise spin-wait for work, burning CPU that
  concurrent requests, the tokenizer and the event loop need.
- `ORT_ENABLE_ALL`: every graph optimisation (constant folding, fusions); paid once at load time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from seqserve.v1 import model_config_pb2
from serving.runtimes import ModelRuntimeError, expand_probabilities


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxRuntime:
    name = "onnx"

    def __init__(self, path: Path, config: model_config_pb2.ModelConfig, intra_op_threads: int) -> None:
        self._config = config
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=session_options(intra_op_threads), providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped exceptions
            raise ModelRuntimeError(f"{config.name}: cannot load {path}: {error}") from error
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelRuntimeError(
                f"{config.name}: {path} has {len(inputs)} inputs; expected one (token ids)"
            )
        self._input_name = inputs[0].name
        self.source = path.name
        shape = inputs[0].shape  # symbolic or unknown dimensions are strings or None
        axis = shape[1] if len(shape) == 2 else None
        self.fixed_sequence_length = axis if isinstance(axis, int) else None
        outputs = [output.name for output in self._session.get_outputs()]
        wanted = config.export.output_name
        self._output_name = wanted if wanted in outputs else outputs[0]

    def run(self, ids: np.ndarray) -> np.ndarray:
        (raw,) = self._session.run([self._output_name], {self._input_name: ids})
        return expand_probabilities(raw, self._config)


def load(version_dir: Path, config: model_config_pb2.ModelConfig, intra_op_threads: int) -> OnnxRuntime:
    return OnnxRuntime(version_dir / (config.export.onnx_file or "model.onnx"), config, intra_op_threads)
