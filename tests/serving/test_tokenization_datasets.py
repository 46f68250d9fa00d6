"""TokenEncoder gives HF's ids on every text of both datasets, each with its own tokenizer: the one in the
repository's models/ when it has been trained, else one built from the data as `seqserve train` builds it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from serving.sequence import SequencePadding
from serving.tokenization import TokenEncoder
from tests.conftest import DATA_DIR, REPO_ROOT
from tests.serving.test_tokenization_fast import fast_rows
from training.datasets import TextDataset, load_dataset
from training.settings import dataset_defaults
from training.tokenizer import build_tokenizer, tokenizer_path

BATCH = 64
# HF's reference ids are asked for this many texts at a time (a whole number of batches): each call
# costs a thread pool's start on top of its texts, so one call per batch of 64 took twice as long.
REFERENCE_CHUNK = 16 * BATCH


def dataset_tokenizer(dataset: TextDataset, models: Path = REPO_ROOT / "models") -> Tokenizer:
    stored = tokenizer_path(models, dataset.name)
    if stored.is_file():
        return Tokenizer.from_file(str(stored))
    defaults = dataset_defaults(dataset.name)
    return build_tokenizer(
        dataset.train.texts, defaults.vocab_size, defaults.max_length, defaults.truncation_side
    )


def assert_hf_ids_on_every_text(name: str, least_fast_share: float) -> None:
    dataset = load_dataset(name, DATA_DIR, seed=42, validation_fraction=0.1)
    texts = dataset.train.texts + dataset.validation.texts + dataset.test.texts
    tokenizer = dataset_tokenizer(dataset)
    encoder = TokenEncoder(tokenizer)
    assert encoder.fast_path_refusal is None
    assert encoder.length is not None
    full = SequencePadding(encoder.length)
    for chunk_start in range(0, len(texts), REFERENCE_CHUNK):
        chunk = texts[chunk_start : chunk_start + REFERENCE_CHUNK]
        expected = np.array([e.ids for e in tokenizer.encode_batch_fast(chunk)], dtype=np.int32)
        for start in range(0, len(chunk), BATCH):
            np.testing.assert_array_equal(
                encoder.encode(chunk[start : start + BATCH], full),
                expected[start : start + BATCH],
                err_msg=f"texts {chunk_start + start}+",
            )
    # Before truncation too: a difference in the part of a long text that truncation drops counts.
    rows = fast_rows(tokenizer, texts)
    answered = [(text, ids) for text, ids in zip(texts, rows, strict=True) if ids is not None]
    bare = Tokenizer.from_str(tokenizer.to_str())
    bare.no_padding()
    bare.no_truncation()
    differing = []
    for start in range(0, len(answered), REFERENCE_CHUNK):
        part = answered[start : start + REFERENCE_CHUNK]
        encodings = bare.encode_batch_fast([text for text, _ids in part])
        differing += [text for (text, ids), e in zip(part, encodings, strict=True) if ids != e.ids]
    assert differing == []
    assert len(answered) >= least_fast_share * len(texts)


def test_every_sarcasm_headline() -> None:
    assert_hf_ids_on_every_text("sarcasm", least_fast_share=0.99)


@pytest.mark.slow  # 50,000 reviews of ~230 words: 25 s to a few minutes on two shared cores
@pytest.mark.timeout(900)
def test_every_imdb_review() -> None:
    assert_hf_ids_on_every_text("imdb", least_fast_share=0.9)
