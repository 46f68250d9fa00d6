"""Export a trained model as a SavedModel and as ONNX, then prove all three agree.

The SavedModel's `serving_default` signature and the ONNX graph have the same contract: int32
`input_ids` [batch, length] -> float32 `probabilities`, where length is max_length for a fixed-length
model and any 1 <= length <= max_length for a variable-length one. tf2onnx converts the traced
function; when that yields a `Loop`/`Scan` graph (Keras 3 recurrent layers, masked or not), the fused
exporter writes the graph from the layer weights instead.

Parity is checked on held-out texts twice: padded to max_length, and in batches padded only as far as
serving pads them (their longest text, plus the model's trailing padding). Keras on full padding is the
reference for both. An export whose outputs disagree beyond tolerance is an error, not a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxruntime
import tensorflow as tf
import tf2onnx

from seqserve.v1 import model_config_pb2
from training.architectures import SequencePolicy
from training.batches import padded_length, real_lengths
from training.onnx_fused import fused_onnx_from_keras

INPUT_NAME = "input_ids"
OUTPUT_NAME = "probabilities"
ONNX_FILE = "model.onnx"
SAVED_MODEL_DIR = "saved_model"
SIGNATURE = "serving_default"
# Control-flow ops that mean a recurrent layer was unrolled into a slow generic loop.
LOOP_OPS = frozenset({"Loop", "Scan"})
# Rows per batch of the second parity pass, as the server's batches of mixed lengths.
PARITY_BATCH = 32


class ExportParityError(Exception):
    """The exported model computes different probabilities than the Keras model it came from."""


@dataclass(frozen=True)
class ExportResult:
    onnx_converter: str  # "tf2onnx" or "seqserve-fused"
    onnx_opset: int
    parity_max_abs_error: float
    parity_examples: int

    def summary(self) -> model_config_pb2.ExportSummary:
        """The export as config.pbtxt records it, file names and tensor names included."""
        return model_config_pb2.ExportSummary(
            onnx_file=ONNX_FILE,
            saved_model_dir=SAVED_MODEL_DIR,
            input_name=INPUT_NAME,
            output_name=OUTPUT_NAME,
            onnx_opset=self.onnx_opset,
            onnx_converter=self.onnx_converter,
            parity_max_abs_error=self.parity_max_abs_error,
            parity_examples=self.parity_examples,
        )


def _serving_function(model: keras.Model) -> tf.types.experimental.GenericFunction:
    """The model's own input length: max_length, or None for a variable-length model."""
    spec = [tf.TensorSpec([None, model.inputs[0].shape[-1]], tf.int32, name=INPUT_NAME)]

    def serve(input_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(input_ids, training=False)}

    return tf.function(serve, input_signature=spec)


def save_saved_model(model: keras.Model, directory: Path) -> None:
    module = tf.Module()
    module.model = model
    module.serve = _serving_function(model)
    tf.saved_model.save(module, str(directory), signatures={SIGNATURE: module.serve})


def onnx_op_types(graph: onnx.GraphProto) -> set[str]:
    """Op types of a graph including its sub-graphs (a Loop body, say)."""
    types = set()
    for node in graph.node:
        types.add(node.op_type)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                types |= onnx_op_types(attribute.g)
    return types


def convert_to_onnx(model: keras.Model, max_length: int, opset: int) -> tuple[onnx.ModelProto, str]:
    """The ONNX model and the name of the converter that produced it."""
    function = _serving_function(model)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=opset)
    if onnx_op_types(proto.graph) & LOOP_OPS:
        fused = fused_onnx_from_keras(
            model, max_length=max_length, input_name=INPUT_NAME, output_name=OUTPUT_NAME, opset=opset
        )
        return fused, "seqserve-fused"
    return proto, "tf2onnx"


def _batch_padded(ids: np.ndarray, policy: SequencePolicy) -> list[np.ndarray]:
    """`ids` in consecutive batches, each cut to the length serving pads such a batch to."""
    lengths, max_length = real_lengths(ids), ids.shape[1]
    return [
        ids[start : start + PARITY_BATCH, : padded_length(int(part.max()), policy, max_length)]
        for start in range(0, len(ids), PARITY_BATCH)
        for part in [lengths[start : start + PARITY_BATCH]]
    ]


def parity_error(model: keras.Model, directory: Path, ids: np.ndarray, policy: SequencePolicy) -> float:
    """Largest difference from Keras on full padding, over Keras, the SavedModel and ONNX Runtime
    (from the files on disk), each on full padding and on batch padding."""
    expected = np.asarray(model(ids, training=False))
    signature = tf.saved_model.load(str(directory / SAVED_MODEL_DIR)).signatures[SIGNATURE]
    session = onnxruntime.InferenceSession(str(directory / ONNX_FILE), providers=["CPUExecutionProvider"])
    runtimes = {
        "Keras": lambda batch: np.asarray(model(batch, training=False)),
        "SavedModel": lambda batch: signature(**{INPUT_NAME: tf.constant(batch)})[OUTPUT_NAME].numpy(),
        "ONNX": lambda batch: session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0],
    }
    error = 0.0
    for runtime, run in runtimes.items():
        paddings = {"full padding": [ids], "batch padding": _batch_padded(ids, policy)}
        for padding, batches in paddings.items():
            result = np.concatenate([run(batch) for batch in batches])
            if result.shape != expected.shape or result.dtype != np.float32:
                raise ExportParityError(
                    f"{runtime} on {padding} returns {result.dtype}{list(result.shape)}, "
                    f"Keras float32{list(expected.shape)}"
                )
            error = max(error, float(np.abs(expected - result).max()))
    return error


def export_model(
    model: keras.Model,
    directory: Path,
    *,
    max_length: int,
    policy: SequencePolicy,
    parity_ids: np.ndarray,
    tolerance: float,
    opset: int,
) -> ExportResult:
    """Writes saved_model/ and model.onnx into `directory` and verifies them on `parity_ids`
    ([n, max_length], right-padded), plus one empty text."""
    save_saved_model(model, directory / SAVED_MODEL_DIR)
    proto, converter = convert_to_onnx(model, max_length, opset)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(directory / ONNX_FILE))
    parity_ids = np.concatenate([parity_ids, np.zeros((1, max_length), dtype=np.int32)])
    error = parity_error(model, directory, parity_ids, policy)
    if not error <= tolerance:
        raise ExportParityError(
            f"{model.name}: exported outputs differ from Keras by up to {error:.3g} on {len(parity_ids)} "
            f"held-out examples (tolerance {tolerance:g}; ONNX converter {converter}); nothing was published"
        )
    return ExportResult(
        onnx_converter=converter,
        onnx_opset=opset,
        parity_max_abs_error=error,
        parity_examples=len(parity_ids),
    )
