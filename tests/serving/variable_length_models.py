"""Small ONNX graphs that honour the variable-length contract, written into a model repository.

Each takes int32 ids [batch, L] and ignores the padding (id 0) after a text, as trained exports do:
- "gap": embeddings averaged over the real tokens only;
- "lstm": a fused bidirectional `LSTM` whose `sequence_lens` counts the non-zero ids (at least 1, so
  an empty text reads one padding step at any width);
- "conv": Conv1D + ReLU + max over every window, padding windows included, so a batch needs
  `kernel_size` padding ids after its longest text to equal full padding.
The same graph with axis 1 fixed to max_length is a version of today's format.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper

from seqserve.v1 import model_config_pb2

EMBEDDING = 8
HIDDEN = 6
KERNEL_SIZE = 3
KINDS = ("gap", "lstm", "conv")


def _nodes(kind: str) -> list[onnx.NodeProto]:
    make = helper.make_node
    embed = [make("Gather", ["embedding", "input_ids"], ["embedded"])]  # [b, L, E]
    mask = [
        make("Equal", ["input_ids", "zero_id"], ["is_padding"]),
        make("Not", ["is_padding"], ["is_token"]),
    ]
    if kind == "gap":
        return [*embed, *mask,
            make("Cast", ["is_token"], ["mask"], to=TensorProto.FLOAT),
            make("Unsqueeze", ["mask", "axis_2"], ["mask3"]),
            make("Mul", ["embedded", "mask3"], ["masked"]),
            make("ReduceSum", ["masked", "axis_1"], ["total"], keepdims=0),
            make("ReduceSum", ["mask", "axis_1"], ["count"], keepdims=1),
            make("Max", ["count", "one_float"], ["divisor"]),
            make("Div", ["total", "divisor"], ["features"]),
        ]  # fmt: skip
    if kind == "lstm":
        return [*embed, *mask,
            make("Cast", ["is_token"], ["mask"], to=TensorProto.INT32),
            make("ReduceSum", ["mask", "axis_1"], ["count"], keepdims=0),
            make("Max", ["count", "one_int"], ["sequence_lens"]),
            make("Transpose", ["embedded"], ["time_major"], perm=[1, 0, 2]),
            make("LSTM", ["time_major", "W", "R", "B", "sequence_lens"], ["", "Y_h"],
                 hidden_size=HIDDEN, direction="bidirectional"),
            make("Transpose", ["Y_h"], ["by_batch"], perm=[1, 0, 2]),
            make("Flatten", ["by_batch"], ["features"], axis=1),
        ]  # fmt: skip
    return [
        *embed,
        make("Transpose", ["embedded"], ["channels_first"], perm=[0, 2, 1]),
        make("Conv", ["channels_first", "kernel", "kernel_bias"], ["windows"]),
        make("Relu", ["windows"], ["active"]),
        make("ReduceMax", ["active"], ["features"], axes=[2], keepdims=0),
    ]


def _width(kind: str) -> int:
    return 2 * HIDDEN if kind == "lstm" else EMBEDDING


def variable_length_onnx(kind: str, vocab_size: int, length: int | str, seed: int = 0) -> onnx.ModelProto:
    """`length` = "length" for a dynamic sequence axis, or max_length for a fixed one."""
    rng = np.random.default_rng(seed)

    def weights(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)

    initializers = [
        weights("embedding", vocab_size, EMBEDDING),  # id 0 too: padding windows see a real vector
        weights("W", 2, 4 * HIDDEN, EMBEDDING),
        weights("R", 2, 4 * HIDDEN, HIDDEN),
        weights("B", 2, 8 * HIDDEN),
        weights("kernel", EMBEDDING, EMBEDDING, KERNEL_SIZE),
        weights("kernel_bias", EMBEDDING),
        weights("dense", _width(kind), 1),
        weights("dense_bias", 1),
        numpy_helper.from_array(np.array(0, dtype=np.int32), "zero_id"),
        numpy_helper.from_array(np.array(1, dtype=np.int32), "one_int"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one_float"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis_2"),
    ]
    nodes = [
        *_nodes(kind),
        helper.make_node("MatMul", ["features", "dense"], ["logit_raw"]),
        helper.make_node("Add", ["logit_raw", "dense_bias"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probabilities"]),
    ]
    used = {name for node in nodes for name in node.input}
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", length])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 1])],
        initializer=[tensor for tensor in initializers if tensor.name in used],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def publish(
    repository: Path,
    template: str,
    name: str,
    model: onnx.ModelProto,
    sequence: model_config_pb2.SequenceInput | None,
) -> None:
    """Version 1 of `name`: `model` with the config of the repository's model `template` (its tokenizer,
    labels, max_length), `sequence` set or left out (today's format)."""
    source = repository / template / "1" / "config.pbtxt"
    config = text_format.Parse(source.read_text(), model_config_pb2.ModelConfig())
    config.name = name
    config.ClearField("sequence")
    if sequence is not None:
        config.sequence.CopyFrom(sequence)
    config.export.onnx_file = "model.onnx"
    config.export.output_name = "probabilities"
    config.export.saved_model_dir = ""
    directory = repository / name / "1"
    shutil.rmtree(directory.parent, ignore_errors=True)
    directory.mkdir(parents=True)
    onnx.save(model, directory / "model.onnx")
    (directory / "config.pbtxt").write_text(text_format.MessageToString(config))


def trailing_padding(kind: str) -> int:
    return KERNEL_SIZE if kind == "conv" else 0
