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
from pathlib import Path

import numpy as np
import onnx
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper

from seqserve.v1 import model_config_pb2

SLOW_MODEL = "sarcasm-slow"


def slow_onnx(max_length: int, matmuls: int, size: int = 512) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    matrix = rng.uniform(0, 1 / size, (size, size)).astype(np.float32)
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["ids"], ["mean"], axes=[1], keepdims=1),  # [n, 1]
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("ReduceSum", ["nothing"], ["scalar_zero"], keepdims=0),
        helper.make_node("Add", ["matrix", "scalar_zero"], ["m0"]),  # input-dependent: not folded
    ]
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [f"m{i}", f"m{i}"], [f"m{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"m{matmuls}"], ["work"], keepdims=0),
        helper.make_node("Mul", ["work", "zero"], ["work_zero"]),
        helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "work_zero"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probabilities"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch", max_length])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            numpy_helper.from_array(matrix, "matrix"),
            numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
            numpy_helper.from_array(np.array(0.01, dtype=np.float32), "scale"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def add_slow_model(repository: Path, matmuls: int = 60, source: str = "sarcasm-gru") -> str:
    """Add `sarcasm-slow` version 1 (the tokenizer and config of `source`) to a repository copy."""
    version_dir = repository / SLOW_MODEL / "1"
    version_dir.mkdir(parents=True)
    config_text = (repository / source / "1" / "config.pbtxt").read_text()
    config = text_format.Parse(config_text, model_config_pb2.ModelConfig())
    config.name = SLOW_MODEL
    config.architecture = "slow"
    config.output_kind = model_config_pb2.OUTPUT_KIND_SIGMOID
    config.export.onnx_file = "model.onnx"
    config.export.output_name = "probabilities"
    config.ClearField("sequence")  # the graph takes max_length only
    onnx.save(slow_onnx(config.max_length, matmuls), version_dir / "model.onnx")
    (version_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    return SLOW_MODEL


def repository_with_slow_model(tiny_model_repository: Path, root: Path, matmuls: int = 60) -> Path:
    """A copy of the tiny repository plus the slow model."""
    shutil.copytree(tiny_model_repository, root)
    add_slow_model(root, matmuls)
    return root
