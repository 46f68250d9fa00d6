"""Export a trained model as a SavedModel and as ONNX, then prove all three agree.

The SavedModel's `serving_default` signature and the ONNX graph have the same contract: int32
`input_ids` [batch, max_length] -> float32 `probabilities`. tf2onnx converts the traced function; when
that yields a `Loop`/`Scan` graph (Keras 3 GRU and SimpleRNN), the fused exporter writes the graph from
the layer weights instead. An export whose outputs disagree beyond tolerance is an error, not a warning.
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
from training.onnx_fused import fused_onnx_from_keras

INPUT_NAME = "input_ids"
OUTPUT_NAME = "probabilities"
ONNX_FILE = "model.onnx"
SAVED_MODEL_DIR = "saved_model"
SIGNATURE = "serving_default"
# Control-flow ops that mean a recurrent layer was unrolled into a slow generic loop.
LOOP_OPS = frozenset({"Loop", "Scan"})


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


def _serving_function(model: keras.Model, max_length: int) -> tf.types.experimental.GenericFunction:
    spec = [tf.TensorSpec([None, max_length], tf.int32, name=INPUT_NAME)]

    def serve(input_ids: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(input_ids, training=False)}

    return tf.function(serve, input_signature=spec)


def save_saved_model(model: keras.Model, directory: Path, max_length: int) -> None:
    module = tf.Module()
    module.model = model
    module.serve = _serving_function(model, max_length)
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
    function = _serving_function(model, max_length)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature, opset=opset)
    if onnx_op_types(proto.graph) & LOOP_OPS:
        fused = fused_onnx_from_keras(
            model, max_length=max_length, input_name=INPUT_NAME, output_name=OUTPUT_NAME, opset=opset
        )
        return fused, "seqserve-fused"
    return proto, "tf2onnx"


def parity_error(model: keras.Model, directory: Path, ids: np.ndarray) -> float:
    """Largest |Keras - SavedModel| and |Keras - ONNX Runtime| over `ids`, from the files on disk."""
    expected = np.asarray(model.predict(ids, verbose=0, batch_size=len(ids)))
    signature = tf.saved_model.load(str(directory / SAVED_MODEL_DIR)).signatures[SIGNATURE]
    from_saved_model = signature(**{INPUT_NAME: tf.constant(ids)})[OUTPUT_NAME].numpy()
    session = onnxruntime.InferenceSession(str(directory / ONNX_FILE), providers=["CPUExecutionProvider"])
    (from_onnx,) = session.run([OUTPUT_NAME], {INPUT_NAME: ids})
    for runtime, result in (("SavedModel", from_saved_model), ("ONNX", from_onnx)):
        if result.shape != expected.shape or result.dtype != np.float32:
            raise ExportParityError(
                f"{runtime} returns {result.dtype}{list(result.shape)}, Keras float32{list(expected.shape)}"
            )
    return float(max(np.abs(expected - from_saved_model).max(), np.abs(expected - from_onnx).max()))


def export_model(
    model: keras.Model,
    directory: Path,
    *,
    max_length: int,
    parity_ids: np.ndarray,
    tolerance: float,
    opset: int,
) -> ExportResult:
    """Writes saved_model/ and model.onnx into `directory` and verifies them on `parity_ids`."""
    save_saved_model(model, directory / SAVED_MODEL_DIR, max_length)
    proto, converter = convert_to_onnx(model, max_length, opset)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(directory / ONNX_FILE))
    error = parity_error(model, directory, parity_ids)
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
