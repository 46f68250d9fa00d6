"""bench.variable_length's forms of a version: the fixed-length graph reads every position, the padded
and fixed forms are served with full padding, the variable one as its config says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf import text_format

from bench.models import ModelFiles
from bench.variable_length import FORMS, form_order, without_sequence_lens, write_forms
from seqserve.v1 import model_config_pb2
from tests.serving.variable_length_models import publish, variable_length_onnx

VOCAB, LENGTH = 50, 12


def outputs(model: onnx.ModelProto, ids: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString()).run(None, {"input_ids": ids})[0]


def test_the_fixed_length_graph_runs_every_position_and_graphs_without_sequence_lens_have_none() -> None:
    lstm = variable_length_onnx("lstm", VOCAB, "length")
    fixed = without_sequence_lens(lstm)
    assert fixed is not None
    assert [n.input[4:5] for n in fixed.graph.node if n.op_type == "LSTM"] == [[""]]
    rng = np.random.default_rng(0)
    full_texts = rng.integers(1, VOCAB, (4, LENGTH), dtype=np.int32)
    short_texts = full_texts.copy()
    short_texts[:, 3:] = 0
    np.testing.assert_allclose(outputs(fixed, full_texts), outputs(lstm, full_texts), atol=1e-6)
    assert np.abs(outputs(fixed, short_texts) - outputs(lstm, short_texts)).max() > 1e-4  # reads padding
    assert without_sequence_lens(variable_length_onnx("conv", VOCAB, "length")) is None


def test_forms_share_the_files_and_only_the_variable_one_keeps_its_sequence(tmp_path: Path) -> None:
    source = tmp_path / "models"
    (source / "tokenizers" / "sarcasm").mkdir(parents=True)
    (source / "tokenizers" / "sarcasm" / "tokenizer.json").write_text("{}")
    template = source / "sarcasm-template" / "1"
    template.mkdir(parents=True)
    config = model_config_pb2.ModelConfig(name="sarcasm-template", version=1, max_length=LENGTH)
    config.tokenizer.path = "tokenizers/sarcasm/tokenizer.json"
    (template / "config.pbtxt").write_text(text_format.MessageToString(config))
    sequence = model_config_pb2.SequenceInput(variable_length=True)
    for kind in ("lstm", "conv"):
        publish(
            source,
            "sarcasm-template",
            f"sarcasm-{kind}",
            variable_length_onnx(kind, VOCAB, "length"),
            sequence,
        )
    forms = tmp_path / "forms"
    for kind, fixed_name in (("lstm", "sarcasm-lstm-fixed"), ("conv", "sarcasm-conv-padded")):
        version_dir = source / f"sarcasm-{kind}" / "1"
        files = ModelFiles(
            f"sarcasm-{kind}",
            version_dir,
            text_format.Parse((version_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()),
        )
        names = write_forms(files, source, forms)
        assert names == {
            "fixed-length graph": fixed_name,
            "padded": f"sarcasm-{kind}-padded",
            "variable": f"sarcasm-{kind}",
        }
        for name in names.values():
            written = text_format.Parse(
                (forms / name / "1" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
            )
            assert written.name == name
            assert written.sequence.variable_length == (name == f"sarcasm-{kind}")
    assert (forms / "tokenizers" / "sarcasm" / "tokenizer.json").read_text() == "{}"


def test_the_served_forms_are_rotated_so_each_is_measured_first_in_one_round() -> None:
    forms = list(FORMS)
    orders = [form_order(forms, r) for r in range(len(forms))]
    assert [order[0] for order in orders] == forms
    assert all(sorted(order) == sorted(forms) for order in orders)
    assert form_order(forms, len(forms)) == forms
