"""Every architecture trains, exports to SavedModel and fused ONNX, and the three runtimes agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import tensorflow as tf

from seqserve.v1 import model_config_pb2
from training.architectures import ARCHITECTURES
from training.datasets import load_dataset
from training.export import ExportParityError, onnx_op_types
from training.pipeline import train_and_publish
from training.repository import existing_versions, read_config
from training.settings import TrainSettings

RECURRENT_OPS = {"rnn": "RNN", "lstm": "LSTM", "lstm2": "LSTM", "gru": "GRU"}
TOLERANCE = 1e-5


def _version_dir(models: Path, architecture: str) -> Path:
    model_dir = models / f"sarcasm-{architecture}"
    return model_dir / str(existing_versions(model_dir)[0])


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_onnx_graph_has_no_loops_and_fused_recurrent_ops(trained_repository: Path, architecture: str) -> None:
    version_dir = _version_dir(trained_repository, architecture)
    graph = onnx.load(str(version_dir / "model.onnx")).graph
    op_types = onnx_op_types(graph)
    assert not op_types & {"Loop", "Scan"}, op_types
    if architecture in RECURRENT_OPS:
        assert RECURRENT_OPS[architecture] in op_types, op_types
    assert [i.name for i in graph.input] == ["input_ids"]
    assert [o.name for o in graph.output] == ["probabilities"]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    config = read_config(version_dir / "config.pbtxt")
    assert config.export.onnx_opset == 17
    expected_converter = "seqserve-fused" if architecture in RECURRENT_OPS else "tf2onnx"
    assert config.export.onnx_converter == expected_converter
    sequence_dim = graph.input[0].type.tensor_type.shape.dim[1]
    variable = architecture != "flatten"
    assert config.sequence.variable_length is variable
    assert config.sequence.trailing_padding == (5 if architecture == "conv" else 0)
    # A dynamic axis has a name and no value; flatten's is fixed at max_length.
    assert (sequence_dim.dim_value == 0) is variable
    assert sequence_dim.dim_value in (0, config.max_length)


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_saved_model_and_onnx_agree_on_fresh_ids(trained_repository: Path, architecture: str) -> None:
    """Independent of the parity check done at export: new ids, including all-padding and all-unknown
    rows; a variable-length model answers the same when padded only to the longest row."""
    version_dir = _version_dir(trained_repository, architecture)
    config = read_config(version_dir / "config.pbtxt")
    assert 0 <= config.export.parity_max_abs_error <= TOLERANCE
    # The whole validation slice of --limit 400, plus one empty text.
    assert config.export.parity_examples == config.training.validation_examples + 1
    rng = np.random.default_rng(0)
    # Padding (id 0) only ever follows a text, as the tokenizer pads.
    ids = rng.integers(1, 400, size=(9, config.max_length)).astype(np.int32)
    ids[0] = 0
    ids[1] = 1
    ids[2, 5:] = 0
    signature = tf.saved_model.load(str(version_dir / "saved_model")).signatures["serving_default"]
    from_tf = signature(input_ids=tf.constant(ids))["probabilities"].numpy()
    session = onnxruntime.InferenceSession(
        str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (from_onnx,) = session.run(["probabilities"], {"input_ids": ids})
    assert from_tf.shape == from_onnx.shape == (9, 1)
    assert from_onnx.dtype == np.float32
    np.testing.assert_allclose(from_onnx, from_tf, atol=TOLERANCE, rtol=0)
    assert np.all((from_onnx >= 0) & (from_onnx <= 1))
    if not config.sequence.variable_length:
        return
    # Padded only as far as serving pads: rows 2.. end by column 5 + trailing padding.
    short = np.concatenate([ids[:1], ids[2:3]])
    cut = short[:, : 5 + config.sequence.trailing_padding]
    (from_cut,) = session.run(["probabilities"], {"input_ids": cut})
    cut_tf = signature(input_ids=tf.constant(cut))["probabilities"].numpy()
    for result in (from_cut, cut_tf):
        np.testing.assert_allclose(result, from_onnx[[0, 2]], atol=TOLERANCE, rtol=0)


def _settings(models: Path, **overrides: object) -> TrainSettings:
    values = {
        "data_dir": models,
        "models": models,
        "dataset": "colours",
        "architectures": ("flatten", "gru"),
        "epochs": 1,
        "max_length": 8,
        "truncation_side": "right",
        "vocab_size": 30,
        "batch_size": 16,
        "allow_degenerate": True,
    }
    values.update(overrides)
    return TrainSettings(**values)


@pytest.fixture(scope="module")
def colours_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "colours.csv"
    rows = [f"a {colour} shade number {i},{colour}" for i in range(40) for colour in ("red", "green", "blue")]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


def test_multi_class_models_export_softmax(tmp_path: Path, colours_csv: Path) -> None:
    dataset = load_dataset(str(colours_csv), tmp_path, seed=0, validation_fraction=0.2)
    result = train_and_publish(_settings(tmp_path), dataset, report=lambda _line: None)
    assert [version.name for version in result.published] == ["colours-flatten", "colours-gru"]
    for version in result.published:
        assert version.config.output_kind == model_config_pb2.OUTPUT_KIND_SOFTMAX
        assert list(version.config.labels) == ["blue", "green", "red"]
        session = onnxruntime.InferenceSession(str(version.directory / "model.onnx"))
        ids = np.ones((4, 8), dtype=np.int32)
        (probabilities,) = session.run(["probabilities"], {"input_ids": ids})
        assert probabilities.shape == (4, 3)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_failed_parity_publishes_nothing(tmp_path: Path, colours_csv: Path) -> None:
    dataset = load_dataset(str(colours_csv), tmp_path, seed=0, validation_fraction=0.2)
    settings = _settings(tmp_path, architectures=("flatten",), parity_tolerance=-1.0)
    with pytest.raises(ExportParityError, match="nothing was published"):
        train_and_publish(settings, dataset, report=lambda _line: None)
    model_dir = tmp_path / "colours-flatten"
    assert existing_versions(model_dir) == []
    assert list(model_dir.iterdir()) == []  # the staging directory is gone too
