"""A deliberately slow model, so that tests can hold requests in a server's queue while they act.

The batcher waits for company only while a batch of the same model is running, so requests stay
queued only behind a busy model. This one is a real ONNX model with the repository's contract (int32
ids [n, max_length] -> sigmoid [n, 1]) whose every batch also multiplies a matrix with itself a
number of times. The matrix depends on the input (times zero), so ONNX Runtime cannot fold it into a
constant at load time; the output is a sigmoid of the ids' mean and does not depend on it.

How long a run takes depends on the machine, so a test that must act while a run is under way does
not rely on it: it serves the model behind a gate (tests/serving/gate.py), where each run waits until
the test releases it.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper

from seqserve.v1 import model_config_pb2

SLOW_MODEL = "sarcasm-slow"
MATRIX_SIZE = 512


def _working_model(
    name: str, max_length: int, work: list[onnx.NodeProto], result: str, initializers: list[onnx.TensorProto]
) -> onnx.ModelProto:
    """ids [n, max_length] -> sigmoid(0.01 * mean id) [n, 1], after `work`, whose `result` (times zero)
    is added in, so that ONNX Runtime cannot skip it. `work` may read `ids`, `mean`, `zero` and
    `matrix` (a 512 x 512 matrix)."""
    rng = np.random.default_rng(0)
    matrix = rng.uniform(0, 1 / MATRIX_SIZE, (MATRIX_SIZE, MATRIX_SIZE)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["ids"], ["mean"], axes=[1], keepdims=1),  # [n, 1]
        *work,
        helper.make_node("ReduceSum", [result], ["work"], keepdims=0),
        helper.make_node("Mul", ["work", "zero"], ["work_zero"]),
        helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "work_zero"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probabilities"]),
    ]
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", max_length])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(matrix, "matrix"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
            numpy_helper.from_array(np.array(0.01, dtype=np.float32), "scale"),
            *initializers,
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def slow_onnx(max_length: int, matmuls: int) -> onnx.ModelProto:
    work = [
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("ReduceSum", ["nothing"], ["scalar_zero"], keepdims=0),
        helper.make_node("Add", ["matrix", "scalar_zero"], ["m0"]),  # input-dependent: not folded
    ]
    for i in range(matmuls):
        work.append(helper.make_node("MatMul", [f"m{i}", f"m{i}"], [f"m{i + 1}"]))
    return _working_model("slow", max_length, work, f"m{matmuls}", [])


def add_model(repository: Path, name: str, graph: Callable[[int], onnx.ModelProto], source: str) -> str:
    """Add `name` version 1 to a repository copy: the tokenizer and config of `source`, a sigmoid
    output, and the ONNX graph `graph(max_length)` makes."""
    version_dir = repository / name / "1"
    version_dir.mkdir(parents=True)
    config_text = (repository / source / "1" / "config.pbtxt").read_text()
    config = text_format.Parse(config_text, model_config_pb2.ModelConfig())
    config.name = name
    config.architecture = "slow"
    config.output_kind = model_config_pb2.OUTPUT_KIND_SIGMOID
    config.export.onnx_file = "model.onnx"
    config.export.output_name = "probabilities"
    config.ClearField("sequence")  # the graph takes max_length only
    onnx.save(graph(config.max_length), version_dir / "model.onnx")
    (version_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    return name


def add_slow_model(
    repository: Path, matmuls: int = 60, source: str = "sarcasm-gru", name: str = SLOW_MODEL
) -> str:
    """Add `name` (`sarcasm-slow`) version 1, whose every batch is slow (`slow_onnx`)."""
    return add_model(repository, name, lambda max_length: slow_onnx(max_length, matmuls), source)


def repository_with_slow_model(tiny_model_repository: Path, root: Path, matmuls: int = 60) -> Path:
    """A copy of the tiny repository plus the slow model."""
    shutil.copytree(tiny_model_repository, root)
    add_slow_model(root, matmuls)
    return root


STUCK_MODEL = "sarcasm-stuck"
STUCK_FREE_TOKENS = 4  # texts of at most this many tokens (the warm-up's two) run at once


def stuck_onnx(max_length: int, matmuls_per_token: int) -> onnx.ModelProto:
    """Like `slow_onnx`, but the work grows with the longest text of the batch: a text of more than
    STUCK_FREE_TOKENS tokens costs `matmuls_per_token` matrix products per token beyond them, in a
    Loop whose trip count comes from the input; shorter texts (the warm-up) cost nothing."""
    square = [MATRIX_SIZE, MATRIX_SIZE]
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["condition"], ["condition_out"]),
            helper.make_node("MatMul", ["m", "m"], ["m_out"]),
        ],
        "product",
        [
            helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
            helper.make_tensor_value_info("condition", TensorProto.BOOL, []),
            helper.make_tensor_value_info("m", TensorProto.FLOAT, square),
        ],
        [
            helper.make_tensor_value_info("condition_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("m_out", TensorProto.FLOAT, square),
        ],
    )
    work = [
        helper.make_node("Greater", ["ids", "zero"], ["is_token"]),
        helper.make_node("Cast", ["is_token"], ["token"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["token", "axis_one"], ["tokens"], keepdims=0),
        helper.make_node("ReduceMax", ["tokens"], ["longest"], keepdims=0),
        helper.make_node("Sub", ["longest", "free"], ["beyond"]),
        helper.make_node("Relu", ["beyond"], ["extra"]),
        helper.make_node("Mul", ["extra", "per_token"], ["products"]),
        helper.make_node("Cast", ["products"], ["trips"], to=TensorProto.INT64),
        helper.make_node("Loop", ["trips", "true", "matrix"], ["worked"], body=body),
    ]
    initializers = [
        numpy_helper.from_array(np.array(STUCK_FREE_TOKENS, dtype=np.float32), "free"),
        numpy_helper.from_array(np.array(matmuls_per_token, dtype=np.float32), "per_token"),
        numpy_helper.from_array(np.array(True), "true"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_one"),
    ]
    return _working_model("stuck", max_length, work, "worked", initializers)


def add_stuck_model(repository: Path, matmuls_per_token: int = 60, source: str = "sarcasm-gru") -> str:
    """Add `sarcasm-stuck` version 1: a long text's batch runs for many seconds (`stuck_onnx`)."""
    return add_model(
        repository, STUCK_MODEL, lambda max_length: stuck_onnx(max_length, matmuls_per_token), source
    )
