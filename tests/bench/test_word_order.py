"""bench.word_order: the shuffle permutes only the seen words, and an order-blind model's drop is zero."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from bench.models import ModelFiles
from bench.word_order import Judgement, bootstrap, checks, score, shuffle_seen
from seqserve.v1 import model_config_pb2
from serving.explain import WordSplitter
from tests.serving.variable_length_models import variable_length_onnx
from training.datasets import Split
from training.tokenizer import build_tokenizer

CORPUS = ["the cat sat on the mat", "a dog ran in the park", "scientists discover a new frog"]


@pytest.mark.parametrize("side", ["right", "left"])
def test_the_shuffle_permutes_the_words_inside_the_window(side):
    splitter = WordSplitter(build_tokenizer(CORPUS, 30, 4, side))
    words = splitter.split("the cat sat on the mat")
    kept = splitter.truncate(words.ids)
    orders = {tuple(shuffle_seen(splitter, words, np.random.default_rng(seed))) for seed in range(20)}
    assert all(sorted(order) == sorted(kept.tolist()) for order in orders)
    assert len(orders) > 1
    assert shuffle_seen(splitter, splitter.split(""), np.random.default_rng(0)).tolist() == []


def model_files(root: Path, kind: str) -> ModelFiles:
    tokenizer = build_tokenizer(CORPUS, 30, 8, "right")
    (root / "tokenizer.json").write_text(tokenizer.to_str())
    directory = root / kind / "1"
    directory.mkdir(parents=True)
    onnx.save(variable_length_onnx(kind, 30, "length"), directory / "model.onnx")
    config = model_config_pb2.ModelConfig(
        name=kind, version=1, architecture=kind, dataset="tiny", labels=["no", "yes"], max_length=8,
        output_kind=model_config_pb2.OUTPUT_KIND_SIGMOID,
    )  # fmt: skip
    config.tokenizer.path = "tokenizer.json"
    config.export.onnx_file, config.export.output_name = "model.onnx", "probabilities"
    config.sequence.variable_length = True
    return ModelFiles(kind, directory, config)


def test_an_order_blind_model_loses_nothing_and_an_lstm_changes(tmp_path):
    texts = [*CORPUS, "the dog sat in the new park", "a frog ran on the cat"] * 4
    split = Split(texts, np.arange(len(texts)) % 2)
    gap = score(model_files(tmp_path, "gap"), tmp_path, split, seeds=3, explain_texts=5)
    lstm = score(model_files(tmp_path, "lstm"), tmp_path, split, seeds=3, explain_texts=5)
    assert gap.largest_change < 1e-6 and np.all(gap.drop_per_text == 0)
    assert lstm.largest_change > 1e-3
    assert gap.top_share is not None and 0 < gap.top_share.estimate <= 1


def test_a_check_is_decided_by_its_interval():
    resamples = np.random.default_rng(0).integers(0, 50, (500, 50))
    assert bootstrap(np.ones(50), resamples).low == 1.0

    class Drops:
        def __init__(self, values):
            self.drop_per_text = np.asarray(values, dtype=float)

    higher = {"lstm": Drops([1.0] * 50), "gap": Drops([0.0] * 50)}
    assert [c.judgement for c in checks(higher, resamples)] == [Judgement.SUPPORTS]
    mixed = {"lstm": Drops([1.0, -1.0] * 25), "gap": Drops([0.0] * 50)}
    assert [c.judgement for c in checks(mixed, resamples)] == [Judgement.UNCLEAR]
