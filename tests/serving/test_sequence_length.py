"""Variable-length models: each batch padded only as far as its model needs, answers equal to full padding.

The repository holds the tiny trained models plus the graphs of tests/serving/variable_length_models.py,
each once with a dynamic sequence axis and `sequence { variable_length: true }`, and an LSTM once more
in today's format (axis fixed to max_length, no `sequence`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tokenizers import Tokenizer

from seqserve.v1 import classifier_pb2, model_config_pb2
from tests.serving.conftest import MIXED_BATCHES, SARCASM_TEXTS
from tests.serving.reference import full_padding_ids, read_config, reference_probabilities
from tests.serving.server_process import ServerProcess
from tests.serving.test_registry import with_registry
from tests.serving.variable_length_models import KINDS, publish, trailing_padding, variable_length_onnx

TODAYS_FORMAT = "sarcasm-fixed-lstm"


def variable(kind: str) -> model_config_pb2.SequenceInput:
    return model_config_pb2.SequenceInput(variable_length=True, trailing_padding=trailing_padding(kind))


def vocab_size(root: Path) -> int:
    return Tokenizer.from_file(str(root / "tokenizers" / "sarcasm" / "tokenizer.json")).get_vocab_size()


@pytest.fixture(scope="module")
def repository(tiny_model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sequence") / "models"
    shutil.copytree(tiny_model_repository, root)
    max_length, vocab = read_config(root, "sarcasm-flatten").max_length, vocab_size(root)
    for kind in KINDS:
        publish(
            root,
            "sarcasm-flatten",
            f"sarcasm-v{kind}",
            variable_length_onnx(kind, vocab, "length"),
            variable(kind),
        )
    publish(root, "sarcasm-flatten", TODAYS_FORMAT, variable_length_onnx("lstm", vocab, max_length), None)
    return root


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(repository, tmp_path_factory.mktemp("sequence-logs")) as process:
        yield process


def served_models(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "1" / "config.pbtxt").is_file())


def test_mixed_length_batches_answer_exactly_as_full_padding(server, repository):
    names = served_models(repository)
    assert {f"sarcasm-v{kind}" for kind in KINDS} | {TODAYS_FORMAT, "sarcasm-flatten"} <= set(names)
    for name in names:
        for texts in MIXED_BATCHES:
            response = server.stub.Classify(
                classifier_pb2.ClassifyRequest(model=name, texts=texts), timeout=10
            )
            scores = np.array([[s.score for s in p.scores] for p in response.predictions])
            np.testing.assert_allclose(
                scores, reference_probabilities(repository, name, texts), atol=1e-5, err_msg=name
            )


def test_each_model_gets_ids_as_wide_as_it_needs_and_todays_format_gets_max_length(repository):
    tokenizer = Tokenizer.from_file(str(repository / "tokenizers" / "sarcasm" / "tokenizer.json"))

    async def body(registry, events, metrics):
        assert registry.failures == {}
        for name in served_models(repository):
            model = registry.resolve(name)
            config = read_config(repository, name)
            for texts in MIXED_BATCHES:
                full = full_padding_ids(tokenizer, texts, config.max_length)
                longest = int((full != 0).sum(axis=1).max())
                width = config.max_length
                if config.sequence.variable_length:
                    width = max(1, min(width, longest + config.sequence.trailing_padding))
                ids = model.tokenize(texts)
                np.testing.assert_array_equal(ids, full[:, :width], err_msg=f"{name} {texts}")
        assert registry.resolve(TODAYS_FORMAT).tokenize(["cat"]).shape == (1, config.max_length)
        assert registry.resolve("sarcasm-vconv").tokenize(["cat"]).shape == (1, 1 + trailing_padding("conv"))

    with_registry(repository, body)


def test_the_conv_graph_needs_its_trailing_padding(repository):
    """Without its kernel_size of padding after the longest text the conv answers differently: the
    trailing padding above is what makes its short batches exact."""
    vocab = vocab_size(repository)
    session = ort.InferenceSession(variable_length_onnx("conv", vocab, "length").SerializeToString())
    tokenizer = Tokenizer.from_file(str(repository / "tokenizers" / "sarcasm" / "tokenizer.json"))
    full = full_padding_ids(tokenizer, SARCASM_TEXTS, read_config(repository, "sarcasm-vconv").max_length)
    longest = int((full != 0).sum(axis=1).max())
    (exact,) = session.run(None, {"input_ids": full})
    (cut,) = session.run(None, {"input_ids": full[:, :longest]})
    (padded,) = session.run(None, {"input_ids": full[:, : longest + trailing_padding("conv")]})
    assert np.abs(cut - exact).max() > 1e-5  # what the server tests would catch
    np.testing.assert_allclose(padded, exact, atol=1e-6)


def mislabelled(root: Path, template: str, sequence: model_config_pb2.SequenceInput) -> None:
    """Version 2 of `template`: its own files, its config claiming `sequence`."""
    target = root / template / "2"
    shutil.copytree(root / template / "1", target)
    config = read_config(root, template)
    config.version = 2
    config.sequence.CopyFrom(sequence)
    (target / "config.pbtxt").write_text(text_format.MessageToString(config))


@pytest.fixture
def small_repository(repository: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(repository / "tokenizers", root / "tokenizers")
    for name in ("sarcasm-flatten", TODAYS_FORMAT):
        shutil.copytree(repository / name, root / name)
    return root


@pytest.mark.parametrize("runtime", ["onnx", "tf"])
def test_a_config_claiming_variable_length_for_a_fixed_graph_is_refused_at_load(small_repository, runtime):
    mislabelled(small_repository, "sarcasm-flatten", variable("gap"))
    if runtime == "onnx":
        mislabelled(small_repository, TODAYS_FORMAT, variable("conv"))
    else:
        shutil.rmtree(small_repository / TODAYS_FORMAT)  # no SavedModel
    max_length = read_config(small_repository, "sarcasm-flatten").max_length
    graph = "model.onnx" if runtime == "onnx" else "saved_model signature serving_default"

    async def body(registry, events, metrics):
        refused = set(registry.failures)
        assert refused == {f"{name}/2" for name in registry.snapshot.names()}
        for key in refused:
            reason = registry.failures[key]
            assert (
                "variable_length: true" in reason
                and f"{graph} takes input_ids of fixed length {max_length}" in reason
            )
        for name in registry.snapshot.names():  # version 1 still loads and answers
            assert registry.resolve(name).version == 1
            assert (await registry.resolve(name).batcher.submit(["cat"])).rows.shape == (1, 2)

    with_registry(small_repository, body, load_versions=0, runtime=runtime)


def test_negative_trailing_padding_is_refused(small_repository):
    sequence = model_config_pb2.SequenceInput(variable_length=True, trailing_padding=-1)
    mislabelled(small_repository, TODAYS_FORMAT, sequence)

    async def body(registry, events, metrics):
        assert "trailing_padding is -1" in registry.failures[f"{TODAYS_FORMAT}/2"]

    with_registry(small_repository, body, load_versions=0)
