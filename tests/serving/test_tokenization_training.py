"""Serving's ids are training's ids: the tokenizer file `seqserve train` writes, read by the server's
TokenizerStore, gives real headlines the rows training fed each architecture, cut where training cut them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqserve.v1 import model_config_pb2
from serving.sequence import SequencePadding
from serving.tokenization import TokenizerStore
from tests.conftest import DATA_DIR
from training.architectures import ARCHITECTURES, sequence_policy
from training.batches import padded_length, real_lengths
from training.datasets import load_dataset
from training.settings import ArchitectureSettings, dataset_defaults
from training.tokenizer import encode, load_or_build

BATCH = 32


def test_serving_ids_equal_training_ids_on_real_headlines_for_every_architecture(tmp_path: Path) -> None:
    dataset = load_dataset("sarcasm", DATA_DIR, seed=42, validation_fraction=0.1)
    defaults = dataset_defaults("sarcasm")
    stored = load_or_build(
        tmp_path, "sarcasm", dataset.train.texts, defaults.vocab_size, defaults.max_length, "right"
    )
    texts = dataset.test.texts[:1000]
    trained = encode(stored.tokenizer, texts)
    lengths = real_lengths(trained)
    encoder = TokenizerStore().get(stored.path, stored.sha256)
    assert encoder.fast_path_refusal is None
    layers = ArchitectureSettings(vocab_size=stored.vocab_size, max_length=stored.max_length, num_outputs=1)
    widths = set()
    for name in ARCHITECTURES:
        policy = sequence_policy(name, layers)
        config = model_config_pb2.ModelConfig(
            name=f"sarcasm-{name}", max_length=stored.max_length, sequence=policy.config()
        )
        padding = SequencePadding.of(config)
        for start in range(0, len(texts), BATCH):
            rows = slice(start, start + BATCH)
            width = padded_length(int(lengths[rows].max()), policy, stored.max_length)
            widths.add(width)
            np.testing.assert_array_equal(
                encoder.encode(texts[rows], padding), trained[rows, :width], err_msg=f"{name}, texts {start}+"
            )
    assert len(widths) > 2  # fixed-length rows and several variable widths were compared
